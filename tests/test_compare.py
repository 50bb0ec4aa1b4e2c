"""compare: time to failure over seeds (exact permutation test), McNemar per seed pair on final-stage KR items,
the question bootstrap for single runs (resampling facts), board entries as sides, the comparison plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from fortifai_bench.cli import main
from fortifai_bench.compare import compare_runs, format_report
from fortifai_bench.errors import FortifaiError
from fortifai_bench.metrics import cluster_totals, failure, resample_weights
from results_factory import make_results, write_run, write_seeds


def test_question_bootstrap_times_are_metrics_failure_and_never_learned_is_left_out(tmp_path):
    """Each resample's time to failure is `metrics.failure`'s: a resample whose M_0 falls below the threshold
    never learned, has no time (not a time of 0) and is left out; a side that never learned has no interval."""
    a = write_run(tmp_path / "a", [0.8, 0.78, 0.74, 0.7, 0.6], loss="tce:0.9", n_items=40)  # M_0 near 0.75
    b = write_run(tmp_path / "b", [0.95, 0.7, 0.6, 0.5, 0.4], loss="ce", n_items=40)
    res = compare_runs([str(a)], [str(b)], n_boot=1000)
    q = res["time_to_failure"]["questions"]
    # the same draws, one resample at a time: each question its own cluster, bootstrap seed 0
    labels = [str(i) for i in range(40)]
    weights = resample_weights(40, 1000, np.random.default_rng(0))
    curves = []
    for run in (a, b):
        bits = np.array([[c == "1" for c in row]
                         for row in json.loads((run / "results.json").read_text())["items"]["split0_correct"]], float)
        right, size = cluster_totals(bits, labels)
        curves.append((weights @ right.T) / (weights @ size)[:, None])
    diffs = []
    for ca, cb in zip(*curves):
        fa, fb = failure(list(ca), 0.75), failure(list(cb), 0.75)
        if fa.status != "never_learned" and fb.status != "never_learned":
            diffs.append(fa.restricted() - fb.restricted())
    assert 0 < 1000 - len(diffs) < 1000 and f"{1000 - len(diffs)} of 1000 resamples left out" in q["note"]
    assert q["ci"] == pytest.approx([np.quantile(diffs, 0.025), np.quantile(diffs, 0.975)], abs=1e-12)
    never = write_run(tmp_path / "n", [0.7, 0.6, 0.5, 0.5, 0.5], loss="focal:2", n_items=40)
    res = compare_runs([str(never)], [str(b)], n_boot=1000)
    assert res["time_to_failure"]["questions"] is None
    assert "not possible, a side has no seed that learned" in format_report(res)


def _bits(row: list[int]) -> str:
    return "".join(map(str, row))


def test_mcnemar_on_final_stage_items(tmp_path):
    # 40 questions; final stage: A right & B wrong on 12, A wrong & B right on 3, the rest agree
    final_a = [1] * 12 + [0] * 3 + [1] * 20 + [0] * 5
    final_b = [0] * 12 + [1] * 3 + [1] * 20 + [0] * 5
    early = _bits([1] * 40)
    a = write_run(tmp_path / "a", [], loss="tce:0.9", bits=[early, early, _bits(final_a)])
    b = write_run(tmp_path / "b", [], loss="ce", bits=[early, early, _bits(final_b)])
    res = compare_runs([str(a)], [str(b)])
    [pair] = res["mcnemar"]["pairs"]
    assert (pair["only_a"], pair["only_b"], pair["n"]) == (12, 3, 40)
    assert pair["p_value"] == pytest.approx(binomtest(12, 15, 0.5).pvalue)
    assert res["mcnemar"]["stage"] == 2
    text = format_report(res)
    assert "only A right 12, only B right 3, p = 0.03516" in text


def test_refuses_runs_that_scored_other_questions(tmp_path):
    a = write_run(tmp_path / "a", [1.0, 0.8, 0.6], loss="ce")
    b = write_run(tmp_path / "b", [1.0, 0.8, 0.6], loss="tce:0.9", ids="other-questions")
    with pytest.raises(FortifaiError, match="scored other KR questions.*item id hash"):
        compare_runs([str(a)], [str(b)])
    c = write_run(tmp_path / "c", [1.0, 0.8, 0.6, 0.5], loss="focal:2")
    with pytest.raises(FortifaiError, match="number of stages 4"):
        compare_runs([str(a)], [str(c)])


def test_seed_test_separates_clearly_different_losses(tmp_path):
    ce = write_seeds(tmp_path / "ce", [[1.0, 0.8, 0.6, 0.5], [1.0, 0.7, 0.6, 0.5], [1.0, 0.85, 0.65, 0.5]], loss="ce")
    tce = write_seeds(tmp_path / "t", [[1.0, 0.95, 0.9, 0.7], [1.0, 0.9, 0.85, 0.8], [1.0, 0.95, 0.8, 0.7]],
                      loss="tce:0.9")
    res = compare_runs([str(p) for p in tce], [str(p) for p in ce], plot=str(tmp_path / "cmp"))
    t = res["time_to_failure"]
    assert t["a"]["never_failed"] == 1 and t["a"]["mean"] is None and "1 of 3 never failed" in t["a"]["text"]
    assert t["a"]["restricted_mean"] == pytest.approx((2.75 + 3 + 2.5) / 3)  # censored at the last stage, 3
    v = t["seeds"]
    assert v["diff"] == pytest.approx(t["a"]["restricted_mean"] - t["b"]["restricted_mean"])
    # fully separated, but 3 vs 3 seeds: 20 splits, so the exact two-sided p is 2/20, and the report says
    # that 3 seeds a side can never reach 0.05
    assert v["p_value"] == pytest.approx(0.1) and v["splits"] == 20 and v["n_a"] == v["n_b"] == 3
    assert t["questions"] is None and v["ratio_ci"][0] <= v["ratio"] <= v["ratio_ci"][1]
    text = format_report(res)
    assert "p = 0.1 (exact permutation test" in text and "3 vs 3 seeds, 20 splits" in text
    assert "cannot reach p < 0.05: the smallest p they can give is 0.1" in text
    assert [p["seed_a"] for p in res["mcnemar"]["pairs"]] == [0, 1, 2] and "pooled" not in res["mcnemar"]
    assert (tmp_path / "cmp.png").stat().st_size > 0 and (tmp_path / "cmp.svg").is_file()
    assert not list(tmp_path.glob("cmp-mechanism*"))  # these runs record no confidence: no mechanism figure
    # the same runs on both sides: no difference, and the test says so
    same = compare_runs([str(p) for p in ce], [str(p) for p in ce])["time_to_failure"]["seeds"]
    assert same["diff"] == 0 and same["p_value"] == pytest.approx(1.0)


def test_question_bootstrap_for_single_runs(tmp_path):
    a = write_run(tmp_path / "a", [1.0, 0.9, 0.85, 0.8, 0.7], loss="tce:0.9", n_items=200)
    b = write_run(tmp_path / "b", [1.0, 0.8, 0.6, 0.55, 0.5], loss="ce", n_items=200)
    res = compare_runs([str(a)], [str(b)], n_boot=500, seed=1)
    t = res["time_to_failure"]
    q = t["questions"]
    assert q["n_boot"] == 500 and t["seeds"]["p_value"] is None  # one seed a side: no seed-level test
    diff = (3 + 0.1 / 0.1 * 0.5) - (1 + 0.05 / 0.2)
    assert t["seeds"]["diff"] == pytest.approx(diff)
    assert q["ci"][0] < diff < q["ci"][1] and q["ci"][0] > 0
    again = compare_runs([str(a)], [str(b)], n_boot=500, seed=1)
    assert again == res  # a fixed bootstrap seed reproduces the interval


def test_runs_without_items(tmp_path):
    runs = []
    for name, curve in (("a", [0.9, 0.8, 0.6]), ("b", [0.9, 0.7, 0.6])):
        r = make_results(curve, loss="ce" if name == "a" else "focal:2", kind="toy", task="toy_gaussian")
        del r["items"]
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
        runs.append(str(tmp_path / name))
    res = compare_runs([runs[0]], [runs[1]])
    assert res["mcnemar"] is None and res["time_to_failure"]["questions"] is None
    assert "McNemar: not available" in format_report(res) and "no seed-level test" in format_report(res)


def test_cli_forms_agree_and_bad_input_exits_2(tmp_path, capsys):
    ce = [str(p) for p in write_seeds(tmp_path / "ce", [[1.0, 0.8, 0.6], [1.0, 0.7, 0.6]], loss="ce")]
    tce = [str(p) for p in write_seeds(tmp_path / "t", [[1.0, 0.9, 0.8], [1.0, 0.9, 0.7]], loss="tce:0.9")]
    assert main(["compare", ",".join(tce), ",".join(ce), "--json", "--n-boot", "300"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["compare", "-a", tce[0], "-a", tce[1], "-b", ce[0], "-b", ce[1], "--json", "--n-boot", "300"]) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert first["a"].startswith("tce:0.9 (tiny), seeds 0,1")
    assert main(["compare", tce[0], ce[0]]) == 0
    assert "restricted mean A - B" in capsys.readouterr().out
    assert main(["compare", tce[0], ce[0], ce[1]]) == 2
    assert "expected RUN_A RUN_B" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), ce[0]]) == 2
    assert "no results.json" in capsys.readouterr().err


def _kr_file(path, n_facts: int) -> list[str]:
    """A facts-style KR file: each fact asked three times (q0, q0.1, q0.2), all in split 0; returns the ids."""
    rows = []
    for f in range(n_facts):
        for j in range(3):
            rows.append({"id": f"facts/p{f:04d}/q0" + (f".{j}" if j else ""), "split": 0, "paragraph": f,
                         "context": f"Fact {f} is", "true": "right.", "false": f"wrong {j}.",
                         "generator": "facts@2", "source": "facts:main"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [r["id"] for r in rows]


def _fact_bits(known_per_stage: list[int], n_facts: int) -> list[str]:
    """Stage bits where a fact's three questions are right or wrong together: the first k facts known."""
    return ["".join(("1" if f < k else "0") * 3 for f in range(n_facts)) for k in known_per_stage]


