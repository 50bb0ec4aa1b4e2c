"""The regime suite (issue 19): greedy decoding, the suite's tasks, several tasks' runs in one pool, a
tagged headline score, and the kept rate on the fresh real split."""

from __future__ import annotations

import pytest

from fortifai_bench.collapse.config import RegenerateSettings, describe_differences, load_task
from fortifai_bench.errors import FortifaiError
from test_collapse import MICRO, assert_hf_greedy


def test_greedy_decoding_is_hf_greedy_and_ignores_temperature():
    """decoding: greedy is the argmax at every step: the tokens HF `generate` picks without sampling, at
    any temperature, and the same whatever the seed."""
    from fortifai_bench.collapse.regenerate import regenerate
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import TinyConfig, build_tiny

    texts = get_corpus("facts").texts()[:40]
    model, tok = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2), seed=0)
    model.eval()
    s = RegenerateSettings(decoding="greedy", block=8, prompt=6, temperature=5.0, batch_size=8)
    res = regenerate(model, tok, texts[:8], s, seed=0)
    assert regenerate(model, tok, texts[:8], s, seed=1).ids == res.ids
    assert_hf_greedy(model, tok, res)
    with pytest.raises(FortifaiError, match="regenerate.decoding must be one of sample, greedy, beam"):
        RegenerateSettings(decoding="argmax")


def test_the_suite_tasks_differ_from_the_default_where_they_say():
    from fortifai_bench.collapse.base import base_key

    hot, greedy, tail = (load_task(n) for n in ("collapse_facts", "collapse_facts_greedy", "collapse_facts_longtail"))
    changed = {d.split(":")[0] for d in describe_differences(hot.to_dict(), greedy.to_dict())}
    assert changed == {"task", "version", "description", "regenerate.decoding", "train.epochs"}
    assert (hot.model.pretrain.seed, greedy.model.pretrain.seed) == ("run", "run")  # both sample a base per seed
    assert (greedy.regenerate.decoding, greedy.train.epochs, greedy.budget) == ("greedy", 17, "steps")
    assert base_key(greedy) == base_key(hot)  # the same bases: seed 0's the shipped one
    assert (tail.corpus, tail.eval.score_tag, tail.model.pretrain.corpus) == ("facts-longtail-450", "tail",
                                                                            "facts-longtail-450")
    assert (tail.version, tail.paragraphs_per_split, tail.model.pretrain.seed) == (3, 75, "run")  # issue 26 items 2-3


def test_the_regime_boards_are_the_shipped_tasks_and_the_old_configs_stay_reproducible():
    """The long-tail board is v3's, the shipped task (benchmarks/collapse_regimes.py's `longtail_v3`), and greedy's
    is v2's (`greedy_seedrun`, the name its sweep ran under); the configs of the boards they replaced stay
    reproducible by name: `longtail` gives v2's config hash (c029eff6...) and `greedy_v1` v1's (dd589c6f...)."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("collapse_regimes", root / "benchmarks" / "collapse_regimes.py")
    regimes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regimes)
    for task, regime in [("collapse_facts_longtail", "longtail_v3"), ("collapse_facts_greedy", "greedy_seedrun")]:
        board = json.loads((root / "leaderboards" / f"{task}.json").read_text())
        shipped = load_task(task)
        assert board["task"] == {"name": task, "version": shipped.version}
        assert {e["config_hash"] for e in board["entries"] if not e["control"]} == {shipped.config_hash()}
        [control] = [e for e in board["entries"] if e["control"]]
        assert control["config_hash"] == regimes.regime_task(regime, control=True).config_hash()
        assert regimes.regime_task(regime).config_hash() == shipped.config_hash()
    v2 = regimes.regime_task("longtail")
    assert (v2.version, v2.corpus, v2.model.pretrain.seed) == (2, "facts-longtail", 0)
    assert v2.config_hash().startswith("c029eff6")
    assert regimes.regime_task("greedy_v1").config_hash().startswith("dd589c6f")


def bash_table(script: str, name: str) -> dict[str, str]:
    """A suite script's `declare -A NAME=([key]=value ...)` as a dict (a value quoted or one word)."""
    import re

    body = re.search(rf"declare -A {name}=\((.*?)\)\n", script, re.S).group(1)
    return dict(re.findall(r'\[(\w+)\]=("[^"]*"|\S+)', body))


