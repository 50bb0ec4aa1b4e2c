"""Leaderboard: merging seeds into entries, validation, publish (atomic, idempotent, refusals), show, render."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fortifai_bench.cli import main
from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard import board_test, load_board, publish, rank_entries
from fortifai_bench.leaderboard.board import build_entry, canonical
from fortifai_bench.leaderboard.render import render_html, render_markdown, render_text
from fortifai_bench.leaderboard.ranking import claim_text, ranking
from fortifai_bench.results import load_results
from results_factory import DEFAULT_CONFIG, make_results, write_run, write_seeds

CE = [[1.0, 0.9, 0.7, 0.5], [1.0, 0.85, 0.65, 0.5], [0.975, 0.9, 0.75, 0.6]]
TCE = [[1.0, 0.95, 0.85, 0.8], [1.0, 0.95, 0.9, 0.7], [1.0, 0.9, 0.8, 0.775]]


@pytest.fixture
def lb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboards").mkdir()
    return tmp_path / "leaderboards"


def test_publish_merges_seeds_into_one_validated_entry(tmp_path, lb):
    runs = write_seeds(tmp_path / "runs", CE, loss="ce")
    report = publish(runs)
    assert report.added and report.written and report.board == Path("leaderboards/collapse_facts.json")
    board = load_board(lb / "collapse_facts.json")
    assert board["task"] == {"name": "collapse_facts", "version": 1}
    assert "seed" not in board["protocol"] and "loss" not in board["protocol"]
    [entry] = board["entries"]
    assert entry["seeds"] == [0, 1, 2] and entry["loss"]["spec"] == "ce" and entry["model"] == "tiny"
    # per-stage mean and 95% t-interval over the three seeds
    stage2 = [c[2] for c in CE]
    m, half = np.mean(stage2), stats.t.ppf(0.975, 2) * np.std(stage2, ddof=1) / np.sqrt(3)
    assert entry["stages"][2]["score"]["mean"] == pytest.approx(m)
    assert entry["stages"][2]["score"]["ci"] == pytest.approx([m - half, m + half])
    assert entry["stages"][2]["kr_total"]["mean"] == pytest.approx(m - 0.02)
    assert entry["stages"][3]["kl"]["mean"] == pytest.approx(0.03)
    # time to failure: seed 0 crosses 0.75 at 1.75, seed 1 at 1.5, seed 2 at 2.0 (exactly 0.75 is not below)
    ttf = entry["time_to_failure"]
    assert [f["time"] for f in ttf["per_seed"]] == pytest.approx([1.75, 1.5, 2.0])
    assert ttf["failed"] == 3 and ttf["never_failed"] == 0 and ttf["never_learned"] == 0
    assert ttf["mean"] == pytest.approx(1.75) and ttf["ci"][0] < 1.75 < ttf["ci"][1]
    assert ttf["rank_value"] == pytest.approx(ttf["mean"]) == pytest.approx(ttf["restricted_mean"])
    assert [r["command"] for r in entry["runs"]] == [f"fortifai-bench collapse --loss ce --seed {s}" for s in range(3)]
    assert entry["versions"]["torch"] == "2.13.0" and entry["date"] == "2025-01-03T00:00:00+00:00"


def test_time_to_failure_per_seed_and_not_reached(tmp_path, lb):
    curves = [[1.0, 0.9, 0.7, 0.5], [1.0, 0.9, 0.85, 0.8]]  # seed 1 never falls below 0.75
    publish(write_seeds(tmp_path / "runs", curves, loss="tce:0.9"))
    [entry] = load_board(lb / "collapse_facts.json")["entries"]
    ttf = entry["time_to_failure"]
    assert [f["status"] for f in ttf["per_seed"]] == ["failed", "never_failed"]
    assert (ttf["failed"], ttf["never_failed"]) == (1, 1)
    # a censored seed is not a failure at the horizon: no mean, no interval; a bound instead
    assert ttf["mean"] is None and ttf["rank_value"] == pytest.approx((1.75 + 3) / 2)
    assert ">= 2.38 (1 of 2 never failed)" in render_text(load_board(lb / "collapse_facts.json"))


def test_publish_is_idempotent(tmp_path, lb):
    runs = write_seeds(tmp_path / "runs", CE, loss="ce")
    publish(runs)
    path = lb / "collapse_facts.json"
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    report = publish(list(reversed(runs)))  # order of arguments does not matter either
    assert not report.written and report.unchanged and not report.added
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in lb.iterdir()) == ["collapse_facts.json"]  # no temp files left


def test_refuses_other_task_version_and_says_so(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    before = (lb / "collapse_facts.json").read_bytes()
    with pytest.raises(FortifaiError, match=r"task version 2 differs from the board's version 1"):
        publish(write_seeds(tmp_path / "b", TCE, loss="tce:0.9", version=2))
    assert (lb / "collapse_facts.json").read_bytes() == before


def test_refuses_other_config_naming_the_fields(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    cfg["train"]["epochs"] = 5
    cfg["mode"] = "replace"
    with pytest.raises(FortifaiError) as exc:
        publish(write_seeds(tmp_path / "b", TCE, loss="tce:0.9", config=cfg))
    msg = str(exc.value)
    assert "config differs from the board's" in msg and "board -> runs" in msg
    assert "mode: 'accumulate' -> 'replace'" in msg and "train.epochs: 3 -> 5" in msg
    # as strict as the protocol hash: 3.0 epochs is another protocol than 3, though Python calls them equal
    cfg = json.loads(json.dumps(DEFAULT_CONFIG))
    cfg["train"]["epochs"] = 3.0
    with pytest.raises(FortifaiError, match="config differs.*other JSON types"):
        publish(write_seeds(tmp_path / "c", TCE, loss="tce:0.9", config=cfg))


def test_refuses_seeds_of_different_configs_in_one_entry(tmp_path, lb):
    runs = write_seeds(tmp_path / "a", CE[:2], loss="ce")
    odd = write_run(tmp_path / "b", CE[2], loss="ce", seed=2, model="gpt2")
    report = publish(runs + [odd])  # a different model is a different entry, not an error
    assert len(report.added) == 2
    dup = write_run(tmp_path / "c", CE[2], loss="ce", seed=1)
    with pytest.raises(FortifaiError, match="seed 1 given twice"):
        publish(runs + [dup])


def test_build_entry_names_the_runs_that_differ(tmp_path):
    """One check of what an entry's seeds share (board.assemble_entry): from runs its errors name their files."""
    a = load_results(write_run(tmp_path / "a", CE[0], loss="ce", seed=0))
    b = load_results(write_run(tmp_path / "b", CE[1], loss="ce", seed=1))
    b["failure_threshold"] = 0.5
    with pytest.raises(FortifaiError) as exc:
        build_entry([b, a])
    msg = str(exc.value)
    assert f"cannot merge {a['_path']} and {b['_path']}: they differ in failure_threshold (0.75 vs 0.5)" == msg
    b["failure_threshold"], b["stages"] = 0.75, b["stages"][:-1]
    with pytest.raises(FortifaiError, match=r"differ in number of stages \(4 vs 3\)"):
        build_entry([a, b])
    b = load_results(write_run(tmp_path / "c", CE[1], loss="ce", seed=0))
    with pytest.raises(FortifaiError, match=f"seed 0 given twice: {re.escape(str(a['_path']))}, "):
        build_entry([a, b])


