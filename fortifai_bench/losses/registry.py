"""The loss short names (``ce``, ``tce:0.9``, ``focal:2``): the one table of them, and the hint for a misspelt one."""

from __future__ import annotations

from fortifai_bench.errors import did_you_mean
from fortifai_bench.losses.base import Loss
from fortifai_bench.losses.ce import CE
from fortifai_bench.losses.focal import Focal
from fortifai_bench.losses.tce import TCE

SHORT_NAMES: dict[str, tuple[type[Loss], str | None]] = {
    # name -> (class, keyword that "name:value" sets)
    "ce": (CE, None),
    "tce": (TCE, "gamma"),
    "focal": (Focal, "gamma"),
}


def _short_name_hint(spec: str) -> str:
    """`; did you mean tce:0.9?` for a misspelt short name (`tec:0.9`), else ""."""
    name, sep, value = spec.partition(":")
    hint = did_you_mean(name.lower(), SHORT_NAMES)
    return hint[:-1] + f"{sep}{value}?" if hint else ""
