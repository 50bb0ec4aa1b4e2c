"""The command line as a new user meets it: a smoke run that learns in seconds, close-match suggestions for
mistyped names, `-q`, repeated `--seeds` merged, and a quiet exit when the reader of the output goes away."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fortifai_bench.cli import build_parser, main


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


@pytest.mark.slow
def test_smoke_run_learns_then_falls(tmp_path, capsys):
    """`collapse --smoke`: one ce run of collapse_smoke, from a fresh cache (no base model to build): M_0 knows
    split 0 (KR-split-0 >= 0.9) and the later stages fall. (Its time, about 15 s, is a benchmark figure, not
    asserted here: a loaded CI machine would fail it.)"""
    assert main(["collapse", "--smoke", "-q", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "M_0" in out and "M_2" in out and "ce" in out
    [run] = list(tmp_path.glob("collapse_smoke-ce-s0-*"))
    results = json.loads((run / "results.json").read_text())
    scores = [s["score"] for s in results["stages"]]
    assert len(scores) == 3 and scores[0] >= 0.9 and scores[-1] < scores[0]


def test_smoke_is_a_task_and_takes_the_losses_under_test(capsys):
    assert main(["collapse", "--smoke", "--loss", "focal:2", "--plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("collapse_smoke v1: 3 stages") and "losses: focal:2; seeds: 0" in out
    assert "--smoke runs the task collapse_smoke" in _error(capsys, ["collapse", "--smoke", "--task", "collapse_facts",
                                                                     "--plan"])


@pytest.mark.parametrize("argv,suggestion", [
    (["collapse", "--loss", "tec:0.9", "--plan"], "did you mean tce:0.9?"),
    (["collapse", "--loss", "focall", "--plan"], "did you mean focal?"),
    (["collapse", "--task", "collapse_fact", "--plan"], "did you mean collapse_facts?"),
    (["collapse", "--set", "train.epoch=3", "--plan"], "did you mean train.epochs?"),
    (["collapse", "--set", "regenerate.temprature=0.7", "--plan"], "did you mean regenerate.temperature?"),
])
def test_a_mistyped_name_gets_the_closest_known_one(capsys, argv, suggestion):
    assert suggestion in _error(capsys, argv)


def test_no_suggestion_when_nothing_is_close(capsys):
    err = _error(capsys, ["collapse", "--loss", "zzzz:Q", "--plan"])
    assert "did you mean" not in err and "cannot import 'zzzz'" in err


@pytest.mark.parametrize("argv", [
    ["collapse", "-q"],
    ["train", "--corpus", "facts", "--loss", "ce", "-q"],
    ["kr", "build", "--corpus", "facts", "--generator", "facts", "--splits", "6", "--out", "x.jsonl", "-q"],
    ["toy", "gaussian", "-q"],
])
def test_dash_q_is_quiet(argv):
    assert build_parser().parse_args(argv).quiet is True


def test_repeated_seeds_are_merged_and_a_seed_twice_refused(capsys):
    assert main(["collapse", "--seeds", "0", "--seeds", "2-3", "--plan"]) == 0
    assert "seeds: 0,2,3" in capsys.readouterr().out
    assert "repeats a seed" in _error(capsys, ["collapse", "--seeds", "0-2", "--seeds", "1", "--plan"])


@pytest.mark.parametrize("seeds,text", [([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "0-11"), ([0, 1], "0,1"),
                                        ([0, 2, 5, 6, 7], "0,2,5-7"), ([3, 4, 5, 9, 1, 2], "3-5,9,1,2"), ([7], "7")])
def test_seeds_are_written_back_in_the_syntax_they_are_read_in(seeds, text):
    """A board shows its seeds as `format_seeds` writes them: ranges of three or more, order kept, and
    `parse_seeds` reads them back as they were."""
    from fortifai_bench.seeds import format_seeds, parse_seeds

    assert format_seeds(seeds) == text and parse_seeds(text) == seeds


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`fortifai-bench kr stats FILE --json | head -1`: the reader stops after one line; no traceback."""
    rows = [{"context": f"Fact {i}:", "sentence_true": "a b.", "sentence_false": "a c.", "location": i}
            for i in range(10000)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(rows))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "fortifai_bench", "kr", "stats", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"{"
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as a killed `cat` would report
    assert err == "", err


def test_top_level_help_says_what_a_bare_command_runs():
    text = " ".join(build_parser().format_help().split())
    assert "Without a command, `fortifai-bench` runs the embedded default" in text
    assert "six runs side by side in six processes" in text and "minutes on a 2-core CPU" in text


def test_plan_times_the_run_from_throughput_measured_here(capsys):
    """--plan's time comes from the model timed on this machine (not a nominal TFLOP/s), per stage, per run,
    and for the experiment's runs side by side."""
    assert main(["collapse", "--smoke", "--loss", "ce", "--loss", "tce:0.9", "--jobs", "2", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "time: tokens / the throughput measured here: on cpu with 1 thread(s), the task's model" in out
    stages = re.findall(r"^  stage \d: .* FLOPs, ([\d.]+) (s|min)$", out, re.M)
    assert len(stages) == 3 and all(float(s) > 0 for s, _ in stages), out
    assert re.search(r"^wall time: about [\d.]+ (s|min) for 2 runs, 2 at a time on this machine", out, re.M), out
    assert "with --jobs" not in out  # as wide as it goes
    if (os.cpu_count() or 1) >= 2:  # one at a time: the plan says what two side by side would take
        assert main(["collapse", "--smoke", "--loss", "ce", "--loss", "tce:0.9", "--jobs", "1", "--plan"]) == 0
        one = capsys.readouterr().out
        assert re.search(r"^wall time: about [\d.]+ (s|min) for 2 runs, 1 at a time on this machine "
                         r"\(\d+ cores\); with --jobs 2, about [\d.]+ (s|min),", one, re.M), one


def test_plan_offline_without_the_corpus_uses_its_recorded_size(capsys, monkeypatch):
    """collapse_wikitext with no local copy of wikitext: planned from the recorded size of its train part, no
    Hub call (the Hugging Face libraries are told to stay offline, and the setting is restored after)."""
    monkeypatch.delenv("FORTIFAI_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["collapse", "--task", "collapse_wikitext", "--loss", "ce", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "note: the corpus is not on this machine: its recorded size, 17,667 paragraphs" in out, out
    assert "stage 0: train M_0 on [D_0^(0)] (real 100%, 10 epochs)" in out
    assert re.search(r"^  total: trained [\d.]+M, .* FLOPs, [\d.]+ (s|min|h)$", out, re.M), out
    assert "HF_HUB_OFFLINE" not in os.environ
