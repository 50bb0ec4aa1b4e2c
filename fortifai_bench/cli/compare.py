"""`fortifai-bench compare RUN_A RUN_B`: a thin layer over `fortifai_bench.compare` (compare_runs, format_report)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fortifai_bench.errors import FortifaiError


def _split(values: list[str]) -> list[str]:
    return [p for v in values for p in v.split(",") if p]


def _run(args: argparse.Namespace) -> int:
    from fortifai_bench.cli.args import at_least

    at_least(args.n_boot, "--n-boot")
    if args.sides and (args.a or args.b):
        raise FortifaiError("compare: give either RUN_A RUN_B or -a/-b options, not both")
    if args.sides:
        if len(args.sides) != 2:
            raise FortifaiError(f"compare: expected RUN_A RUN_B (comma-separated for several seeds), "
                                f"got {len(args.sides)} arguments")
        a, b = _split([args.sides[0]]), _split([args.sides[1]])
    else:
        a, b = _split(args.a or []), _split(args.b or [])
    from fortifai_bench.compare import compare_runs, format_report

    res = compare_runs(a, b, n_boot=args.n_boot, seed=args.seed, plot=args.plot)
    if args.json:  # json.dumps writes every control character as an escape
        print(json.dumps(res, indent=2))
    else:  # names come from boards and runs: no escape sequence, line break or bidi mark of theirs reaches the terminal
        print(format_report(_printable_strings(res)), end="")
    return 0


def _printable_strings(x):
    """`x` with every string's control characters escaped (`render.printable`, as `leaderboard show` does)."""
    from fortifai_bench.leaderboard.render import printable

    if isinstance(x, str):
        return printable(x)
    if isinstance(x, dict):
        return {k: _printable_strings(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_printable_strings(v) for v in x]
    return x


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="time to failure over seeds (exact permutation test) and McNemar on final-stage KR items",
        description="Compare two runs (or two sets of seeds, or board entries) of the same collapse task. A side "
                    "is run folders, or a board entry BOARD.json#ENTRY (the entry's name or the start of it), "
                    "e.g. leaderboards/collapse_facts.json#ce_tiny.")
    p.add_argument("sides", nargs="*", metavar="RUN",
                   help="RUN_A RUN_B; several seeds as A1,A2,A3 B1,B2,B3; a board entry as BOARD.json#ENTRY")
    p.add_argument("-a", action="append", metavar="RUN_A", help="a run (or BOARD.json#ENTRY) of side A (repeatable)")
    p.add_argument("-b", action="append", metavar="RUN_B", help="a run (or BOARD.json#ENTRY) of side B (repeatable)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (default: a report)")
    p.add_argument("--plot", default=None, metavar="STEM",
                   help="also write STEM.png and STEM.svg: both sides' KR-split-0 and KL per stage, and where the runs recorded them, STEM-mechanism.png/.svg: Fig. 1's confidence and the mask as trained (default: none)")
    p.set_defaults(func=_run)
