"""`fortifai-bench verify RUN...`: re-score every stage's saved model and compare with results.json
(`fortifai_bench.verify`); `--rerun`: run the protocol again from the recorded config and seed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fortifai_bench.cli.args import add_quiet
from fortifai_bench.errors import FortifaiError


def _run(args: argparse.Namespace) -> int:
    from fortifai_bench import verify

    if args.rerun:
        if args.json:
            raise FortifaiError("verify: --json reports a re-scoring; --rerun prints the fields that differ")
        bad = []
        for run in args.runs:
            diffs = verify.rerun(run, out=args.out, progress=not args.quiet)
            print(f"{run}: rerun " + ("reproduces every recorded number" if not diffs else
                                      f"differs in {len(diffs)} field(s):"))
            print("".join(f"  {d}\n" for d in diffs[:20]), end="")
            bad += [run] if diffs else []
        if bad:
            raise FortifaiError(f"verify --rerun: {len(bad)} of {len(args.runs)} run(s) not reproduced: {', '.join(bad)}")
        return 0
    if args.out is not None:
        raise FortifaiError("verify: --out is where --rerun writes its run; give --rerun")
    if args.json:  # what the child process below runs: the re-scoring itself, in this process
        reports = [verify.verify_run(run) for run in args.runs]
        print(json.dumps(reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]))
        return 0
    # Always in a fresh child, even when called from a process that imported a loss module (a test, a notebook)
    reports = [verify.verify_in_subprocess(run) for run in args.runs]
    for r in reports:
        print("\n".join(r.lines()))
    bad = [p for r in reports for p in r.problems]
    if bad:
        raise FortifaiError(f"verify: {bad[0]}" + (f"; and {len(bad) - 1} more" if len(bad) > 1 else ""))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "verify", help="re-score a run's saved models and compare with its results.json (publish runs it)",
        description="Load every stage's saved model of a finished collapse run and score the run's KR questions "
                    "again, in a fresh Python process (which never imports the run's loss module), with the run's "
                    "batches and thread count; compare KR-split-0, KR per split and the split-0 per-question bits with "
                    "results.json: equal on the CPU kind the run recorded, else equal up to near-tie flips. "
                    "Exit 2 naming the first stage that differs. --rerun runs the whole protocol again from the "
                    "recorded config, loss and seed and compares every number (CONTRIBUTING: Verifying a run).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (or their results.json)")
    p.add_argument("--rerun", action="store_true",
                   help="run the protocol again (imports the run's loss) and compare every recorded number")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="--rerun: keep the new run under DIR (default: a temporary folder, removed)")
    p.add_argument("--json", action="store_true",
                   help="re-score in this process and print the result as JSON (what the fresh process runs)")
    add_quiet(p)
    p.set_defaults(func=_run)