def test_the_suite_script_rebuilds_the_boards_as_published():
    """leaderboards/seed_suite.sh's seeds, losses and pairing per regime are those of the board it writes, so that
    running it rebuilds what is shipped (the greedy board grew to twelve seeds while the script still said eleven)."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = (root / "leaderboards" / "seed_suite.sh").read_text()
    tasks, seeds, losses, publish = (bash_table(script, name) for name in ("TASK", "SEEDS", "LOSSES", "PUBLISH"))
    for regime, task in tasks.items():
        board = json.loads((root / "leaderboards" / f"{task}.json").read_text())
        entries = {e["loss"]["spec"]: e for e in board["entries"] if not e["control"]}
        assert set(entries) == set(losses[regime].split(",")), regime
        assert {tuple(e["seeds"]) for e in entries.values()} == {tuple(map(int, seeds[regime].strip('"').split()))}
        assert (board.get("pairing") == "seed") == ("--paired" in publish[regime]), regime


def test_the_smol_suite_publishes_with_each_shipped_boards_claims():
    """leaderboards/smol_suite.sh's CLAIMS and PLANNED per regime are the claims and planned claims of the board it
    publishes onto, for every pretrained-LM board shipped: `publish` refuses another claim onto an existing board,
    so a script that drifted from its board would stop at the first publish of a sweep."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = (root / "leaderboards" / "smol_suite.sh").read_text()
    tasks, claims, planned = (bash_table(script, name) for name in ("TASK", "CLAIMS", "PLANNED"))
    shipped = {regime: root / "leaderboards" / f"{task}.json" for regime, task in tasks.items()}
    assert shipped["wikitext_smol"].exists() and shipped["facts_smol"].exists()
    for regime, path in shipped.items():
        if path.exists():  # the heavy board is created by its first publish
            board = json.loads(path.read_text())
            assert board["claims"] == claims[regime], regime
            assert board["planned_claims"] == planned[regime].split(","), regime


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from fortifai_bench.collapse.experiment import run_suite

    out = tmp_path_factory.mktemp("suite")
    tasks = [load_task("collapse_facts", MICRO), load_task("collapse_facts_greedy", MICRO + ["train.epochs=2"])]
    return run_suite(tasks, ["ce", "tce:0.9"], [0], out=out, progress=False, jobs=2), out


def test_run_suite_runs_every_task_in_one_pool_with_one_thread_numbers(suite):
    """Each regime is its own experiment (its own groups, table and summary file), and its runs give the
    numbers a one-thread run of that task gives alone."""
    from fortifai_bench.collapse.run import run_collapse

    exps, out = suite
    assert [e.task.task for e in exps] == ["collapse_facts", "collapse_facts_greedy"]
    for exp in exps:
        assert set(exp.groups) == {"ce", "tce:0.9"} and exp.baseline == "ce"
        assert exp.summary_path.name.startswith(f"summary-{exp.task.task}-")
        assert "vs ce" in exp.table()
    [greedy_ce] = exps[1].groups["ce"]
    alone = run_collapse(exps[1].task, "ce", seed=0, out=out / "alone", progress=False)
    assert [st["score"] for st in greedy_ce["stages"]] == [st["score"] for st in alone["stages"]]
    assert greedy_ce["config"]["regenerate"]["decoding"] == "greedy"


def test_the_gradient_block_has_the_kept_rate_of_the_fresh_split(suite):
    """CE keeps every token of the real split; TCE's rate is a share (a micro model may be confident in none)."""
    import json
    from pathlib import Path

    exps, _ = suite
    [tce] = exps[0].groups["tce:0.9"]
    [ce] = exps[0].groups["ce"]
    for run, expect_all in ((ce, True), (tce, False)):
        block = json.loads((Path(run["run_dir"]) / "stage_1" / "metrics.json").read_text())["gradient"]["start"]
        rate = block["fresh_kept_rate"]
        assert rate == 1.0 if expect_all else 0.0 <= rate <= 1.0
        assert block["corrupted_kept_rate"] is None or 0.0 <= block["corrupted_kept_rate"] <= 1.0


def test_a_tagged_headline_score(tmp_path):
    """eval.score_tag: every stage's score is KR-split-0 on that tag's questions, named so in results.json;
    a tag the KR set lacks is one error naming the field and the tags there are."""
    from fortifai_bench.collapse.run import run_collapse

    task = load_task("collapse_facts_longtail", MICRO + ["stages=2"])
    res = run_collapse(task, "ce", seed=0, out=tmp_path, progress=False)
    assert res["score_name"] == "kr_split0_tail"
    for st in res["stages"]:
        assert st["score"] == st["score_by_tag"]["tail"]
    bad = load_task("collapse_facts_longtail", MICRO + ["stages=2", "eval.score_tag=rare"])
    with pytest.raises(FortifaiError, match=r"eval.score_tag='rare': .* \(tags: mode, tail\)"):
        run_collapse(bad, "ce", seed=0, out=tmp_path / "bad", progress=False)


def test_the_embedded_defaults_rules_are_library_functions():
    """What a bare `fortifai-bench collapse` runs is decided in `collapse.defaults`, not in the CLI: the suite's
    tasks, the control on by default (never for a task that is the control), every run side by side unless a
    thread count or --jobs says otherwise, and --jobs checked against --threads and --nproc."""
    from fortifai_bench.collapse import defaults
    from fortifai_bench.collapse.experiment import control_task

    facts = load_task("collapse_facts")
    assert [t.task for t in defaults.default_tasks()] == defaults.DEFAULT_SUITE
    assert defaults.with_control(facts, default=True) and not defaults.with_control(facts)
    assert defaults.with_control(facts, True) and not defaults.with_control(facts, False, default=True)
    assert not defaults.with_control(control_task(facts), True, default=True)
    runs = defaults.count_runs(defaults.default_tasks(), defaults.DEFAULT_LOSSES, [0], True)
    assert runs == 6  # the six runs the top-level help promises
    assert (defaults.default_jobs(runs, default=True), defaults.default_jobs(runs)) == (6, 1)
    assert defaults.default_jobs(runs, default=True, threads=2) == 1 and defaults.default_jobs(runs, 2) == 2
    for jobs, kwargs, match in [(0, {}, "--jobs must be >= 1"), (2, {"threads": 1}, "drop --threads"),
                                (2, {"nproc": 2}, "use one of them")]:
        with pytest.raises(FortifaiError, match=match):
            defaults.default_jobs(runs, jobs, **kwargs)