def test_rerun_with_other_numbers_needs_replace(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    rerun = write_seeds(tmp_path / "b", [c[:3] + [0.1] for c in CE], loss="ce")
    with pytest.raises(FortifaiError, match="already on the board with different results.*--replace"):
        publish(rerun)
    report = publish(rerun, replace=True)
    assert report.replaced and report.written
    [entry] = load_board(lb / "collapse_facts.json")["entries"]
    assert entry["final_score"]["mean"] == pytest.approx(0.1)



def test_an_arm_grows_by_seeds_and_keeps_one_entry(tmp_path, lb):
    runs = write_seeds(tmp_path / "a", CE, loss="ce")
    publish(runs[:2])
    path = lb / "collapse_facts.json"
    report = publish(runs)  # seeds 0-1 on the board, 0-2 published: the entry grows
    assert report.grown and not report.added and report.written
    [entry] = load_board(path)["entries"]
    assert entry["seeds"] == [0, 1, 2] and entry["auc"]["n"] == 3
    # a later session grows it by one new seed, the old runs gone with their machine: the board keeps their
    # numbers as published, and the entry equals the one built from all four runs at once
    seed3 = write_run(tmp_path / "b", CE[0], loss="ce", seed=3)
    all_four = build_entry([load_results(r) for r in runs + [seed3]])
    for run in runs:
        shutil.rmtree(run)
    report = publish([seed3])
    [entry] = load_board(path)["entries"]
    assert report.grown == [all_four["name"]] and canonical(entry) == canonical(all_four)
    runs = write_seeds(tmp_path / "a", CE, loss="ce")  # the same runs again (same numbers and records)
    assert publish(runs).unchanged and not publish(runs).written
    before = path.read_bytes()
    # a seed on the board from another run (other numbers) is not swapped in silently
    other = write_run(tmp_path / "c", [c - 0.1 for c in CE[2]], loss="ce", seed=2)
    with pytest.raises(FortifaiError, match=r"gives seed 2 of entry .* from another run than the board's.*--replace"):
        publish([other])
    assert path.read_bytes() == before
    report = publish([other], replace=True)
    [entry] = load_board(path)["entries"]
    assert report.replaced and entry["seeds"] == [0, 1, 2, 3]
    assert entry["final_score"]["per_seed"][2] == pytest.approx(CE[2][-1] - 0.1)


SHIPPED_BOARDS = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "leaderboards").glob("*.json")
                        if p.stem != "schema")


@pytest.mark.parametrize("name", SHIPPED_BOARDS)
def test_a_shipped_entry_split_by_seeds_and_joined_again_is_itself(name):
    """board.assemble_entry on the shipped boards' real entries (the mechanism, runtimes, bases, versions): the
    entry's summaries are what its per-seed numbers give today (one definition of each, the intervals cut to each
    number's range), and the first seeds and the rest as two entries, joined the other way round, give back the
    entry byte for byte."""
    from fortifai_bench.leaderboard.board import assemble_entry

    board = load_board(Path(__file__).resolve().parent.parent / "leaderboards" / f"{name}.json")
    for entry in board["entries"]:
        assert canonical(assemble_entry([(entry, i) for i in range(len(entry["seeds"]))])) == canonical(entry)
    for entry in (e for e in board["entries"] if len(e["seeds"]) > 1):
        half = len(entry["seeds"]) // 2
        parts = [assemble_entry([(entry, i) for i in seeds])
                 for seeds in (range(half), range(half, len(entry["seeds"])))]
        assert [p["seeds"] for p in parts] == [entry["seeds"][:half], entry["seeds"][half:]]
        joined = assemble_entry([(p, i) for p in reversed(parts) for i in range(len(p["seeds"]))])
        assert canonical(joined) == canonical(entry), entry["name"]


def test_ranking_not_reached_best_then_ttf_then_auc(tmp_path, lb):
    publish(write_seeds(tmp_path / "ce", CE, loss="ce"))
    publish(write_seeds(tmp_path / "f", [[1.0, 0.95, 0.9, 0.85]] * 2, loss="focal:2"))  # never fails, AUC 0.925
    publish(write_seeds(tmp_path / "t", [[1.0, 1.0, 0.95, 0.9]] * 2, loss="tce:0.99"))  # never fails, AUC 0.967
    publish(write_seeds(tmp_path / "t9", [[1.0, 0.9, 0.8, 0.7]] * 2, loss="tce:0.9"))  # fails at 2.5
    board = load_board(lb / "collapse_facts.json")
    assert [e["loss"]["spec"] for e in rank_entries(board["entries"])] == ["tce:0.99", "focal:2", "tce:0.9", "ce"]
    # the file keeps a stable order (by loss spec) for small pull-request diffs; ranking happens when shown
    assert [e["loss"]["spec"] for e in board["entries"]] == ["ce", "focal:2", "tce:0.9", "tce:0.99"]
    text = render_text(board).splitlines()
    # two seeds a side: 2 vs 2 (6 splits) cannot give p below 1/3, however far apart, so every entry is in the
    # best entry's group, the best included: no lone "1" suggests a winner the seeds cannot tell apart
    assert text[1].startswith("#") and text[3].split()[:2] == ["=1", "tce:0.99"]
    assert [line.split()[:2] for line in text[4:7]] == [["=1", "(p"], ["=1", "(p"], ["=1", "(p"]]
    assert [line.split()[4] for line in text[4:7]] == ["focal:2", "tce:0.9", "ce"]
    assert "not within 3 stages (2 of 2 never failed)" in text[3] and "2.50" in text[5]
    md = render_markdown(board).splitlines()
    assert md[4].startswith("| \\# | loss |") and md[6].startswith("| =1 | tce:0.99 |")


# Five seeds each (4 stages, threshold 0.75): restricted times
BEST = [[1, 1, .8, .5], [1, 1, .85, .5], [1, 1, .9, .5], [1, 1, .95, .5], [1, 1, .9, .8]]  # 2.17 2.29 2.38 2.44 3
MIDDLE = [[1, .9, .5, .5], [1, 1, .775, .5], [1, 1, .85, .5], [1, .95, .5, .5], [1, 1, .8, .5]]  # 1.38 2.09 2.29 1.44 2.17
LOW = [[1, .775, .5, .5], [1, .8, .5, .5], [1, .85, .5, .5], [1, .9, .5, .5], [1, .95, .5, .5]]  # 1.09 ... 1.44


