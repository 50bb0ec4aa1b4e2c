"""Is this machine a board's CPU kind? Compare a run's numbers, stage by stage, with the board's for the same arm
and seed: equal in every digit, through a stage that trains on a rewrite, is what "one kind" means (README, "What
reproduces where"; `results.cpu_kind`; BENCHMARKS.md, "Two AMD EPYCs, one kind").

A board keeps one CPU kind, and each session may get another machine. So before a new machine adds seeds to a
board, run the board's first arm and seed for two stages there (the run may be stopped after them: a killed run's
results.json holds the stages it finished) and compare:

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 \\
      python benchmarks/collapse_regimes.py --regimes wikitext_smol --losses ce --seeds 0 --out /tmp/probe --threads 1
    python benchmarks/kind_probe.py /tmp/probe/wikitext_smol/ce-s0/RUN leaderboards/collapse_wikitext_smol.json

Prints every number the board keeps per stage (KR, KL, the Fig. 1 confidences, the mask as trained) beside the
run's, as a markdown table, and exits 0 when the run finished at least `--stages` stages and every number is
equal, 1 otherwise. The numbers are the board's own (`leaderboard.board.seed_entry`), so nothing is compared that
the board does not hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard.board import arm_entry, assemble_entry, load_board, seed_entry
from fortifai_bench.results import cpu_kind, load_results


def stage_numbers(stage: dict) -> dict[str, float]:
    """One stage of a one-seed entry as flat `name: value` pairs (`confidence.own_generated`, ...)."""
    out = {}
    for key, stat in stage.items():
        if key == "stage" or not isinstance(stat, dict):
            continue
        stats = {key: stat} if "per_seed" in stat else {f"{key}.{k}": v for k, v in stat.items() if isinstance(v, dict)}
        for name, s in stats.items():
            out[name] = s["per_seed"][0]
    return out


def compare(run_dir: Path, board_path: Path) -> tuple[list[tuple], str]:
    """Rows (stage, number, board's value, run's value) for every stage the run finished, and a line naming the run's
    arm, seed and CPU kind beside the board's."""
    run = load_results(run_dir, complete=False)
    board = load_board(board_path)
    entry = arm_entry(board, run["loss"]["spec"], bool(run.get("control")))
    if entry is None or run["seed"] not in entry["seeds"]:
        raise FortifaiError(f"{board_path}: no seed {run['seed']} of the run's arm ({run['loss']['spec']}"
                            f"{', control' if run.get('control') else ''}) to compare {run_dir} with")
    i = entry["seeds"].index(run["seed"])
    board_seed = assemble_entry([(entry, i)])  # the board's seed alone: a one-seed entry, as seed_entry makes the run
    mine = seed_entry(run)["stages"]
    rows = []
    for stage in mine:
        theirs = stage_numbers(board_seed["stages"][stage["stage"]])
        for name, value in stage_numbers(stage).items():
            rows.append((stage["stage"], name, theirs.get(name), value))
    board_cpu = entry["runs"][i].get("cpu")
    head = (f"{run_dir}: {run['loss']['spec']}{' (control)' if run.get('control') else ''} seed {run['seed']}, "
            f"{len(mine)} stages, CPU kind {cpu_kind(run['provenance'].get('cpu') or {})}; the board's seed: "
            f"{cpu_kind(board_cpu) if board_cpu else 'not recorded'}")
    return rows, head


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a run folder, finished or stopped (its results.json)")
    p.add_argument("board", type=Path, help="the board file holding the run's arm and seed")
    p.add_argument("--stages", type=int, default=2, help="stages the run must have finished (default 2: one "
                                                          "trained on a rewrite)")
    args = p.parse_args(argv)
    try:
        rows, head = compare(args.run, args.board)
    except FortifaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(head)
    print("| stage | number | the board | this run | equal |\n|---:|---|---|---|---|")
    for stage, name, theirs, mine in rows:
        print(f"| {stage} | {name} | {theirs!r} | {mine!r} | {'yes' if theirs == mine else 'NO'} |")
    stages = len({r[0] for r in rows})
    equal = all(r[2] == r[3] for r in rows)
    print(f"{stages} stages, {sum(r[2] == r[3] for r in rows)} of {len(rows)} numbers equal: "
          + ("the board's kind" if equal and stages >= args.stages else
             f"fewer than {args.stages} stages finished" if equal else "NOT the board's kind"))
    return 0 if equal and stages >= args.stages else 1


if __name__ == "__main__":
    sys.exit(main())