def test_question_bootstrap_resamples_facts(tmp_path):
    ids = _kr_file(tmp_path / "kr.jsonl", 20)
    runs = []
    for name, known in (("a", [20, 18, 16, 15, 14]), ("b", [20, 16, 13, 12, 11])):
        run = write_run(tmp_path / name, [], loss="ce" if name == "b" else "tce:0.9",
                        bits=_fact_bits(known, 20), ids="\n".join(ids))
        data = json.loads((run / "results.json").read_text())
        data["kr_source"] = str(tmp_path / "kr.jsonl")
        (run / "results.json").write_text(json.dumps(data))
        runs.append(str(run))
    res = compare_runs([runs[0]], [runs[1]], n_boot=1000)
    q = res["time_to_failure"]["questions"]
    assert q["clusters"] == "20 facts of split 0 (60 questions) resampled"
    assert "20 facts of split 0 (60 questions) resampled" in format_report(res)
    # the same bits with the KR file gone: 60 independent questions, a narrower (too narrow) interval
    (tmp_path / "kr.jsonl").unlink()
    alone = compare_runs([runs[0]], [runs[1]], n_boot=1000)["time_to_failure"]["questions"]
    assert alone["clusters"].startswith("60 questions resampled one by one (the run's KR file is not found here")
    assert alone["ci"][1] - alone["ci"][0] < q["ci"][1] - q["ci"][0]
    # a KR file whose split-0 questions are not the scored ones is not used either
    _kr_file(tmp_path / "kr.jsonl", 19)
    other = compare_runs([runs[0]], [runs[1]], n_boot=1000)["time_to_failure"]["questions"]
    assert "are not the ones the run scored" in other["clusters"] and other["ci"] == alone["ci"]


