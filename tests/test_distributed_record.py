"""A 2-process torchrun run with the default dropout: recorded as such (results.json and the board entry) and
inside the spread of 1-process seeds (issue 20). Dropout masks are drawn per process, so it is not the
1-process run's twin (test_distributed.py checks that equality without dropout)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard import load_board, publish
from fortifai_bench.leaderboard.render import render_text
from fortifai_bench.results import entry_conditions
from test_collapse import MICRO
from test_distributed import _env

# MICRO with 8 epochs a stage: M_0 learns split 0 (KR-split-0 about 0.77 against the base's 0.52), so seeds
# spread (sd about 0.02 a stage) and "inside the spread" says something; each run takes a few seconds.
SMALL = MICRO + ["stages=2", "train.epochs=8", "model.pretrain.seed=0"]  # one base: the seed spread is the
# seeds' alone, and an entry refuses two bases


def test_two_processes_are_recorded_and_land_in_the_seed_spread(tmp_path):
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.run import run_collapse

    task = load_task("collapse_facts", SMALL)
    one = [run_collapse(task, "ce", seed=s, out=tmp_path / "one", progress=False) for s in (0, 1, 2, 3)]
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--quiet", "--loss", "ce", "--no-control",
           "--seeds", "0", "--nproc", "2", "--out", str(tmp_path / "two"), *(a for s in SMALL for a in ("--set", s))]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = list((tmp_path / "two").iterdir())
    two = json.loads((run / "results.json").read_text())
    assert [r["runtime"]["world_size"] for r in one] == [1, 1, 1, 1] and two["runtime"]["world_size"] == 2
    assert two["base"]["sha256"] == one[0]["base"]["sha256"]  # the same M_0, built once by rank 0
    # inside the 1-process spread: within 3 sd of the seeds' mean at every stage (at least one question)
    questions = len(two["items"]["split0_correct"][0])
    for i, stage in enumerate(two["stages"]):
        scores = [r["stages"][i]["score"] for r in one]
        band = 3 * statistics.stdev(scores) + 1 / questions
        assert abs(stage["score"] - statistics.mean(scores)) <= band, (i, stage["score"], scores)
    board = load_board(publish([run], root=tmp_path / "boards").board)
    assert board["entries"][0]["runtime"]["world_size"] == [2]
    assert "tiny (2 processes)" in render_text(board)
    # seeds of one entry may mix world sizes (shown as such), never bases
    assert entry_conditions([one[1], two])["runtime"]["world_size"] == [1, 2]
    with pytest.raises(FortifaiError, match="cannot merge runs made from different base models"):
        entry_conditions([two, {**one[1], "base": {"model": "tiny", "sha256": "0" * 64}}])