def test_the_claims_against_ce_are_the_family_and_the_top_group_its_own(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "t", BEST, loss="tce:0.9"))
    publish(write_seeds(tmp_path / "f", MIDDLE, loss="focal:2"))
    publish(write_seeds(tmp_path / "ce", LOW, loss="ce"))
    board = load_board(lb / "collapse_facts.json")
    rows = ranking(board["entries"])
    # exact 5 vs 5 p: tce-ce 2/252 (fully separated), focal-ce 10/252, focal-tce 10/252.
    # The claims (tce and focal against CE) are one family of two: Holm 2 x 2/252, then 1 x 10/252
    tce, focal, ce = rows
    assert tce.vs_ce["p_value"] == pytest.approx(2 / 252) and tce.vs_ce["p_holm"] == pytest.approx(4 / 252)
    assert focal.vs_ce["p_holm"] == pytest.approx(10 / 252) and focal.vs_ce["family"] == 2
    assert tce.vs_ce["verdict"] == focal.vs_ce["verdict"] == "better" and ce.vs_ce is None
    # the tests against the best (focal and CE against tce) are a family of their own: they move no claim
    assert focal.vs_best["p_holm"] == pytest.approx(10 / 252) and ce.vs_best["p_holm"] == pytest.approx(4 / 252)
    assert [(r.label, r.entry["loss"]["spec"]) for r in rows] == [("1", "tce:0.9"), ("2", "focal:2"), ("3", "ce")]
    text = render_text(board)
    assert "better (p = 0.0079 raw, 0.016 after Holm over 2 claims)" in text and "baseline" in text
    assert "Holm over the claims against CE only" in text and "this group claims nothing" in text
    assert "better (p = 0.04 raw, 0.04 after Holm over 2 claims)" in render_markdown(board)


def test_an_entry_tied_with_the_best_shares_its_rank(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "t", BEST, loss="tce:0.9"))
    publish(write_seeds(tmp_path / "f", [c[:] for c in BEST[::-1]][:4] + [[1, 1, .9, .5]], loss="focal:2"))
    publish(write_seeds(tmp_path / "ce", LOW, loss="ce"))
    rows = ranking(load_board(lb / "collapse_facts.json")["entries"])
    # focal:2's seeds are tce:0.9's but one: a tie. Both read "=1" (the best is not "1" beside an equal),
    # both are better than CE, and CE, apart from them, keeps its position
    assert [r.label for r in rows] == ["=1", "=1", "3"]
    assert rows[1].vs_best["p_holm"] > 0.05 and {r.vs_ce["verdict"] for r in rows[:2]} == {"better"}
    assert "=1 (p = " in render_text(load_board(lb / "collapse_facts.json"))


def test_a_loss_apart_from_ce_is_better_however_many_entries_the_board_holds(tmp_path, lb):
    """The issue-26 board: CE, four losses like it and one that outlasts it on every seed. With the claims as
    the family (5 claims) the best reaches 5 x 2/252 = 0.04; with every test against the best in the family
    too (9 tests), 9 x 2/252 = 0.071 could never say better."""
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "ce", LOW, loss="ce"))
    for i, spec in enumerate(["tce:0.5", "tce:0.7", "tce:0.9", "focal:2"]):
        publish(write_seeds(tmp_path / f"l{i}", LOW[i:] + LOW[:i], loss=spec))
    publish(write_seeds(tmp_path / "w", BEST, loss="tce:0.99"))
    rows = {r.entry["loss"]["spec"]: r for r in ranking(load_board(lb / "collapse_facts.json")["entries"])}
    best = rows["tce:0.99"]
    assert best.label == "1" and best.vs_ce["family"] == 5
    assert best.vs_ce["p_holm"] == pytest.approx(10 / 252) and best.vs_ce["verdict"] == "better"
    assert [rows[s].vs_ce["verdict"] for s in ("tce:0.5", "tce:0.7", "tce:0.9", "focal:2")] == ["indistinguishable"] * 4


def test_no_lone_1_where_the_claim_against_ce_is_indistinguishable(tmp_path, lb):
    """The best is apart from every other entry in the descriptive family (2/252, 2/252, 6/252: Holm 0.024)
    but its claim against CE (6/252 among three claims: Holm 0.071) is indistinguishable: CE shares its rank,
    by the claim's p, instead of a lone "1" beside "indistinguishable"."""
    from fortifai_bench.leaderboard import ranking

    ce = LOW[:4] + [[1, 1, .85, .5]]  # one seed as long as the best's
    publish(write_seeds(tmp_path / "ce", ce, loss="ce"))
    publish(write_seeds(tmp_path / "w", BEST, loss="tce:0.99"))
    publish(write_seeds(tmp_path / "a", LOW[1:] + LOW[:1], loss="tce:0.9"))
    publish(write_seeds(tmp_path / "b", [LOW[1], LOW[2], LOW[0], LOW[3], LOW[1]], loss="focal:2"))
    rows = ranking(load_board(lb / "collapse_facts.json")["entries"])
    assert [r.entry["loss"]["spec"] for r in rows] == ["tce:0.99", "ce", "tce:0.9", "focal:2"]
    best, ce_row = rows[0], rows[1]
    assert ce_row.vs_best["p_holm"] == pytest.approx(6 / 252)  # the descriptive family alone would part them
    assert best.vs_ce["p_holm"] == pytest.approx(18 / 252) and best.vs_ce["verdict"] == "indistinguishable"
    assert ce_row.tie is best.vs_ce
    assert [r.label for r in rows] == ["=1", "=1", "3", "4"]
    assert "=1 (p = 0.071)" in render_text(load_board(lb / "collapse_facts.json"))


def test_a_claim_says_why_an_interval_excludes_1_beside_indistinguishable():
    from fortifai_bench.leaderboard import claim_text

    test = {"ratio": 0.65, "ratio_ci": [0.50, 0.83], "p_value": 6 / 252, "p_holm": 30 / 252, "family": 5,
            "splits": 252, "n_a": 5, "n_b": 5, "min_p": 2 / 252, "verdict": "indistinguishable"}
    assert claim_text(test) == ("0.65x [0.50, 0.83] indistinguishable (p = 0.024 raw, 0.12 after Holm over 5 claims; "
                                "the interval excludes 1 and the raw p is below 0.05, but not after the adjustment)")
    unadjusted = {**test, "p_value": 0.13, "p_holm": 0.51}
    assert claim_text(unadjusted).endswith("the bootstrap interval excludes 1 but the exact test does not reject "
                                           "even unadjusted (a 5-seed percentile bootstrap runs narrow))")
    assert claim_text({**test, "ratio_ci": [0.50, 1.10]}).endswith("after Holm over 5 claims)")
    three = {**test, "p_value": 0.1, "p_holm": 0.2, "family": 2, "splits": 20, "n_a": 3, "n_b": 3, "min_p": 0.1}
    assert claim_text(three).endswith("the interval excludes 1, but 3 vs 3 seeds cannot reach p < 0.05 (smallest p 0.1))")
    alone = {**test, "p_holm": test["p_value"], "family": 1, "verdict": "worse"}
    assert claim_text(alone) == "0.65x [0.50, 0.83] worse (p = 0.024, the board's only claim)"
    assert claim_text({**test, "p_value": None, "p_holm": None}) == "0.65x [0.50, 0.83] indistinguishable (too few seeds)"
    assert claim_text({**three, "ratio": 31.16, "ratio_ci": [29.93, 33.0]}).startswith(  # 3 digits, not 4
        "31.2x [29.9, 33.0] indistinguishable (p = 0.1 raw, 0.2 after Holm over 2 claims")


