"""--plan's estimate beside what a finished run measured, per stage and phase (issue 30 item 1: within a
factor of 3 of the real run; issue 27 item 5: a run's budget with --plan's estimate beside it).

    python benchmarks/bench_plan_vs_run.py RUN_DIR [RUN_DIR ...]

For each run: its task rebuilt from results.json's config (the same hash), planned here now (the model timed
on this machine as --plan does), and a markdown table of estimated vs measured seconds per phase (the
run's stage_i metrics `seconds`: train, regenerate, evaluate) with their ratio. The estimate is only as
good as the load is steady: it is timed under the load of the moment, the run ran under its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fortifai_bench.collapse.compute import PHASES, duration, estimate
from fortifai_bench.collapse.config import task_from_dict
from fortifai_bench.collapse.plan import plan
from fortifai_bench.collapse.protocol import plan_data
from fortifai_bench.io import read_json


def compare(run: Path) -> list[str]:
    results = read_json(run / "results.json")
    task = task_from_dict(results["config"], source=str(run))
    data = plan_data(task)[0]
    est = estimate(task, plan(task, [len(s) for s in data.splits]), data)
    rates = est.rates
    lines = [f"{run.name} ({results['provenance']['command']})", "",
             f"plan: {rates.how}; CPU share while timing "
             f"{'-' if rates.cpu_share is None else f'{rates.cpu_share:.0%}'}", "",
             "| stage | " + " | ".join(f"{p} est / measured (ratio)" for p in PHASES) + " | stage est / measured |",
             "|---|" + "---|" * (len(PHASES) + 1)]
    for cost, measured in zip(est.stages, results["stages"]):
        phases, seconds = rates.phases(cost), measured["seconds"]
        cells = [f"{phases[p]:.0f} / {seconds[p]:.0f} s ({phases[p] / seconds[p]:.2f})" for p in PHASES]
        total = sum(phases[p] for p in PHASES)
        cells.append(f"{duration(total)} / {duration(sum(seconds.values()))} ({total / sum(seconds.values()):.2f})")
        lines.append(f"| {cost.stage} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for run in argv:
        print("\n".join(compare(Path(run))), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
