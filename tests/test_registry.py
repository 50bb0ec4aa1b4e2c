"""fortifai_bench.registry: lazy "module:Name" targets, imported on the first get, and the one-line error."""

import subprocess
import sys

import pytest

from fortifai_bench.errors import FortifaiError
from fortifai_bench.registry import Registry


def test_a_string_target_is_imported_on_first_get_only():
    code = ("import sys; from fortifai_bench.registry import Registry; "
            "r = Registry('thing', {'j': 'json.decoder:JSONDecoder', 'mod': 'json.decoder'}); "
            "r.names(); 'j' in r; before = 'json.decoder' in sys.modules; "
            "cls, mod = r.get('j'), r.get('mod'); "
            "print(before, cls.__name__, mod.__name__, r.get('j') is cls)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "JSONDecoder", "json.decoder", "True"]


def test_unknown_name_is_one_line_with_choices_and_suggestion():
    r = Registry("toy", {"gaussian": object(), "gmm": object()}, also_known=("file:PATH",))
    with pytest.raises(FortifaiError) as err:
        r.get("gausian")
    assert str(err.value) == "unknown toy 'gausian'; known: gaussian, gmm, file:PATH; did you mean gaussian?"
    with pytest.raises(FortifaiError, match=r"known: gaussian, gmm, file:PATH$"):
        r.get("zzz")


def test_order_register_and_copy():
    r = Registry("KR generator", {"facts": 1, "rules": 2, "openai": 3}, sort=False)
    assert r.names() == list(r) == ["facts", "rules", "openai"]
    c = r.copy()
    c.register("mine", 4)
    assert "mine" in c and "mine" not in r and c.get("mine") == 4
    assert Registry("x", {"b": 1, "a": 2}).names() == ["a", "b"]