def test_a_board_entry_is_a_side(tmp_path, monkeypatch, capsys):
    from fortifai_bench.leaderboard import publish

    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboards").mkdir()
    ce = write_seeds(tmp_path / "ce", [[1.0, 0.8, 0.6, 0.5], [1.0, 0.7, 0.6, 0.5], [1.0, 0.85, 0.65, 0.5]], loss="ce")
    tce = write_seeds(tmp_path / "t", [[1.0, 0.95, 0.9, 0.7], [1.0, 0.9, 0.85, 0.8], [1.0, 0.95, 0.8, 0.7]],
                      loss="tce:0.9")
    publish(ce + tce)
    board = "leaderboards/collapse_facts.json"
    from_runs = compare_runs([str(p) for p in tce], [str(p) for p in ce])
    from_board = compare_runs([f"{board}#tce-0.9"], [f"{board}#ce_tiny"])
    assert from_board["time_to_failure"]["seeds"] == from_runs["time_to_failure"]["seeds"]
    assert from_board["time_to_failure"]["a"] == from_runs["time_to_failure"]["a"]
    assert from_board["mcnemar"] is None and "board entry leaderboards/collapse_facts.json#tce-0.9_tiny" in from_board["a"]
    mixed = compare_runs([f"{board}#tce-0.9"], [str(p) for p in ce])  # an entry against run folders
    assert mixed["time_to_failure"]["seeds"]["p_value"] == from_runs["time_to_failure"]["seeds"]["p_value"]
    assert main(["compare", f"{board}#tce", f"{board}#ce_"]) == 0
    assert "McNemar: not available (a side keeps no per-question results: a board entry" in capsys.readouterr().out
    assert main(["compare", f"{board}#focal", f"{board}#ce_"]) == 2
    assert "no entry is named or starts with 'focal' (entries: ce_tiny_s0-1-2_" in capsys.readouterr().err
    publish(write_seeds(tmp_path / "t99", [[1.0, 0.9, 0.9, 0.9]] * 2, loss="tce:0.99"))
    assert main(["compare", f"{board}#tce-0.9", f"{board}#ce_"]) == 2
    assert "several entries start with 'tce-0.9'" in capsys.readouterr().err


