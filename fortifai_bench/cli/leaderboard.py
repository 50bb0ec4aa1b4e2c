"""`fortifai-bench publish | leaderboard show | render | suite`: argument parsing over the board library.

    fortifai-bench publish RUN_DIR... [--to leaderboards/<task>.json] [--replace] [--mixed-cpu] [--claims retention] [--paired]
                           [--planned-claims SPEC,...] [--jobs N] [-q]
    fortifai-bench leaderboard show FILE [--markdown]
    fortifai-bench leaderboard render FILE --html OUT
    fortifai-bench leaderboard suite FILE... [--markdown] [--html OUT]   # losses x regimes, one board per regime
    fortifai-bench leaderboard plot FILE --to STEM   # every entry's curves over seeds, and the mechanism
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fortifai_bench.cli.args import add_quiet, at_least
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_write
from fortifai_bench.leaderboard.board import load_board
from fortifai_bench.leaderboard.publish import parse_planned, publish
from fortifai_bench.leaderboard.ranking import CLAIMS


def _publish(args: argparse.Namespace) -> int:
    at_least(args.jobs, "--jobs")
    report = publish(args.runs, args.to, root=args.root, replace=args.replace, verify=True, mixed_cpu=args.mixed_cpu,
                     claims=args.claims, paired=args.paired, planned=parse_planned(args.planned_claims),
                     jobs=args.jobs, progress=not args.quiet)
    print("\n".join(report.lines()))
    return 0


def _show(args: argparse.Namespace) -> int:
    from fortifai_bench.leaderboard.render import render_markdown, render_text

    board = load_board(args.file)
    print(render_markdown(board) if args.markdown else render_text(board), end="")
    return 0


def _render(args: argparse.Namespace) -> int:
    from fortifai_bench.leaderboard.render import render_html

    board = load_board(args.file)
    if args.html.exists() and args.html.resolve() == Path(args.file).resolve():
        raise FortifaiError(f"--html {args.html} is the board itself; give another file name")
    with atomic_write(args.html) as f:
        f.write(render_html(board))
    print(f"wrote {args.html}")
    return 0


def _suite(args: argparse.Namespace) -> int:
    from fortifai_bench.leaderboard.suite import (build_suite, render_suite_html, render_suite_markdown,
                                                  render_suite_text)

    suite = build_suite([(f, load_board(f)) for f in args.files])
    if args.html is None:
        print(render_suite_markdown(suite) if args.markdown else render_suite_text(suite), end="")
        return 0
    if any(args.html.exists() and args.html.resolve() == Path(f).resolve() for f in args.files):
        raise FortifaiError(f"--html {args.html} is one of the boards; give another file name")
    with atomic_write(args.html) as f:
        f.write(render_suite_html(suite))
    print(f"wrote {args.html}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from fortifai_bench.collapse.plots import plot_compare, plot_mechanism
    from fortifai_bench.compare import entry_runs
    from fortifai_bench.leaderboard.ranking import BASELINE_SPECS, board_test, rank_entries

    board = load_board(args.file)
    if board["kind"] != "text":  # the figures' axes are KR-split-0 and the KL of a regenerated text split
        raise FortifaiError(f"{args.file}: a {board['kind']} board; leaderboard plot draws collapse (text) boards, "
                            f"a toy's figures come from `fortifai-bench toy`")
    # CE first (the first colour in every figure), then the losses in the board's order, the control last
    entries = sorted(rank_entries(board["entries"], board_test(board)["claims"]),
                     key=lambda e: not (e["loss"]["spec"] in BASELINE_SPECS and not e.get("control")))
    if not entries:
        raise FortifaiError(f"{args.file}: the board has no entries to plot")
    several = len({e["model"] for e in entries}) > 1
    groups = {}
    for e in entries:  # a label a figure's legend can hold: the arm, and its model where the board has several
        label = "control" if e.get("control") and not several else e["loss"]["spec"]
        label += f" [{Path(e['model']).name}]" if several else ""
        groups[label + (" (clean control)" if e.get("control") and several else "")] = entry_runs(e, args.file)
    written = plot_compare(groups, Path(args.to), entries[0]["failure_threshold"])
    written += plot_mechanism(groups, Path(f"{args.to}-mechanism"))  # none where no entry kept the mechanism
    print("\n".join(f"wrote {path}" for path in written))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "publish", help="merge runs (one per seed) into a leaderboard entry",
        description="Merge the runs of several seeds of one configuration into one entry per (task, loss, model, "
                    "seed set), validate against leaderboards/schema.json and write the board atomically. "
                    "Publishing the same runs twice changes nothing. Every collapse run is verified first "
                    "(`fortifai-bench verify`: its saved models scored again in a fresh process must give its "
                    "results.json), and refused if they do not.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or their results.json)")
    p.add_argument("--to", metavar="FILE", help="board file inside the leaderboards folder "
                                                "(default: <root>/<task>.json)")
    p.add_argument("--root", default="leaderboards", metavar="DIR",
                   help="the leaderboards folder a board must live in (default: ./leaderboards)")
    p.add_argument("--replace", action="store_true",
                   help="overwrite an entry already on the board with new numbers (or an arm's seeds with other "
                        "runs of them than the board's)")
    p.add_argument("--claims", choices=CLAIMS, default=None,
                   help="what a NEW board's tests compare: time_to_failure (the default) or retention, the AUC over "
                        "stages, for regimes where CE never fails within the stages; fixed when the board is created")
    p.add_argument("--paired", action=argparse.BooleanOptionalAction, default=None,
                   help="a NEW board's tests pair the runs by seed (the same base and data order), the sign-flip test "
                        "on per-seed differences; every entry then holds one seed set; fixed when the board is created")
    p.add_argument("--planned-claims", metavar="SPEC,...", default=None,
                   help="the losses a NEW board's claims against CE will test (e.g. tce:0.9,tce:0.99,focal:2): Holm "
                        "adjusts over all of them from the first entry on, a loss not yet tested at p = 1, so an early "
                        "verdict is the design's; fixed when the board is created")
    p.add_argument("--mixed-cpu", action="store_true",
                   help="accept runs from several CPU kinds on one board (refused by default: a seed's curve follows the CPU)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="verify N runs at a time, each in its own process with its run's thread count (default 1)")
    add_quiet(p)
    p.set_defaults(func=_publish)

    lb = subparsers.add_parser("leaderboard", help="show, render or plot a leaderboard")
    sub = lb.add_subparsers(dest="leaderboard_command", metavar="<show|render|suite|plot>", required=True)
    s = sub.add_parser("show", help="print the ranked table")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--markdown", action="store_true", help="a Markdown table (for a README)")
    s.set_defaults(func=_show)
    r = sub.add_parser("render", help="write a self-contained static HTML page")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--html", required=True, type=Path, metavar="OUT")
    r.set_defaults(func=_render)
    u = sub.add_parser("suite", help="losses x regimes: several boards (one per collapse task) side by side",
                       description="One row per loss, one column per regime (board); each cell the restricted mean "
                                   "time to failure with its interval and its claim against CE on that board "
                                   "(ratio and interval; better / worse / indistinguishable: exact permutation p "
                                   "< 0.05 after Holm over the board's claims against CE; raw and adjusted p), "
                                   "and a count of each loss's verdicts over the regimes.")
    u.add_argument("files", nargs="+", metavar="FILE", help="boards, one per regime (leaderboards/<task>.json)")
    u.add_argument("--markdown", action="store_true", help="a Markdown table (for a README)")
    u.add_argument("--html", type=Path, metavar="OUT", help="write a self-contained static HTML page instead")
    u.set_defaults(func=_suite)
    f = sub.add_parser("plot", help="every entry's score and KL per stage over seeds, and the mechanism: figures",
                       description="From the board file alone: each entry's KR-split-0 and KL of split 0 per stage "
                                   "(mean over seeds, 95%% band, each seed faint) at STEM.png/.svg, and where the "
                                   "entries kept them, Fig. 1's confidence and the mask as trained at "
                                   "STEM-mechanism.png/.svg.")
    f.add_argument("file", metavar="FILE")
    f.add_argument("--to", required=True, metavar="STEM", help="where the figures go (STEM.png, STEM.svg, ...)")
    f.set_defaults(func=_plot)