def test_run_default_from_the_library(tmp_path):
    """`experiment.run_default` is the bare command's experiment: ce and tce:0.9 beside the clean control, all
    three side by side (here on a micro version of the suite's first task)."""
    from fortifai_bench.collapse.experiment import run_default

    [exp] = run_default([load_task("collapse_facts", MICRO)], out=tmp_path, progress=False)
    assert list(exp.groups) == ["ce", "tce:0.9", "control"] and exp.baseline == "ce" and exp.jobs == 3
    assert [r["control"] for runs in exp.groups.values() for r in runs] == [False, False, True]
    assert "vs ce" in exp.table() and exp.summary_path.is_file()


def test_the_retention_analysis_of_a_sweep(tmp_path, capsys):
    """benchmarks/smol_retention.py reads the finished runs of a sweep's folder (collapse_regimes' layout), tests
    each loss's AUC against CE over seeds with Holm over the claims, and sizes the power from the pooled sd and
    the CE-control gap; an unfinished run is left out."""
    import importlib.util
    import sys
    from pathlib import Path

    from results_factory import write_task_run

    root = Path(__file__).resolve().parent.parent / "benchmarks"
    spec = importlib.util.spec_from_file_location("smol_retention", root / "smol_retention.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # it imports the sweep's layout from collapse_regimes (one definition)
    curves = {"ce": [[0.84, 0.80, 0.80, 0.78], [0.84, 0.82, 0.80, 0.80], [0.84, 0.81, 0.79, 0.78],
                     [0.84, 0.80, 0.81, 0.79]],
              "tce:0.9": [[0.84, 0.88, 0.86, 0.86], [0.84, 0.87, 0.87, 0.85], [0.84, 0.89, 0.86, 0.87],
                          [0.84, 0.88, 0.88, 0.86]],
              "control": [[0.84, 0.95, 0.96, 0.97]] * 4}
    regimes = sys.modules["collapse_regimes"]
    for arm, cs in curves.items():
        for seed, c in enumerate(cs):
            write_task_run(regimes.run_dir_for(tmp_path, "wikitext_smol", arm, seed),
                           regimes.regime_task("wikitext_smol", arm == "control"), c, seed=seed, n_items=100,
                           loss="ce" if arm == "control" else arm, control=arm == "control",
                           complete=not (arm == "tce:0.9" and seed == 3))  # one killed run: not counted
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0-3", "--max-seeds", "5"]) == 0
    out = capsys.readouterr().out
    assert "| tce:0.9 | 0,1,2 |" in out and "| ce | 0,1,2,3 |" in out
    # 3 vs 4 seeds, fully separated: 2 / C(7, 3) = 2/35; one claim, so Holm leaves it
    assert "- tce:0.9: AUC +0.0" in out and "p = 0.057 raw, 0.057 after Holm" in out
    assert "paired" not in out.split("Claims")[1].split("Power")[0]  # the arms ran different seeds
    # the share of CE's gap to the control that tce:0.9 closes (metrics.gap_recovered), with its interval
    import re
    share = re.search(r"\n- tce:0\.9: \+(\d+)% \[\+(\d+)%, \+(\d+)%\] \(3 seeds\)\n", out)
    assert "Share of CE's AUC gap to the clean control closed" in out and share
    assert int(share[2]) < int(share[1]) < int(share[3]) < 100
    # the board's family of three, two not given here: counted at p = 1, as a board with planned claims does
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0-3", "--claims", "3",
                     "--max-seeds", "3"]) == 0
    out3 = capsys.readouterr().out
    assert "Holm over the board's 3, 2 not tested here counted at p = 1" in out3 and "0.057 raw, 0.17 after" in out3
    rows = [line for line in out.splitlines() if line.startswith("| 3 |") or line.startswith("| 5 |")]
    assert rows[0] == "| 3 | 0.00 (3 vs 3 seeds cannot give p below 0.1 > 0.05) | 0.00 |"  # and says why
    assert float(rows[1].split("|")[3]) >= float(rows[1].split("|")[2])  # the whole gap is easier than half of it
    # before the sweep's control has finished: no power, unless the gap is given (--gap, e.g. a calibration's)
    import shutil
    for seed in range(4):
        shutil.rmtree(sys.modules["collapse_regimes"].run_dir_for(tmp_path, "wikitext_smol", "control", seed))
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0-3", "--max-seeds", "4"]) == 0
    assert "Power: needs finished CE runs, two seeds of an arm (or --sd), and finished control runs (or --gap, or --effects)" \
        in capsys.readouterr().out
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0-3", "--max-seeds", "4",
                     "--gap", "0.1"]) == 0
    assert "CE-control gap 0.100 (--gap), effect of interest 0.5 x gap = 0.050" in capsys.readouterr().out
    # one seed an arm (a calibration): the spread is another board's, given and named (--sd), never invented
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0", "--max-seeds", "4",
                     "--gap", "0.1"]) == 0
    assert "two seeds of an arm (or --sd)" in capsys.readouterr().out
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0", "--max-seeds", "4",
                     "--gap", "0.1", "--sd", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "unpaired, --sd 0.010; CE-control gap 0.100 (--gap)" in out
    assert float(out.split("\n| 4 |")[1].split("|")[1]) > 0.9  # the whole gap is 10 sds: found at 4 vs 4 seeds
    # --effects: power at given AUC changes against CE's mean (the harm a board can see), without the control
    assert mod.main(["--out", str(tmp_path), "--losses", "tce:0.9", "--seeds", "0", "--max-seeds", "4",
                     "--sd", "0.01", "--effects=-0.05,-0.001"]) == 0
    out = capsys.readouterr().out
    assert "CE-control gap" not in out and "against CE's mean 0.803 (--effects)" in out
    assert "| seeds per arm | power at -0.050 | power at -0.001 |" in out
    big, tiny = (float(x) for x in out.split("\n| 4 |")[1].split("|")[0:2])
    assert big > 0.9 and tiny < 0.2  # five sds found at 4 vs 4 seeds; a tenth of one not
    with pytest.raises(SystemExit):
        mod.main(["--out", str(tmp_path), "--effects", "half"])
    assert "--effects: comma-separated numbers" in capsys.readouterr().err
    # --board: the seeds whose runs are gone come from the shipped light board's entries (its verdict, as
    # BENCHMARKS.md quotes it), its planned claims the family
    board = Path(__file__).resolve().parent.parent / "leaderboards" / "collapse_wikitext_smol.json"
    assert mod.main(["--out", str(tmp_path / "gone"), "--board", str(board), "--losses", "tce:0.9", "--seeds",
                     "0-5", "--max-seeds", "6"]) == 0
    out = capsys.readouterr().out
    assert "| ce | 0,1,2,3,4,5 | 0.851 0.877 0.857 0.843 0.875 0.877 | 0.863 | 0.015 |" in out
    assert "- tce:0.9: AUC -0.002 against CE, p = 0.79 raw, 1 after Holm" in out and "board's 3, 2 not" in out


