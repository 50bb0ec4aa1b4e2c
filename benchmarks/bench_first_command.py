"""The README's first command on a fresh machine (issues 19 and 20): its wall time, and whether its six runs
give exactly the seed-0 entries of the shipped boards.

    python benchmarks/bench_first_command.py [--beside] [--out DIR]
    python benchmarks/bench_first_command.py --check DIR     # only compare the runs already under DIR/runs

"Fresh" means an empty cache (FORTIFAI_CACHE points at a new empty folder, so M_0 comes from the package's
shipped base, data/bases/, and every KR set is built on first use) and an empty working folder; the install
itself is not timed. `--beside` starts `python3 -c "while True: pass"` just before and stops it after, to show
that the numbers do not depend on the load (the runs use one thread each). The check reads every run's
results.json and compares, stage by stage, its KR-split-0 with the board entry's seed-0 value (the same loss
spec and control flag) as floats, `==`, not rounded, and its time to failure likewise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_default import run_default  # the timing (and the busy loop beside it) of issue 14's benchmark

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {"collapse_facts": ROOT / "leaderboards/collapse_facts.json",
          "collapse_facts_greedy": ROOT / "leaderboards/collapse_facts_greedy.json"}


def first_command(where: Path, beside: bool) -> tuple[float, float]:
    """Wall seconds and CPU seconds (all its processes) of `fortifai-bench` (no arguments) in `where`, with an
    empty cache of its own."""
    env = dict(os.environ, FORTIFAI_CACHE=tempfile.mkdtemp(prefix="fresh-cache-"))
    wall, _, cpu = run_default([], where, beside, argv=[], env=env)
    return wall, cpu


def seed0(entry: dict) -> tuple[list[float], float | None]:
    """The board entry's seed-0 KR-split-0 per stage and time to failure."""
    at = [r["seed"] for r in entry["runs"]].index(0)
    ttf = entry["time_to_failure"]["per_seed"][at]
    return [s["score"]["per_seed"][at] for s in entry["stages"]], ttf.get("time")


def check(runs: Path) -> bool:
    """Print one line per run: equal to the board's seed 0 or not. True when all six are equal."""
    ok = True
    for results in sorted(runs.glob("*/results.json")):
        r = json.loads(results.read_text())
        board = json.loads(BOARDS[r["task"]["name"]].read_text())
        [entry] = [e for e in board["entries"]
                   if e["loss"]["spec"] == r["loss"]["spec"] and e["control"] == r["control"]]
        curve, ttf = seed0(entry)
        mine = [s["score"] for s in r["stages"]]
        same = mine == curve and r["time_to_failure"] == ttf
        ok &= same
        print(f"{'equal' if same else 'DIFFERENT':9s} {results.parent.name}: KR-split-0 "
              f"{' '.join(f'{x:.3f}' for x in mine)}, time to failure {r['time_to_failure']}"
              + ("" if same else f" (board: {' '.join(f'{x:.3f}' for x in curve)}, {ttf})"))
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beside", action="store_true", help="beside one busy CPU process")
    ap.add_argument("--out", default="/tmp/bench-first-command")
    ap.add_argument("--check", metavar="DIR", help="only compare the runs under DIR/runs with the boards")
    args = ap.parse_args()
    if args.check:
        return 0 if check(Path(args.check) / "runs") else 1
    where = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    load = os.getloadavg()[0]
    wall, cpu = first_command(where, args.beside)
    print(f"{time.strftime('%Y-%m-%d %H:%M')} fortifai-bench ({'beside one busy process' if args.beside else 'alone'}"
          f", load average before {load:.2f}): {wall:.0f} s wall, {cpu:.0f} s CPU (user + system, all its processes)")
    return 0 if check(where / "runs") else 1


if __name__ == "__main__":
    sys.exit(main())