def test_losses_below_ce_are_worse(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "ce", BEST, loss="ce"))
    publish(write_seeds(tmp_path / "f", LOW, loss="focal:2"))
    [ce, focal] = ranking(load_board(lb / "collapse_facts.json")["entries"])
    assert focal.label == "2" and focal.vs_ce["verdict"] == "worse" and focal.vs_ce["p_holm"] == pytest.approx(2 / 252)
    assert focal.vs_ce["ratio"] == pytest.approx(np.mean([failure_of(c) for c in LOW]) /
                                                 np.mean([failure_of(c) for c in BEST]))
    lo, hi = focal.vs_ce["ratio_ci"]
    assert lo < focal.vs_ce["ratio"] < hi < 1


def failure_of(curve):
    from fortifai_bench.metrics import failure

    return failure(curve, 0.75).restricted()


def test_the_clean_control_is_a_ceiling_row(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "ce", CE, loss="ce"))
    control = write_seeds(tmp_path / "c", [[1.0, 1.0, 0.95, 0.95]] * 3, loss="ce", control=True)
    publish(control)
    board = load_board(lb / "collapse_facts.json")
    assert board["protocol"]["mode"] == "accumulate" and len(board["entries"]) == 2
    rows = ranking(board["entries"])
    assert [(r.label, r.entry.get("control")) for r in rows] == [("1", False), ("control", True)]
    assert rows[1].entry["name"].startswith("control-ce_") and rows[1].vs_ce is None and rows[1].vs_best is None
    assert "ce (clean control)" in render_text(board)
    # publishing to a board that already holds the control checks the control entry's name as a control's
    publish(write_seeds(tmp_path / "t", TCE, loss="tce:0.9"))
    assert len(load_board(lb / "collapse_facts.json")["entries"]) == 3


def test_hand_edited_board_error_names_entry_and_field(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    publish(write_seeds(tmp_path / "b", TCE, loss="tce:0.9"))
    path = lb / "collapse_facts.json"
    board = json.loads(path.read_text())
    name = board["entries"][1]["name"]
    board["entries"][1]["stages"][2]["score"]["mean"] = "high"
    path.write_text(json.dumps(board))
    with pytest.raises(FortifaiError) as exc:
        load_board(path)
    assert f"entry 1 ('{name}')" in str(exc.value) and "field stages[2].score.mean" in str(exc.value)
    assert "'high' is not of type" in str(exc.value)
    del board["entries"][0]["config_hash"]
    board["entries"][1]["stages"][2]["score"]["mean"] = 0.5
    path.write_text(json.dumps(board))
    with pytest.raises(FortifaiError, match=r"entry 0 \('ce_.*'\): field \(the entry itself\): 'config_hash' is a "
                                            r"required property"):
        load_board(path)
    # publishing onto a broken board refuses too, and leaves it as it was
    broken = path.read_bytes()
    with pytest.raises(FortifaiError, match="config_hash"):
        publish(write_seeds(tmp_path / "c", CE, loss="focal:2"))
    assert path.read_bytes() == broken


def test_loading_never_executes_anything(tmp_path, lb):
    marker = tmp_path / "pwned"
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    path = lb / "collapse_facts.json"
    board = json.loads(path.read_text())
    # strings that would run code if a loader used yaml.load, eval or pickle; JSON keeps them as text
    board["entries"][0]["loss"]["spec"] = f"!!python/object/apply:os.system ['touch {marker}']"
    board["entries"][0]["model"] = f"__import__('os').system('touch {marker}')"
    path.write_text(json.dumps(board))
    shown = render_text(load_board(path))
    assert "!!python/object/apply:os.system" in shown and not marker.exists()
    path.write_bytes(b"\x80\x04\x95cos\nsystem\n")  # a pickle is not a board
    with pytest.raises(FortifaiError, match="invalid JSON"):
        load_board(path)


def test_board_paths_cannot_escape_the_leaderboards_folder(tmp_path, lb):
    runs = write_seeds(tmp_path / "a", CE, loss="ce")
    for bad in ["../elsewhere.json", "/tmp/board.json", "leaderboards/../x.json", "leaderboards/schema.json",
                "leaderboards/board.txt"]:
        with pytest.raises(FortifaiError, match="outside the leaderboards folder|must end in .json|schema"):
            publish(runs, bad)
    evil = write_run(tmp_path / "evil", CE[0], loss="ce", task="../../escaped")
    with pytest.raises(FortifaiError, match="not a safe file name"):
        publish([evil])
    os.symlink(tmp_path, lb / "link")  # a symlink inside the folder pointing out of it
    with pytest.raises(FortifaiError, match="outside the leaderboards folder"):
        publish(runs, "leaderboards/link/board.json")
    assert not list(tmp_path.glob("*.json")) and sorted(p.name for p in lb.iterdir()) == ["link"]
    report = publish(runs, "leaderboards/sub/facts.json")  # a subfolder inside is fine
    assert report.written and (lb / "sub" / "facts.json").is_file()


def test_bad_results_file_names_file_and_field(tmp_path, lb):
    run = write_run(tmp_path / "runs", CE[0], loss="ce")
    data = json.loads((run / "results.json").read_text())
    data["stages"][1]["score"] = None
    (run / "results.json").write_text(json.dumps(data))
    with pytest.raises(FortifaiError, match=r"results.json: field stages\[1\].score: None is not of type 'number'"):
        publish([run])
    with pytest.raises(FortifaiError, match="no results.json"):
        publish([tmp_path])
    data["stages"][1]["score"] = 0.5
    data.update(complete=False, stopped={"stage": 2, "error": "killed"})
    (run / "results.json").write_text(json.dumps(data))
    with pytest.raises(FortifaiError, match="not complete .*stopped at stage 2: killed.*--resume"):
        publish([run])
    assert not (lb / "collapse_facts.json").exists()


def test_toy_results_without_kr_total_or_items(tmp_path, lb):
    results = make_results([0.9, 0.8, 0.6], task="toy_gaussian", kind="toy")
    for s in results["stages"]:
        s["kr_total"] = None
        del s["kl"]
    del results["items"]
    results["score_name"] = "variance_ratio"
    run = tmp_path / "toy"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(results))
    publish([run])
    board = load_board(lb / "toy_gaussian.json")
    assert board["kind"] == "toy" and board["entries"][0]["stages"][0]["kr_total"] is None
    assert "AUC of variance_ratio" in render_text(board)


def test_show_escapes_terminal_and_markdown(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE[:1], loss="evil|\x1b[31m<b>*x*</b>"))
    board = load_board(lb / "collapse_facts.json")
    text = render_text(board)
    assert "\x1b" not in text and "evil|\\x1b[31m<b>*x*</b>" in text
    md = render_markdown(board)
    assert "evil\\|\\x1b\\[31m&lt;b&gt;\\*x\\*&lt;/b&gt;" in md.replace("\\\\x1b", "\\x1b") and "<b>" not in md
    page = render_html(board)
    assert "<b>" not in page and "&lt;b&gt;*x*&lt;/b&gt;" in page


