"""Leaderboard: merging seeds into entries, validation, publish (atomic, idempotent, refusals), show, render."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from fortifai_bench.cli import main
from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard import load_board, publish, rank_entries
from fortifai_bench.leaderboard_render import render_html, render_markdown, render_text
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
    assert "config differs" in msg and "mode: board \"accumulate\", runs \"replace\"" in msg
    assert "train.epochs: board 3, runs 5" in msg


def test_refuses_seeds_of_different_configs_in_one_entry(tmp_path, lb):
    runs = write_seeds(tmp_path / "a", CE[:2], loss="ce")
    odd = write_run(tmp_path / "b", CE[2], loss="ce", seed=2, model="gpt2")
    report = publish(runs + [odd])  # a different model is a different entry, not an error
    assert len(report.added) == 2
    dup = write_run(tmp_path / "c", CE[2], loss="ce", seed=1)
    with pytest.raises(FortifaiError, match="seed 1 given twice"):
        publish(runs + [dup])


def test_rerun_with_other_numbers_needs_replace(tmp_path, lb):
    publish(write_seeds(tmp_path / "a", CE, loss="ce"))
    rerun = write_seeds(tmp_path / "b", [c[:3] + [0.1] for c in CE], loss="ce")
    with pytest.raises(FortifaiError, match="already on the board with different results.*--replace"):
        publish(rerun)
    report = publish(rerun, replace=True)
    assert report.replaced and report.written
    [entry] = load_board(lb / "collapse_facts.json")["entries"]
    assert entry["final_score"]["mean"] == pytest.approx(0.1)


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
    # two identical seeds a side have no spread: the t-test separates every entry here
    assert text[1].startswith("#") and text[3].split()[:2] == ["1", "tce:0.99"] and text[6].split()[:2] == ["4", "ce"]
    assert "not within 3 stages (2 of 2 never failed)" in text[3] and "2.50" in text[5]
    md = render_markdown(board).splitlines()
    assert md[4].startswith("| \\# | loss |") and md[6].startswith("| 1 | tce:0.99 |")


def test_entries_the_seeds_cannot_tell_apart_share_a_rank(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "ce", CE, loss="ce"))  # 1.75, 1.5, 2.0
    publish(write_seeds(tmp_path / "t", [[1.0, 0.9, 0.8, 0.7], [1.0, 0.85, 0.75, 0.7], [1.0, 0.9, 0.7, 0.6]],
                        loss="tce:0.9"))  # 2.5, 2.0, 1.75: overlapping spread
    publish(write_seeds(tmp_path / "f", [[1.0, 0.7, 0.6, 0.5]] * 3, loss="focal:2"))  # 0.83 each: far below
    board = load_board(lb / "collapse_facts.json")
    labels = [(label, e["loss"]["spec"]) for label, e, _ in ranking(board["entries"])]
    assert labels == [("1", "tce:0.9"), ("=1", "ce"), ("3", "focal:2")]
    text = render_text(board)
    assert "=1 (p=" in text and "not significantly different" in text
    assert "=1 (p=" in render_markdown(board)


def test_the_clean_control_is_a_ceiling_row(tmp_path, lb):
    from fortifai_bench.leaderboard import ranking

    publish(write_seeds(tmp_path / "ce", CE, loss="ce"))
    control = write_seeds(tmp_path / "c", [[1.0, 1.0, 0.95, 0.95]] * 3, loss="ce", control=True)
    publish(control)
    board = load_board(lb / "collapse_facts.json")
    assert board["protocol"]["mode"] == "accumulate" and len(board["entries"]) == 2
    rows = ranking(board["entries"])
    assert [(label, e.get("control")) for label, e, _ in rows] == [("1", False), ("control", True)]
    assert rows[1][1]["name"].startswith("control-ce_")
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
    assert main(["publish", *runs, "--to", "leaderboards/collapse_facts.json"]) == 0
    assert "added ce_tiny_s0-1-2_" in capsys.readouterr().out
    assert main(["publish", *runs]) == 0
    assert "no change to leaderboards/collapse_facts.json" in capsys.readouterr().out
    assert main(["leaderboard", "show", "leaderboards/collapse_facts.json"]) == 0
    assert "collapse_facts v1" in capsys.readouterr().out
    assert main(["leaderboard", "show", "leaderboards/collapse_facts.json", "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("### collapse\\_facts v1")
    assert main(["leaderboard", "render", "leaderboards/collapse_facts.json", "--html", "site/index.html"]) == 0
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.split("<body>")[1]
    assert main(["publish", *runs, "--to", "../out.json"]) == 2
    assert "fortifai-bench: error: leaderboard file ../out.json is outside" in capsys.readouterr().err
    assert main(["leaderboard", "show", "missing.json"]) == 2
    assert "cannot read missing.json" in capsys.readouterr().err