def test_retention_separates_losses_that_never_fail(tmp_path):
    """When neither side falls below the threshold (every seed censored, as CE on collapse_wikitext_smol), time
    to failure cannot tell them apart; the AUC test over seeds can, and pairs the seeds both sides ran."""
    low = [[0.9, 0.85, 0.84, 0.83], [0.9, 0.86, 0.82, 0.82], [0.88, 0.84, 0.83, 0.80], [0.9, 0.83, 0.84, 0.81]]
    high = [[c[0]] + [x + d for x in c[1:]] for c, d in zip(low, (0.05, 0.06, 0.07, 0.08))]
    ce = write_seeds(tmp_path / "ce", low, loss="ce", n_items=100)  # 100 questions: the scores are the curves
    tce = write_seeds(tmp_path / "t", high, loss="tce:0.9", n_items=100)
    res = compare_runs([str(p) for p in tce], [str(p) for p in ce])
    assert res["time_to_failure"]["seeds"]["p_value"] == pytest.approx(1.0)  # all censored at the horizon
    r = res["retention"]
    auc = lambda c: np.mean([(x + y) / 2 for x, y in zip(c[:-1], c[1:])])
    assert r["diff"] == pytest.approx(np.mean([auc(c) for c in high]) - np.mean([auc(c) for c in low]))
    # 4 vs 4 seeds, fully separated: 2 / C(8, 4) = 2/70; paired, 4 pairs of one sign: 2 / 2^4
    assert r["p_value"] == pytest.approx(2 / 70) and r["splits"] == 70
    assert r["paired"]["n"] == 4 and r["paired"]["p_value"] == pytest.approx(2 / 16)
    pairs = np.array([[auc(h), auc(c)] for h, c in zip(high, low)])
    assert r["paired"]["correlation"] == pytest.approx(np.corrcoef(pairs.T)[0, 1])
    text = format_report(res)
    assert "AUC A - B = +0.05" in text and "p = 0.029 (exact permutation test over seeds on the AUC" in text
    assert "paired by seed (4 pairs)" in text and "smallest p 4 pairs can give is 0.12" in text
    # different seeds on the two sides: nothing pairs
    other = [write_run(tmp_path / "o", c, seed=10 + i, loss="ce", n_items=100) for i, c in enumerate(low)]
    assert compare_runs([str(p) for p in tce], [str(p) for p in other])["retention"]["paired"] is None