def test_cli_publish_show_render(tmp_path, lb, capsys):
    runs = [str(p) for p in write_seeds(tmp_path / "runs", CE, loss="ce")]
    # the command re-scores every stage's saved model (fortifai_bench/verify.py): factory runs have none
    assert main(["publish", *runs, "--to", "leaderboards/collapse_facts.json"]) == 2
    assert "stage 0's saved model is missing" in capsys.readouterr().err
    assert not (tmp_path / "leaderboards" / "collapse_facts.json").exists()
    assert "added ce_tiny_s0-1-2_" in publish(runs, "leaderboards/collapse_facts.json").lines()[0]
    assert main(["leaderboard", "show", "leaderboards/collapse_facts.json"]) == 0
    assert "collapse_facts v1" in capsys.readouterr().out
    assert main(["leaderboard", "show", "leaderboards/collapse_facts.json", "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("### collapse\\_facts v1")
    assert main(["leaderboard", "render", "leaderboards/collapse_facts.json", "--html", "site/index.html"]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    # the page loads nothing: its only web addresses are links to the paper and the authors' code
    body = page.split("<body>")[1]
    assert re.findall(r'https?://[^"<\s]+', body) == ["https://arxiv.org/abs/2509.08972",
                                                       "https://github.com/pedramaghazadeh/ForTIFAI"]
    assert " src=" not in body and "<link" not in page
    assert main(["publish", *runs, "--to", "../out.json"]) == 2
    assert "fortifai-bench: error: leaderboard file ../out.json is outside" in capsys.readouterr().err
    assert main(["leaderboard", "show", "missing.json"]) == 2
    assert "cannot read missing.json" in capsys.readouterr().err


_PUBLISHER = """
import pathlib, sys, time
from fortifai_bench.leaderboard import publish
pathlib.Path(sys.argv[2]).touch()          # imported and ready
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.002)                      # every publisher starts at the same moment
publish(sys.argv[3:], "leaderboards/collapse_facts.json")
"""


@pytest.mark.slow
def test_concurrent_publishers_lose_no_entry(tmp_path, lb):
    """Several real processes publish to one board at once; the lock serializes their read-modify-write."""
    import subprocess
    import sys
    import time

    losses = [f"tce:0.{k}" for k in range(1, 7)]
    runs = {loss: write_seeds(tmp_path / loss.replace(":", "_"), CE, loss=loss) for loss in losses}
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(tmp_path / "go"), str(tmp_path / f"ready{i}"),
                               *map(str, runs[loss])], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
             for i, loss in enumerate(losses)]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(len(losses))) and time.time() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    board = load_board(lb / "collapse_facts.json")
    assert sorted(e["loss"]["spec"] for e in board["entries"]) == losses
    assert sorted(p.name for p in lb.iterdir()) == ["collapse_facts.json"]  # no lock or temporary file left here


def test_bounded_scores_keep_their_intervals_in_range(tmp_path, lb):
    # final scores 1, 1, 1, 1, 0.975: the t-interval reaches past 1; the board cuts it at 1
    curves = [[1.0, 1.0, 1.0, 1.0]] * 4 + [[1.0, 1.0, 1.0, 0.975]]
    publish(write_seeds(tmp_path / "c", curves, loss="ce", control=True))
    [entry] = load_board(lb / "collapse_facts.json")["entries"]
    assert entry["final_score"]["ci"][1] == 1.0 and entry["final_score"]["ci"][0] < entry["final_score"]["mean"]
    assert entry["stages"][3]["score"]["ci"][1] == 1.0 and entry["auc"]["ci"][1] <= 1.0
    assert entry["stages"][3]["kl"]["ci"][0] >= 0.0
    board = load_board(lb / "collapse_facts.json")
    assert "0.995 [0.981, 1.000]" in render_text(board)  # the page shows the interval under the mean
    assert '<div class="line">0.995</div><div class="line sub">[0.981, 1.000]</div>' in render_html(board)
    # a board published before intervals were cut (its stored ci is the uncut t-interval) still loads
    path = lb / "collapse_facts.json"
    board = json.loads(path.read_text())
    from fortifai_bench.metrics import mean_ci

    board["entries"][0]["final_score"]["ci"][1] = mean_ci([c[-1] for c in curves])["ci"][1]
    assert board["entries"][0]["final_score"]["ci"][1] > 1
    path.write_text(json.dumps(board))
    load_board(path)
    board["entries"][0]["final_score"]["ci"][1] = 1.2
    path.write_text(json.dumps(board))
    with pytest.raises(FortifaiError, match="field final_score: ci"):
        load_board(path)


def _two_regimes(tmp_path):
    """collapse_facts: tce:0.9 above CE, focal:2 between; collapse_facts_greedy: CE on top, both below it."""
    greedy = "collapse_facts_greedy"
    publish(write_seeds(tmp_path / "t", BEST, loss="tce:0.9"))
    publish(write_seeds(tmp_path / "f", MIDDLE, loss="focal:2"))
    publish(write_seeds(tmp_path / "ce", LOW, loss="ce"))
    publish(write_seeds(tmp_path / "k", [[1.0, 1.0, 1.0, 1.0]] * 5, loss="ce", control=True))
    publish(write_seeds(tmp_path / "gt", MIDDLE, loss="tce:0.9", task=greedy))
    publish(write_seeds(tmp_path / "gf", LOW, loss="focal:2", task=greedy))
    publish(write_seeds(tmp_path / "gce", BEST, loss="ce", task=greedy))
    return ["leaderboards/collapse_facts.json", f"leaderboards/{greedy}.json"]


