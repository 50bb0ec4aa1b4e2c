"""`fortifai-bench plot RUN...`: draw finished runs' figures again from their results.json (`collapse.plots`), e.g.
after an upgrade changed a figure; no model is loaded. With `--to STEM`, the figures over seeds of the runs
together, grouped by loss (the clean control its own group): KR and KL per stage (STEM.png, .svg) and the
mechanism (STEM-mechanism.png, .svg)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fortifai_bench.errors import FortifaiError


def _run(args: argparse.Namespace) -> int:
    from fortifai_bench.collapse.plots import plot_compare, plot_mechanism, plot_run
    from fortifai_bench.results import arm, load_results

    runs = [load_results(path) for path in args.runs]
    tasks = {(r["task"]["name"], r["task"]["version"]) for r in runs}
    if args.to and len(tasks) > 1:
        raise FortifaiError(f"plot --to: the runs are of {len(tasks)} tasks ("
                            + ", ".join(f"{n} v{v}" for n, v in sorted(tasks)) + "); one figure shows one task")
    written = []
    for r in runs:  # into the folder the results were read from, wherever the run was when it ran
        written += plot_run(r, Path(r["_path"]).parent / "plots")
    if args.to:
        groups: dict[str, list[dict]] = {}
        for r in runs:
            groups.setdefault(arm(r), []).append(r)
        written += plot_compare(groups, Path(args.to), runs[0]["failure_threshold"])
        written += plot_mechanism(groups, Path(f"{args.to}-mechanism"))
    for path in written:
        print(f"wrote {path}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plot", help="draw finished runs' figures again from their results.json; --to: the figures over seeds",
        description=__doc__.split("\n\n")[0].replace("`fortifai-bench plot RUN...`: ", ""))
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories (or their results.json)")
    p.add_argument("--to", default=None, metavar="STEM",
                   help="also the figures over seeds of all the runs, grouped by loss, at STEM.png/.svg and "
                        "STEM-mechanism.png/.svg")
    p.set_defaults(func=_run)