def test_a_sweep_run_starts_from_what_a_finished_ce_run_computed(tmp_path, monkeypatch):
    """collapse_regimes runs each arm in its own call, so the experiment's sharing does not reach it: a new run
    copies chance.json from a CE run of the regime, and the clean control also CE's stage 0 of its
    seed (`experiment.same_stage0`), then resumes from them. The control's results are those it computes
    alone; a TCE run copies only chance.json; before any CE run has its stage 0 nothing is copied, after it the
    control need not wait for CE's later stages."""
    import importlib.util
    import json
    from pathlib import Path

    from test_collapse import MICRO

    from fortifai_bench.collapse.experiment import control_task
    from fortifai_bench.collapse.rundir import comparable
    from fortifai_bench.collapse.run import run_collapse

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("collapse_regimes", root / "benchmarks" / "collapse_regimes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(mod.REGIMES, "micro", ("collapse_facts", MICRO + ["stages=2"]))
    assert mod.start_from_baseline(tmp_path, "micro", "ce", 0, True) is None  # no CE run yet
    ce = mod.ensure_run(tmp_path, "micro", "ce", 0, False, False)
    assert not (Path(ce["run_dir"]) / "copied.json").exists()
    results = Path(ce["run_dir"]) / "results.json"
    finished = results.read_text()
    results.write_text(json.dumps({**json.loads(finished), "complete": False}))  # CE still in its later stages
    control = mod.ensure_run(tmp_path, "micro", "ce", 0, True, False)  # its finished stage 0 is copied
    results.write_text(finished)
    tce = mod.ensure_run(tmp_path, "micro", "tce:0.9", 0, False, False)
    assert json.loads((Path(control["run_dir"]) / "copied.json").read_text()) == {"chance.json": ce["run_dir"],
                                                                                  "stage_0": ce["run_dir"]}
    assert json.loads((Path(tce["run_dir"]) / "copied.json").read_text()) == {"chance.json": ce["run_dir"]}
    assert control["stages"][0]["seconds"] == {"train": 0.0, "regenerate": 0.0, "evaluate": 0.0}
    alone = run_collapse(control_task(mod.regime_task("micro")), "ce", seed=0, out=tmp_path / "alone", progress=False)
    assert comparable(control) == comparable(alone)
    assert control["run_dir"].startswith(str(mod.run_dir_for(tmp_path, "micro", "control", 0)))
    assert mod.ensure_run(tmp_path, "micro", "ce", 0, True, False)["run_dir"] == control["run_dir"]  # reused


def sweep_lane():
    """benchmarks/sweep_lane.py as a module (it also imports benchmarks/collapse_regimes.py as `collapse_regimes`)."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("sweep_lane", Path(__file__).resolve().parent.parent / "benchmarks"
                                                  / "sweep_lane.py")
    lane = importlib.util.module_from_spec(spec)
    sys.modules["sweep_lane"] = lane  # its dataclass resolves its annotations through its module
    spec.loader.exec_module(lane)
    return lane


def micro_lane(tmp_path, monkeypatch, queue_text: str):
    """sweep_lane with a two-stage micro regime ("micro", real training): the module, collapse_regimes, and a
    queue holding `queue_text`, the runs folder and an empty boards folder under tmp_path."""
    import sys

    from test_collapse import MICRO

    lane = sweep_lane()
    regimes = sys.modules["collapse_regimes"]
    monkeypatch.setitem(regimes.REGIMES, "micro", ("collapse_facts", MICRO + ["stages=2"]))
    queue, out, boards = tmp_path / "queue.txt", tmp_path / "runs", tmp_path / "boards"
    queue.write_text(queue_text)
    boards.mkdir()
    return lane, regimes, queue, out, boards


def test_sweep_lanes_share_a_queue_and_take_over_a_killed_lanes_job(tmp_path, capsys):
    """benchmarks/sweep_lane.py: a lane takes the queue's first job that is neither finished nor claimed by a
    live lane; a claim whose process is gone (a lane killed with its session) is taken over; a bad queue line is
    one error naming the file and line."""
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from results_factory import write_run_config, write_task_run

    lane = sweep_lane()
    regimes = sys.modules["collapse_regimes"]
    queue = tmp_path / "queue.txt"
    queue.write_text("# the light board, seed by seed\nwikitext_smol ce 4\nwikitext_smol tce:0.9 4  # arm two\n"
                     "wikitext_smol control 4\nwikitext_smol ce 5\n")
    jobs = lane.read_queue(queue)
    assert [(j.arm, j.seed) for j in jobs] == [("ce", 4), ("tce:0.9", 4), ("control", 4), ("ce", 5)]
    shipped = lane.read_queue(Path(lane.__file__).parent / "smol_queue.txt")  # issue 27's sweep: every line a job of a known regime
    assert {j.regime for j in shipped} == {"wikitext_smol", "wikitext_smol_heavy", "facts_smol", "facts_gemma"}
    out = tmp_path / "runs"
    task = regimes.regime_task("wikitext_smol")
    done = write_task_run(regimes.run_dir_for(out, "wikitext_smol", "ce", 4), task, [0.9, 0.8], seed=4,
                          n_items=100)  # a finished run
    killed = regimes.run_dir_for(out, "wikitext_smol", "ce", 5) / "killed"
    write_run_config(killed, task, "ce", 5)
    for run, hours in ((done, [0.5, 1.0]), (killed, [0.25])):
        for i, h in enumerate(hours):  # stage_i/metrics.json's seconds, as a run writes them when a stage ends
            (run / f"stage_{i}").mkdir()
            (run / f"stage_{i}" / "metrics.json").write_text(json.dumps({"seconds": {"train": h * 1800,
                                                                                     "evaluate": h * 1800}}))
    # ce 5 was killed after its stage 0: its stage 1 is timed by ce 4's (1 h); tce:0.9 4 and the control 4, of
    # arms with no finished run, by the regime's finished runs (1.5 h each)
    assert lane.hours_left(jobs, out) == ["wikitext_smol: 3 runs left, about 4.0 lane-hours"]
    # a lane's status passes over the jobs on their board; their runs here still time the jobs left
    assert lane.hours_left(jobs[1:3], out, timed_by=jobs) == ["wikitext_smol: 2 runs left, about 3.0 lane-hours"]
    assert lane.hours_left(jobs[1:3], out) == [
        "wikitext_smol: 2 runs left, untimed (no finished run of the regime to time them by)"]
    assert lane.hours_left([lane.Job("facts_smol", "ce", 0)], out) == [
        "facts_smol: 1 run left, untimed (no finished run of the regime to time them by)"]
    # --until: jobs that would finish before the machine goes come first (ce 5 needs 1 h, tce:0.9 4 1.5 h); where
    # none would, the queue's first; an untimed job does not fit
    fits = lane.fits_before(time.time() + 4000, jobs, out)
    assert [fits(j) for j in jobs[1:]] == [False, False, True] and not fits(lane.Job("facts_smol", "ce", 0))
    assert lane.next_job(jobs, out, fits=fits) == jobs[3]
    jobs[3].claim_file(out).unlink()
    assert lane.next_job(jobs, out, fits=lane.fits_before(time.time() + 600, jobs, out)) == jobs[1]
    jobs[1].claim_file(out).unlink()
    at = lane.deadline("10:20", now=time.mktime((2026, 12, 7, 10, 30, 0, 0, 0, -1)))
    assert time.localtime(at)[:5] == (2026, 12, 8, 10, 20)  # the next 10:20: tomorrow's
    assert lane.main([str(queue), "--out", str(out), "--until", "25:00"]) == 2
    assert "--until '25:00': expected a time of day HH:MM" in capsys.readouterr().err
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live lane
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a lane killed with its session
    try:
        gone.wait()
        held = jobs[1].claim_file(out)
        held.parent.mkdir(parents=True, exist_ok=True)
        held.write_text(f"{other.pid} {lane._started(other.pid)}")
        jobs[2].claim_file(out).write_text(f"{gone.pid} 12345")
        assert lane.next_job(jobs, out) == jobs[2]  # ce 4 finished, tce:0.9 4 held: the stale control claim
        assert jobs[2].claim_file(out).read_text().split()[0] == str(os.getpid())
        assert lane.next_job(jobs, out) == jobs[3]  # the control is now this lane's
        assert lane.next_job(jobs, out) is None
        # a running job's line says what a stop now would lose: the time since its run last saved a phase, or
        # since its lane claimed it, whichever is later (ce 5's killed run saved 30 min ago, claimed an hour ago)
        now = time.time()
        for f in [*(regimes.run_dir_for(out, "wikitext_smol", "ce", 5) / "killed").rglob("*")]:
            os.utime(f, (now - 1800, now - 1800))
        os.utime(jobs[3].claim_file(out), (now - 3600, now - 3600))
        saved = time.strftime("%H:%M", time.localtime(now - 1800))
        assert lane.status(jobs, out, now=now) == [
            "wikitext_smol ce 4: finished", f"wikitext_smol tce:0.9 4: running (pid {other.pid}; a stop now loses 0 min)",
            f"wikitext_smol control 4: running (pid {os.getpid()}; a stop now loses 0 min)",
            f"wikitext_smol ce 5: running (pid {os.getpid()}; last saved {saved}; a stop now loses 30 min)"]
        # --only: one job out of the queue's order, claimed like any other; a live lane's job is refused in one line
        assert lane.main([str(queue), "--out", str(out), "--only", "wikitext_smol", "tce:0.9", "4"]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "--only wikitext_smol tce:0.9 4: held by a live lane" in err
    finally:
        other.kill()
        other.wait()
    assert lane.next_job(jobs, out) == jobs[1]  # its lane died: taken over
    queue.write_text("wikitext_smol ce 4\nwikitext_smol ce four\n")
    assert lane.main([str(queue), "--out", str(out)]) == 2
    assert f"{queue}:2: expected 'REGIME ARM SEED [BOARD]'" in capsys.readouterr().err
    queue.write_text("nowhere ce 0\n")
    assert lane.main([str(queue), "--out", str(out)]) == 2
    assert "queue.txt:1: unknown regime 'nowhere'" in capsys.readouterr().err
    queue.write_text("wikitext_smol ce 4\nwikitext_smol ce 6\n")  # ce 6 would start: not with too little disk
    assert lane.main([str(queue), "--out", str(out), "--min-free-gb", "1e9"]) == 3
    assert "GB free under" in capsys.readouterr().err and not jobs[0].claim_file(out).with_name(
        "wikitext_smol-ce-s6.pid").exists()  # the claim is let go
    queue.write_text("wikitext_smol ce 4\n")
    assert lane.main([str(queue), "--out", str(out)]) == 0 and "nothing left" in capsys.readouterr().out
    assert lane.main([str(queue), "--out", str(out), "--only", "wikitext_smol", "ce", "4"]) == 0  # finished
    assert "nothing left in --only wikitext_smol ce 4" in capsys.readouterr().out
    assert lane.main([str(queue), "--out", str(out), "--only", "nowhere", "ce", "0"]) == 2
    assert "--only: unknown regime 'nowhere'" in capsys.readouterr().err
    assert json.loads(next(out.rglob("results.json")).read_text())["complete"]


def test_a_lane_publishes_each_run_it_finishes_onto_an_existing_board(tmp_path, monkeypatch, capsys):
    """sweep_lane.py --publish: a run the lane finishes is verified and put onto its board where the board
    exists; where none does, nothing is created (a board's design is chosen when it is made); the arm's entry
    grows by the new seed although the first seed's folder is gone (it went with another machine)."""
    import json
    import shutil

    from test_collapse import MICRO

    from fortifai_bench.leaderboard import load_board, publish

    lane, regimes, queue, out, boards = micro_lane(tmp_path, monkeypatch, "micro ce 0\nmicro ce 1\n")
    args = [str(queue), "--out", str(out), "--publish", str(boards), "--only", "micro", "ce"]
    assert lane.main(args + ["0"]) == 0
    assert f"not published: no board {boards / 'collapse_facts.json'}" in capsys.readouterr().out
    assert list(boards.iterdir()) == []
    first = regimes.finished_run_dir(out, "micro", "ce", 0)
    # the task moved on (a calibration step makes a new version): the old version's run is another experiment's,
    # neither done nor resumed here, and not a stage 0 for this version's control
    monkeypatch.setitem(regimes.REGIMES, "micro", ("collapse_facts", MICRO + ["stages=2", "version=9"]))
    assert regimes.newest_run(out, "micro", "ce", 0) is None and regimes.finished_run(out, "micro", "ce", 0) is None
    monkeypatch.setitem(regimes.REGIMES, "micro", ("collapse_facts", MICRO + ["stages=2"]))
    assert regimes.finished_run_dir(out, "micro", "ce", 0) == first
    publish([first], root=boards)  # the board made by hand, with its design
    shutil.rmtree(first)
    # seed 1 finishes but its lane stops before publishing (here: a lane without --publish); the next lane
    # publishes it without running it again
    assert lane.main(args[:3] + args[5:] + ["1"]) == 0
    capsys.readouterr()
    runs = sorted(out.rglob("results.json"))
    assert lane.main([str(queue), "--out", str(out), "--publish", str(boards), "--status"]) == 0
    assert "micro ce 1: finished, not on its board yet" in capsys.readouterr().out
    assert lane.main([str(queue), "--out", str(out), "--publish", str(boards)]) == 0
    text = capsys.readouterr().out
    assert "micro ce seed 1: grew ce_tiny_s0-1_" in text and "seed 1: start" not in text, text
    assert sorted(out.rglob("results.json")) == runs and not list((out / ".claims").iterdir())
    [entry] = load_board(boards / "collapse_facts.json")["entries"]
    assert entry["seeds"] == [0, 1] and entry["runs"][1]["run_dir"] == str(regimes.finished_run_dir(out, "micro",
                                                                                                  "ce", 1))
    # one queue for every machine: a seed on its board is passed over, and so is a board of another CPU kind
    queue.write_text("micro ce 0\nmicro ce 1\nmicro tce:0.9 0\n")
    status = [str(queue), "--out", str(out), "--publish", str(boards), "--status"]
    assert lane.main(status) == 0
    text = capsys.readouterr().out
    assert "micro ce 0: passed over, on its board" in text and "micro ce 1: passed over, on its board" in text
    assert "micro tce:0.9 0: waiting" in text
    path = boards / "collapse_facts.json"
    shutil.copy(path, boards / "collapse_facts_here.json")  # this CPU kind's board of the task, named in the queue
    board = json.loads(path.read_text())
    for run in board["entries"][0]["runs"]:
        run["cpu"]["torch_capability"] = "DEFAULT"  # as if made by a CPU without AVX2
    path.write_text(json.dumps(board))
    queue.write_text("micro tce:0.9 0\nmicro ce 1 collapse_facts_here.json\nmicro tce:0.9 0 collapse_facts_here.json\n")
    assert lane.main(status) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("micro tce:0.9 0: passed over, its board is another CPU kind's (")
    assert lines[1:3] == ["micro ce 1 collapse_facts_here.json: passed over, on its board",
                          "micro tce:0.9 0 collapse_facts_here.json: waiting"]
    for bad in ("micro ce 0 ../x.json", "micro ce 0 board.txt"):
        queue.write_text(bad + "\n")
        assert lane.main(status) == 2
        assert f"{queue}:1: board {bad.split()[-1]!r} is not a .json file name" in capsys.readouterr().err


def test_a_pruning_lane_removes_published_runs_models_but_lends_ce_stage_0_to_its_control(tmp_path, monkeypatch,
                                                                                           capsys):
    """sweep_lane.py --publish --prune: the stage models of a run on its board go before the next job, except CE's
    stage 0 while its seed's control has not run (the control copies it); once the control is on the board too,
    that stage 0 goes as well. The records stay, and the board keeps both arms; --prune alone is refused."""
    import re

    from fortifai_bench.leaderboard import load_board, publish

    lane, regimes, queue, out, boards = micro_lane(tmp_path, monkeypatch, "micro ce 0\nmicro control 0\n")
    assert lane.main([str(queue), "--out", str(out), "--prune"]) == 2
    assert "--prune needs --publish DIR" in capsys.readouterr().err
    assert lane.main([str(queue), "--out", str(out), "--only", "micro", "ce", "0"]) == 0
    ce = regimes.finished_run_dir(out, "micro", "ce", 0)
    publish([ce], root=boards)  # the board made by hand, with its design
    capsys.readouterr()
    assert lane.main([str(queue), "--out", str(out), "--publish", str(boards), "--prune"]) == 0
    lines = [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()]  # less the time of day
    control = regimes.finished_run_dir(out, "micro", "control", 0)
    pruned = [re.sub(r"\(\S+ GB\)", "(N GB)", line) for line in lines if line.startswith("pruned")]
    assert pruned == [f"pruned 1 stage models (N GB) of {ce}, on its board",  # stage_1; stage_0 lent
                      f"pruned 1 stage models (N GB) of {ce}, on its board",  # stage_0, once the control ran
                      f"pruned 2 stage models (N GB) of {control}, on its board"], lines
    assert lines[0].startswith("pruned 1 stage models (") and lines[1] == "micro control seed 0: start"
    assert "stage_0" in (control / "copied.json").read_text()  # the lent stage 0, copied
    assert not list(out.rglob("stage_*/model")) and len(list(out.rglob("stage_*/metrics.json"))) == 4
    board = load_board(boards / "collapse_facts.json")
    assert sorted(e["seeds"][0] for e in board["entries"]) == [0, 0] and len(board["entries"]) == 2


def test_a_sweep_control_waits_for_its_ce_runs_stage_0(tmp_path):
    """benchmarks/sweep_lane.py: a clean control whose CE run at its seed is held by a live lane and has not
    finished stage 0 is passed over (it would train that stage again instead of copying it), shown as waiting;
    once CE's stage 0 is written, or CE's lane is gone, the control is taken."""
    import subprocess
    import sys

    lane = sweep_lane()
    from results_factory import write_run_config

    out = tmp_path / "runs"
    ce, control, other = (lane.Job("facts_smol", "ce", 1), lane.Job("facts_smol", "control", 1),
                          lane.Job("facts_smol", "ce", 2))
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # CE's live lane
    try:
        ce.claim_file(out).parent.mkdir(parents=True)
        ce.claim_file(out).write_text(f"{running.pid} {lane._started(running.pid)}")
        stage0 = out / "facts_smol" / "ce-s1" / "collapse_facts_smol-ce-s1-x" / "stage_0"  # run_dir_for's layout
        stage0.mkdir(parents=True)
        write_run_config(stage0.parent, sys.modules["collapse_regimes"].regime_task("facts_smol"), "ce", 1)
        assert lane.waits_for_ce(control, out) and not lane.waits_for_ce(other, out)
        assert lane.status([ce, control], out)[1] == "facts_smol control 1: waiting for CE's stage 0"
        assert lane.next_job([ce, control, other], out) == other  # passed over, not claimed
        assert not control.claim_file(out).exists()
        (stage0 / "metrics.json").write_text("{}")
        assert lane.next_job([ce, control], out) == control
        control.claim_file(out).unlink()
        (stage0 / "metrics.json").unlink()
    finally:
        running.kill()
        running.wait()
    assert not lane.waits_for_ce(control, out)  # CE's lane is gone: its run resumes later, the control goes on
    assert lane.next_job([control], out) == control


def test_sweep_lanes_script_starts_lanes_that_resume_a_queue(tmp_path):
    """benchmarks/sweep_lanes.sh: starts LANES background lanes of sweep_lane.py from the FROZEN copy, each
    logging to OUT/lane_N.log; a queue whose jobs are finished leaves each lane nothing to do; a missing queue
    is one line and exit 2."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from results_factory import write_task_run

    from fortifai_bench.collapse.config import load_task

    repo = Path(__file__).resolve().parent.parent
    out = tmp_path / "runs"
    # a finished run of the wikitext_smol regime (collapse_regimes.REGIMES: the shipped task), in run_dir_for's layout
    write_task_run(out / "wikitext_smol" / "ce-s4", load_task("collapse_wikitext_smol"), [0.9, 0.8], seed=4,
                   n_items=100)
    queue = tmp_path / "queue.txt"
    queue.write_text("wikitext_smol ce 4\n")
    env = {**os.environ, "QUEUE": str(queue), "OUT": str(out), "LANES": "2", "FROZEN": str(repo),
           "PYTHON": sys.executable}
    script = repo / "benchmarks" / "sweep_lanes.sh"
    started = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines() == [f"lane {n}: {repo} on {queue}, log {out}/lane_{n}.log" for n in (1, 2)]
    logs = [out / f"lane_{n}.log" for n in (1, 2)]
    deadline = time.time() + 120
    while time.time() < deadline and not all(p.is_file() and "nothing left" in p.read_text() for p in logs):
        time.sleep(0.5)
    for log in logs:
        assert f"nothing left in {queue}" in log.read_text()
    missing = subprocess.run(["bash", str(script)], env={**env, "QUEUE": str(tmp_path / "none.txt")},
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: no queue at {tmp_path}/none.txt (QUEUE=FILE)"


def test_the_kind_probe_compares_a_run_with_its_boards_seed(tmp_path, monkeypatch, capsys):
    """benchmarks/kind_probe.py: a run of a board's arm and seed, made again, equals the board's numbers in every
    digit (exit 0); one number moved by 1e-12, as another CPU's kernels would round, is named and exits 1; a seed
    the board lacks is a one-line error (exit 2)."""
    import importlib.util
    import json
    from pathlib import Path

    from fortifai_bench.leaderboard import publish
    from results_factory import write_run, write_seeds

    spec = importlib.util.spec_from_file_location(
        "kind_probe", Path(__file__).resolve().parent.parent / "benchmarks" / "kind_probe.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboards").mkdir()
    curves = [[1.0, 0.9, 0.7, 0.5], [1.0, 0.85, 0.65, 0.5]]
    publish(write_seeds(tmp_path / "board_runs", curves, loss="ce"))
    board = tmp_path / "leaderboards" / "collapse_facts.json"
    again = write_run(tmp_path / "here", curves[1], seed=1, loss="ce")
    assert mod.main([str(again), str(board)]) == 0
    out = capsys.readouterr().out
    assert "| 2 | kl | 0.02 | 0.02 | yes |" in out and out.rstrip().endswith("the board's kind")
    data = json.loads((again / "results.json").read_text())
    data["stages"][2]["kl"] += 1e-12
    (again / "results.json").write_text(json.dumps(data))
    assert mod.main([str(again), str(board)]) == 1
    out = capsys.readouterr().out
    assert "| 2 | kl | 0.02 | 0.020000000001 | NO |" in out and out.rstrip().endswith("NOT the board's kind")
    other = write_run(tmp_path / "here", curves[0], seed=5, loss="ce")
    assert mod.main([str(other), str(board)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no seed 5 of the run's arm (ce)" in err


def test_the_mask_table_from_a_board_alone(capsys):
    """benchmarks/mask_as_trained.py --board: a board's own mask and Fig. 1 numbers per stage, its seeds' means,
    kept = 1 - the share above gamma the board keeps (run folders of pruned or lost runs are not needed)."""
    import importlib.util
    import json
    import statistics
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("mask_as_trained", root / "benchmarks" / "mask_as_trained.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = root / "leaderboards" / "collapse_facts_gemma.json"
    assert mod.main(["--board", str(path)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    entry = next(e for e in json.loads(path.read_text())["entries"] if e["loss"]["spec"] == "tce:0.9")
    stage = entry["stages"][1]
    row = next(r for r in rows if r[1] == "tce:0.9" and r[3] == "1")
    assert row[2] == str(len(entry["seeds"]))
    assert row[5] == f"{1 - statistics.fmean(stage['mask_trained']['corrupted']['per_seed']):.3f}"
    assert row[4] == f"{statistics.fmean(stage['score']['per_seed']):.3f}"
    control_0 = next(r for r in rows if r[1] == "control" and r[3] == "0")
    assert control_0[5] == control_0[6] == "-"  # no regenerated text at stage 0