def test_suite_puts_each_regimes_verdicts_side_by_side(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking
    from fortifai_bench.leaderboard.suite import build_suite, render_suite_markdown, render_suite_text, table

    files = _two_regimes(tmp_path)
    suite = build_suite([(f, load_board(f)) for f in files])
    assert suite.regimes == ["collapse_facts v1", "collapse_facts_greedy v1"]
    rows = table(suite)
    assert rows[0] == ["loss", "collapse_facts v1", "collapse_facts_greedy v1", "vs CE over regimes"]
    by_loss = {r[0]: r[1:] for r in rows[1:]}
    # one better and one worse each: then by name
    assert [r[0] for r in rows[1:]] == ["ce", "focal:2 (gamma=2)", "tce:0.9 (gamma=0.9)", "ce (clean control)",
                                        "losses vs CE"]
    assert by_loss["ce"] == ["1.27 [1.09, 1.45]; baseline", "2.45 [2.05, 2.85], 1/5 never failed; baseline", "-"]
    # each verdict is the one its own board gives (Holm over that board's three comparisons)
    tce = by_loss["tce:0.9 (gamma=0.9)"]
    assert tce[0].startswith("2.45 [2.05, 2.85], 1/5 never failed; 1.93x [")
    assert tce[0].endswith("] better (p = 0.0079 raw, 0.016 after Holm over 2 claims)")
    assert tce[1].startswith("1.87 [1.34, 2.41]; 0.76x [") and tce[1].endswith("] worse (p = 0.04 raw, 0.04 after Holm over 2 claims)")
    greedy = {r.entry["loss"]["spec"]: r for r in ranking(load_board(files[1])["entries"])}
    assert greedy["tce:0.9"].vs_ce["p_holm"] == pytest.approx(10 / 252)
    focal = by_loss["focal:2 (gamma=2)"]
    assert focal[0].endswith("better (p = 0.04 raw, 0.04 after Holm over 2 claims)")
    assert focal[1].endswith("worse (p = 0.0079 raw, 0.016 after Holm over 2 claims)")
    assert focal[2] == "1 better, 1 worse, 0 indistinguishable"
    assert tce[2] == "1 better, 1 worse, 0 indistinguishable"
    assert by_loss["ce (clean control)"] == ["3.00, 5/5 never failed; control", "-", "-"]
    assert by_loss["losses vs CE"] == ["2 better, 0 worse, 0 indistinguishable", "0 better, 2 worse, 0 indistinguishable", ""]
    assert "better (p = 0.0079 raw, 0.016 after Holm over 2 claims)" in render_suite_text(suite)
    assert "| focal:2 (gamma=2) | 1.87 \\[1.34, 2.41\\]; 1.47x \\[" in render_suite_markdown(suite)


def test_a_suite_shows_a_retention_board_by_its_auc(tmp_path, lb):
    """A regime whose board compares retention (every CE seed censored) shows each loss by its AUC over the
    stages, not by a time to failure every seed shares; a time board beside it keeps its times."""
    from fortifai_bench.leaderboard.suite import build_suite, render_suite_html, table

    never = [[0.84, 0.82, 0.80, 0.79], [0.84, 0.81, 0.80, 0.80], [0.84, 0.83, 0.81, 0.78]]
    greedy = "collapse_facts_greedy"
    publish(write_seeds(tmp_path / "ce", never, loss="ce", task=greedy), claims="retention")
    publish(write_seeds(tmp_path / "tce", [[c[0]] + [x + 0.08 for x in c[1:]] for c in never], loss="tce:0.9",
                        task=greedy))
    publish(write_seeds(tmp_path / "time", LOW, loss="ce"))
    files = ["leaderboards/collapse_facts.json", f"leaderboards/{greedy}.json"]
    suite = build_suite([(f, load_board(f)) for f in files])
    by_loss = {r[0]: r[1:] for r in table(suite)[1:]}
    assert by_loss["ce"][0].startswith("1.27 [1.09, 1.45]; baseline")  # the time board: times
    ce, tce = by_loss["ce"][1], by_loss["tce:0.9 (gamma=0.9)"][1]
    assert ce.startswith("AUC ") and ce.endswith(", 3/3 never failed; baseline")
    entries = {e["loss"]["spec"]: e for e in load_board(files[1])["entries"]}
    assert ce.startswith(f"AUC {entries['ce']['auc']['mean']:.3f} [{entries['ce']['auc']['ci'][0]:.3f}, ")
    assert tce.startswith(f"AUC {entries['tce:0.9']['auc']['mean']:.3f} [")
    assert "; AUC +0.068 [" in tce  # then its claim against CE, as its board gives it
    assert ce.split(";")[0] in render_suite_html(suite)


def test_suite_cli(tmp_path, lb, capsys):
    files = _two_regimes(tmp_path)
    assert main(["leaderboard", "suite", *files]) == 0
    assert "losses vs CE" in capsys.readouterr().out
    assert main(["leaderboard", "suite", *files, "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("### Suite: collapse\\_facts v1, collapse\\_facts\\_greedy v1")
    assert main(["leaderboard", "suite", *files, "--html", "site/suite.html"]) == 0
    page = (tmp_path / "site" / "suite.html").read_text()
    assert page.count("<tr>") == 6 and "verdict-better" in page and "<script" not in page  # head, 4 losses, totals
    assert main(["leaderboard", "suite", files[0], files[0]]) == 2
    assert "regime collapse_facts is already given by" in capsys.readouterr().err
    assert main(["leaderboard", "suite", files[0], "--html", files[0]]) == 2
    assert "is one of the boards" in capsys.readouterr().err


def test_runs_record_their_cpu_and_base_and_the_board_keeps_them(tmp_path, lb):
    """A float kernel's rounding follows the instructions it picks: every run says which CPU it ran on (the
    OS's description and torch's capability, which ATEN_CPU_CAPABILITY lowers), and its board entry keeps it
    per run, beside the sha256 of the base the seed started from."""
    import subprocess
    import sys

    import torch

    from fortifai_bench.results import cpu

    here = cpu()
    assert here["torch_capability"] == torch.backends.cpu.get_cpu_capability() and here["machine"]
    if "avx2" in here["isa"]:  # an x86-64 CPU with AVX2: the capability can be pinned down to it
        code = "import torch; from fortifai_bench.results import cpu; print(cpu()['torch_capability'])"
        pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"})
        assert pinned.stdout.strip() == "AVX2"
    runs = write_seeds(tmp_path / "runs", CE, loss="ce")
    for run in runs:
        data = json.loads((run / "results.json").read_text())
        data["provenance"]["cpu"] = here
        data["base"] = {"model": "tiny", "sha256": "ab" * 32}
        (run / "results.json").write_text(json.dumps(data))
    publish(runs)
    [entry] = load_board(lb / "collapse_facts.json")["entries"]  # the schema takes it
    assert [r["cpu"] for r in entry["runs"]] == [here] * 3
    assert [r["base_sha256"] for r in entry["runs"]] == ["ab" * 32] * 3
    assert f"CPU {here['model']} ({here['torch_capability']})" in render_html(load_board(lb / "collapse_facts.json"))


def test_a_board_holds_one_cpu_kind(tmp_path, lb, capsys):
    """Seeds from two CPU kinds (another processor, or torch dispatching to another kernel set) would mix a
    factor the board's test does not model: refused in one line naming both kinds, the board untouched;
    accepted with --mixed-cpu. Runs that predate the record are not compared."""
    from fortifai_bench.results import cpu

    here = cpu()
    other = {**here, "torch_capability": "AVX2" if here.get("torch_capability") != "AVX2" else "DEFAULT"}
    ce = write_seeds(tmp_path / "ce", CE, loss="ce")
    tce = write_seeds(tmp_path / "tce", TCE, loss="tce:0.9")
    for run, kind in [(r, here) for r in ce] + [(r, other) for r in tce]:
        data = json.loads((run / "results.json").read_text())
        data["provenance"]["cpu"] = kind
        (run / "results.json").write_text(json.dumps(data))
    legacy = write_seeds(tmp_path / "focal", CE, loss="focal:2")  # no cpu recorded
    publish(ce + legacy)
    before = (lb / "collapse_facts.json").read_bytes()
    assert main(["publish", *map(str, tce)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "would come from 2 CPU kinds" in err and "--mixed-cpu" in err
    assert f"({here['torch_capability']})" in err and f"({other['torch_capability']})" in err
    assert (lb / "collapse_facts.json").read_bytes() == before
    report = publish(tce, mixed_cpu=True)
    assert report.added and len(load_board(lb / "collapse_facts.json")["entries"]) == 3


def test_two_amd_epycs_held_to_avx2_kernels_are_one_kind():
    """results.cpu_kind: an AMD family 25 model 17 (AVX-512) with torch, MKL and oneDNN held to AVX2 gave the
    light board's model 1 numbers bit for bit, and so did a family 26 model 2 (BENCHMARKS.md, "Two AMD EPYCs, one
    kind", "A Zen 5 joins the kind"): one kind. Not so natively, nor with one library left at AVX-512, nor for
    another vendor held the same way. cpu() records the variables that hold them, from the environment torch
    starts in."""
    import subprocess
    import sys

    from fortifai_bench.results import cpu_kind

    board = load_board(Path(__file__).resolve().parent.parent / "leaderboards" / "collapse_wikitext_smol.json")
    milan = board["entries"][0]["runs"][0]["cpu"]
    assert milan["id"] == "vendor AuthenticAMD family 25 model 1 stepping 1" and milan["torch_capability"] == "AVX2"
    zen4 = {**milan, "id": "vendor AuthenticAMD family 25 model 17 stepping 1", "torch_capability": "AVX512",
            "isa": sorted(milan["isa"] + ["avx512f", "avx512bw", "avx512_bf16"])}
    caps = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    held = {**zen4, "torch_capability": "AVX2", "kernel_caps": caps}
    assert cpu_kind(held) == cpu_kind(milan) != cpu_kind(zen4)
    assert cpu_kind({**held, "kernel_caps": {"ATEN_CPU_CAPABILITY": "avx2"}}) != cpu_kind(milan)  # MKL at AVX-512
    xeon = {**held, "id": "vendor GenuineIntel family 6 model 167 stepping 1"}
    assert cpu_kind(xeon) != cpu_kind(milan)
    # a Zen 5 held the same way gave the board's numbers too ("A Zen 5 joins the kind"); a family not measured is not
    zen5 = {**held, "id": "vendor AuthenticAMD family 26 model 2 stepping 1"}
    assert cpu_kind(zen5) == cpu_kind(milan) != cpu_kind({**held, "id": "vendor AuthenticAMD family 23 model 49"})
    code = "import json, torch; from fortifai_bench.results import cpu; print(json.dumps(cpu()))"
    here = json.loads(subprocess.run([sys.executable, "-c", code], env={**os.environ, **caps}, check=True,
                                     capture_output=True, text=True).stdout)
    assert here["kernel_caps"] == caps and here["torch_capability"] == "AVX2"


def test_a_board_of_bases_sampled_per_seed(tmp_path, lb, monkeypatch, capsys):
    """model.pretrain.seed: run (issue 26 item 3), with real micro runs: every seed pretrains its own base, so an
    entry's seeds record different bases (on its runs items; the page shows them) and the runs of one seed share
    theirs across entries. A run whose base is not its seed's is refused in one line, either way round; the same
    runs under a fixed base (an integer seed) could not share an entry at all."""
    import shutil

    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.run import run_collapse
    from fortifai_bench.results import entry_conditions, load_results
    from test_collapse import MICRO

    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    task = load_task("collapse_facts", MICRO + ["stages=1", "model.pretrain.seed=run"])
    runs = {(loss, s): Path(run_collapse(task, loss, seed=s, out=tmp_path / "runs", progress=False)["run_dir"])
            for loss in ("ce", "tce:0.9") for s in (0, 1)}
    publish(list(runs.values()))
    board_file = lb / "collapse_facts.json"
    board = load_board(board_file)
    bases = [[r["base_sha256"] for r in e["runs"]] for e in board["entries"]]
    assert len(bases) == 2 and bases[0] == bases[1] and bases[0][0] != bases[0][1]  # a base per seed, shared
    assert all("base_sha256" not in e for e in board["entries"])  # no one base to name
    page = render_html(board)
    assert "one per seed (2 bases, under each seed)" in page and bases[0][1][:16] in page

    def moved(loss, seed, base, name):  # the run as another entry (other loss arguments) with another base
        run = Path(shutil.copytree(runs[(loss, seed)], tmp_path / name / runs[(loss, seed)].name))
        data = json.loads((run / "results.json").read_text())
        data["base"]["sha256"], data["loss"]["args"] = base, {"note": 1}
        (run / "results.json").write_text(json.dumps(data))
        return run

    before = board_file.read_bytes()
    assert main(["publish", str(moved("tce:0.9", 1, "ab" * 32, "foreign")), "--to", str(board_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search("differs from entry .* seed 1's", err)
    assert "each seed's runs from that seed's base" in err and board_file.read_bytes() == before
    ce = [load_results(runs[("ce", s)]) for s in (0, 1)]
    ce[1]["base"]["sha256"] = bases[0][0]  # seed 1 on seed 0's base
    with pytest.raises(FortifaiError, match="is also .* of seed 0, but the task samples a base per seed"):
        entry_conditions(ce)
    fixed = [load_results(runs[("ce", s)]) for s in (0, 1)]
    for r in fixed:
        r["config"]["model"]["pretrain"]["seed"] = 0
    with pytest.raises(FortifaiError, match="cannot merge runs made from different base models"):
        entry_conditions(fixed)


def test_a_retention_board(tmp_path, lb, capsys):
    """Where CE never falls below the threshold (every seed censored), times cannot separate losses: a board
    created with --claims retention tests the AUC over stages instead (difference to CE's, bootstrap interval,
    the same exact test and Holm), ranks by it and says so on every rendering. What a board compares is fixed
    when it is created: asking another of an existing board is refused in one line."""
    never = [[0.84, 0.82, 0.80, 0.79], [0.84, 0.81, 0.80, 0.80], [0.84, 0.83, 0.81, 0.78], [0.84, 0.82, 0.79, 0.80],
             [0.84, 0.80, 0.80, 0.79]]
    kept = [[c[0]] + [x + 0.08 for x in c[1:]] for c in never]
    ce = write_seeds(tmp_path / "ce", never, loss="ce", n_items=100)
    tce = write_seeds(tmp_path / "tce", kept, loss="tce:0.9", n_items=100)
    publish(ce, claims="retention")  # (the command line's --claims; its refusal is below)
    publish(tce)  # an existing board keeps what it compares
    board = load_board(lb / "collapse_facts.json")
    assert board["claims"] == "retention"
    rows = ranking(board["entries"], board["claims"])
    assert [r.entry["loss"]["spec"] for r in rows] == ["tce:0.9", "ce"]
    claim = rows[0].vs_ce
    # 5 vs 5 seeds fully separated: p = 2/252, the board's only claim; the effect is the AUC difference
    assert claim["p_value"] == pytest.approx(2 / 252) and claim["verdict"] == "better"
    assert claim["diff"] == pytest.approx(0.08 * 2.5 / 3, abs=1e-9)  # the first interval gains half of 0.08
    assert claim_text(claim).startswith("AUC +0.067 [")
    # by time to failure the same runs say nothing: both never fail
    assert ranking(board["entries"])[0].vs_ce["verdict"] == "indistinguishable"
    text = render_text(board)
    assert "ranked by AUC of" in text and "claims compare retention" in text and "AUC +0.067" in text
    page = render_html(board)
    assert "claims compare retention" in page and "vs CE: AUC difference [95% CI], verdict" in page
    assert "ratio of restricted means" not in page and "claims compare retention" in render_markdown(board)
    before = (lb / "collapse_facts.json").read_bytes()
    assert main(["publish", *map(str, tce), "--claims", "time_to_failure"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "compare retention, fixed when it was created" in err
    assert (lb / "collapse_facts.json").read_bytes() == before
    # with a clean control on the board, each claim says what share of CE's gap to it the loss closes
    # (metrics.gap_recovered): tce:0.9 gains 0.08 a stage where the control gains 0.16, so half
    assert "closes" not in claim_text(claim)
    publish(write_seeds(tmp_path / "control", [[c[0]] + [x + 0.16 for x in c[1:]] for c in never], loss="ce",
                        n_items=100, control=True))
    board = load_board(lb / "collapse_facts.json")
    [tce_row, ce_row, control_row] = ranking(board["entries"], board["claims"])
    assert control_row.label == "control" and tce_row.vs_ce["gap"]["share"] == pytest.approx(0.5)
    text = claim_text(tce_row.vs_ce)
    assert text.startswith("AUC +0.067 [") and re.search(r"; closes \+50% \[\+\d+%, \+\d+%\] of CE's gap to the clean "
                                                       r"control$", text)
    assert "closes +50% [" in render_text(board) and re.search(r"closes \+50% \[[^]]+\] of the gap", render_html(board))
    assert ranking(board["entries"])[0].vs_ce.get("gap") is None  # a board of times: no share


def test_planned_claims_adjust_over_the_plan_from_the_first_entry(tmp_path, lb, capsys):
    """A design that tests three losses against CE at 0.05 / 3 (the light SmolLM2 board) must not read "better"
    at 0.05 while only its first arm is published: a board created with --planned-claims adjusts over the plan,
    each untested loss at p = 1, and says which are untested. Here 4 vs 4 fully separated seeds give p = 2/70:
    better as a board's only claim, indistinguishable (3 x 2/70 = 0.086) as one of three planned. The plan is
    fixed when the board is created; asking another is refused in one line, and ce cannot be a claim."""
    never = [[0.84, 0.82, 0.80, 0.79], [0.84, 0.81, 0.80, 0.80], [0.84, 0.83, 0.81, 0.78], [0.84, 0.82, 0.79, 0.80]]
    kept = [[c[0]] + [x + 0.08 for x in c[1:]] for c in never]
    ce = write_seeds(tmp_path / "ce", never, loss="ce", n_items=100)
    tce = write_seeds(tmp_path / "tce", kept, loss="tce:0.9", n_items=100)
    publish([*ce, *tce], to=lb / "alone.json", claims="retention")
    [alone, _] = ranking(load_board(lb / "alone.json")["entries"], claims="retention")
    assert alone.vs_ce["p_value"] == pytest.approx(2 / 70) and alone.vs_ce["verdict"] == "better"

    planned = ["tce:0.9", "tce:0.99", "focal:2"]
    publish([*ce, *tce], to=lb / "planned.json", claims="retention", planned=planned)
    board = load_board(lb / "planned.json")
    assert board["planned_claims"] == planned and board_test(board)["planned"] == tuple(planned)
    [row, _] = ranking(board["entries"], **board_test(board))
    assert row.vs_ce["p_value"] == pytest.approx(2 / 70) and row.vs_ce["family"] == 3
    assert row.vs_ce["p_holm"] == pytest.approx(3 * 2 / 70) and row.vs_ce["verdict"] == "indistinguishable"
    assert "after Holm over 3 claims" in claim_text(row.vs_ce)
    text = render_text(board)
    assert "planned when the board was created: tce:0.9, tce:0.99, focal:2" in text
    assert "not yet tested: tce:0.99, focal:2, each counted at p = 1" in text
    assert "after Holm over 3 claims (2 untested)" in render_html(board)

    # the second planned arm lands: one untested left, the family stays the plan's three
    focal = write_seeds(tmp_path / "focal", [[c[0]] + [x + 0.04 for x in c[1:]] for c in never], loss="focal:2",
                        n_items=100)
    publish(focal, to=lb / "planned.json")  # an existing board keeps its plan
    board = load_board(lb / "planned.json")
    rows = {r.entry["loss"]["spec"]: r for r in ranking(board["entries"], **board_test(board))}
    assert {rows[s].vs_ce["family"] for s in ("tce:0.9", "focal:2")} == {3}
    assert "not yet tested: tce:0.99," in render_text(board)

    before = (lb / "planned.json").read_bytes()
    assert main(["publish", *map(str, focal), "--to", str(lb / "planned.json"), "--planned-claims", "tce:0.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "planned claims are tce:0.9, tce:0.99, focal:2, fixed when it was" in err
    assert (lb / "planned.json").read_bytes() == before
    assert main(["publish", *map(str, ce), "--to", str(lb / "new.json"), "--planned-claims", "ce,tce:0.9"]) == 2
    assert "ce is what the claims compare against" in capsys.readouterr().err
    with pytest.raises(FortifaiError, match="a loss named twice"):
        publish(ce, to=lb / "new.json", planned=["tce:0.9", "tce:0.9"])
    assert not (lb / "new.json").exists()


def test_a_board_paired_by_seed(tmp_path, lb, capsys):
    """Under greedy decoding a seed's base and data order largely decide when a run fails, for every loss
    (BENCHMARKS.md: r 0.71-0.96 on the greedy board). A board created with --paired tests each claim on the
    per-seed differences (exact sign-flip test, 2^n swaps) with a bootstrap over the seeds' pairs: here TCE
    fails 0.3 stages after CE on each of 6 seeds whose own times spread over 1.5 stages, so the paired claim
    reaches 2/64 and says better where the unpaired test of the same entries cannot. Its entries hold one
    seed set; a publish that asks for the other test on an existing board is refused in one line."""
    falls = [0.95, 0.92, 0.89, 0.86, 0.83, 0.80]
    ce_curves = [[1.0, a, a - 0.1, a - 0.2, a - 0.3] for a in falls]
    tce_curves = [[1.0] + [round(x + 0.03, 2) for x in c[1:]] for c in ce_curves]
    ce = write_seeds(tmp_path / "ce", ce_curves, loss="ce", n_items=100)
    tce = write_seeds(tmp_path / "tce", tce_curves, loss="tce:0.9", n_items=100)
    publish(ce, paired=True)  # (the command line's --paired)
    publish(tce)  # an existing board keeps its test
    board = load_board(lb / "collapse_facts.json")
    assert board["pairing"] == "seed"
    [row, _] = ranking(board["entries"], **board_test(board))
    claim = row.vs_ce
    assert claim["pairs"] == 6 and claim["p_value"] == pytest.approx(2 / 64) and claim["verdict"] == "better"
    ce_times = [3.0 - 0.3 * i for i in range(6)]
    assert claim["ratio"] == pytest.approx((np.mean(ce_times) + 0.3) / np.mean(ce_times))
    lo, hi = claim["ratio_ci"]
    assert 1 < lo <= claim["ratio"] <= hi  # every pair differs by the same 0.3: the paired interval stays above 1
    assert ranking(board["entries"])[0].vs_ce["verdict"] == "indistinguishable"  # unpaired: the spread hides it
    text = render_text(board)
    assert "exact sign-flip test on the per-seed differences of the restricted time to failure" in text
    assert "sign-flip" in render_html(board)
    # one seed set: a seventh seed of TCE alone would leave CE's claim unpaired
    extra = write_run(tmp_path / "extra", [1.0, 0.9, 0.8, 0.7, 0.6], loss="tce:0.9", seed=6, n_items=100)
    with pytest.raises(FortifaiError, match="one seed set in every entry"):
        publish([*tce, extra], replace=True)
    before = (lb / "collapse_facts.json").read_bytes()
    assert main(["publish", *map(str, tce), "--no-paired"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "tests are paired, fixed when it was created" in err
    assert (lb / "collapse_facts.json").read_bytes() == before
