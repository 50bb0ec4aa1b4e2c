"""Where the tests find the public datasets (tests/public_data.py): the order of the sources, the skip line when
there are none, and the writers that lay Hugging Face rows out like shared/data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import public_data

# shared/data/wikitext-2-raw-v1/SOURCE.md: the original file's sha256, which the Hub's rows must rebuild
WIKI_VALID_SHA256 = "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7"


def _layout(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
    return root


def test_the_variable_wins_then_the_folder_beside_the_checkout(tmp_path):
    mine, beside = _layout(tmp_path / "mine", "gsm8k"), _layout(tmp_path / "beside", "gsm8k", "blimp")
    assert public_data.find("gsm8k", {public_data.ENV: str(mine)}, beside=beside) == mine
    assert public_data.find("gsm8k", {}, beside=beside) == beside
    with pytest.raises(public_data.Missing, match="has no blimp/ folder"):
        public_data.find("blimp", {public_data.ENV: str(mine)}, beside=beside)
    with pytest.raises(public_data.Missing, match="has no hellaswag/ folder"):  # one source serves every dataset
        public_data.find("hellaswag", {}, beside=beside)
    with pytest.raises(NotADirectoryError, match="no such folder"):  # a typo is an error, not a silent skip
        public_data.find("gsm8k", {public_data.ENV: str(tmp_path / "typo")}, beside=beside)
    with pytest.raises(public_data.Missing, match="no gsm8k/ in"):
        public_data.find("gsm8k", {}, beside=tmp_path / "none", hub=False)


def test_a_fresh_clone_skips_with_one_line_saying_how_to_get_the_data(tmp_path):
    """A checkout with no shared/ beside it, offline, with an empty Hugging Face cache: the tests that need the
    data skip, each with one line naming the three ways to get it; the others run."""
    clone = tmp_path / "clone"
    (clone / "tests").mkdir(parents=True)
    here = Path(__file__).parent
    for name in ("conftest.py", "public_data.py"):
        (clone / "tests" / name).write_text((here / name).read_text())
    (clone / "tests" / "test_needs_data.py").write_text(
        "def test_wikitext(wikitext_dir):\n    assert (wikitext_dir / 'wiki.valid.raw').is_file()\n\n"
        "def test_all(shared_data):\n    assert (shared_data / 'blimp').is_dir()\n\n"
        "def test_none():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != public_data.ENV and not k.startswith("PYTEST")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "tests"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert "1 passed, 2 skipped" in out, out[-3000:]
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 2
    for line in skips:
        assert public_data.ENV in line and "shared/data" in line and "HF_DATASETS_OFFLINE=0 HF_HUB_OFFLINE=0 python tests/public_data.py" in line
        assert "is not in the Hugging Face cache" in line
    assert f"test data: none in {public_data.ENV}" in out  # the header says it before the tests run


def test_wikitext_rows_rebuild_the_original_file(wikitext_dir):
    """The Hub's rows (a line with its newline; a blank line as "") give back the original bytes."""
    lines = (wikitext_dir / "wiki.valid.raw").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [line if line.strip() else "" for line in lines]
    text = public_data.wikitext_file(rows)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == WIKI_VALID_SHA256


def test_hellaswag_rows_take_the_text_form_of_shared_data(tmp_path):
    """llama.cpp's clean-up of the WikiHow tags, in the six-line form the shared/data reader parses."""
    from fortifai_bench.local_benchmarks import read_hellaswag_txt

    row = {"activity_label": "Making a cake", "label": "2",
           "ctx": "[header] How to bake a cake [title] Heat the oven. [step] Wait  ten minutes.",
           "endings": ["[substeps] Stir it.", "Eat it [title] now.", "Bake it.", "Leave."]}
    lines = public_data.hellaswag_lines(row)
    assert lines == ["Making a cake: How to bake a cake. Heat the oven. Wait ten minutes.", "2",
                     "Stir it.", "Eat it. now.", "Bake it.", "Leave."]
    written = tmp_path / "hellaswag_val_full.txt"
    written.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert read_hellaswag_txt(written) == [{"query": lines[0], "choices": lines[2:], "label": 2}]
