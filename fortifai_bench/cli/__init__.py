"""`fortifai-bench <command>`: the command line, one package (as lm-eval's `_cli/`); each command is a thin
layer over a library function.

This module builds the parser, sets the thread count and runs the command; each command is a module of the
package (`collapse`, `compare`, `corpus`, `kr`, `leaderboard`, `plot`, `toy`, `train`, `verify`), and `args` holds the conventions they share (--seeds, --quiet). Every command module
exposes `register(subparsers)`, which adds its parser and sets `func=<callable taking the parsed args>`. A
`FortifaiError` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fortifai_bench import __version__, threads
from fortifai_bench.errors import FortifaiError

COMMAND_MODULES = [
    "fortifai_bench.cli.train",         # train: one stage of training with any loss
    "fortifai_bench.cli.kr",            # kr build | kr stats
    "fortifai_bench.cli.corpus",        # corpus list | corpus show | corpus build-facts
    "fortifai_bench.cli.collapse",      # collapse: Algorithm 1 end to end
    "fortifai_bench.cli.leaderboard",   # publish | leaderboard show | render | suite
    "fortifai_bench.cli.compare",       # compare RUN_A RUN_B
    "fortifai_bench.cli.verify",        # verify RUN [--rerun]: re-score a run's saved models
    "fortifai_bench.cli.plot",          # plot RUN... [--to STEM]: figures again from results.json
    "fortifai_bench.cli.toy",           # toy gaussian | gmm | vae
]


def _tasks_path(args: argparse.Namespace) -> None:
    from fortifai_bench.resources import tasks_dir

    print(tasks_dir())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fortifai-bench",
        description="Benchmark suite for model collapse under recursive training (ForTIFAI). Without a command, "
                    "`fortifai-bench` runs the embedded default (= `fortifai-bench collapse`): the collapse protocol "
                    "on the synthetic facts encyclopedia with a tiny GPT-2, in two regimes (hot sampling and greedy), "
                    "each with ce, tce:0.9 and the clean control: six runs side by side in six processes with one "
                    "thread each, offline, about 4 minutes on a 2-core CPU (BENCHMARKS.md), writing runs/ in the "
                    "current folder. See first what it would run: `fortifai-bench collapse --plan`.",
        epilog=threads.POLICY_HELP,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Its own dest: a subcommand's --threads default (None) would overwrite a shared one.
    parser.add_argument("--threads", dest="global_threads", type=int, default=None, metavar="N",
                        help="torch CPU threads for any command (a command's own --threads also works)")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    tp = sub.add_parser("tasks-path", help="print the folder of shipped lm-eval and collapse tasks")
    tp.set_defaults(func=_tasks_path)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # not written yet during development
                continue
            raise
        module.register(sub)
    return parser


def apply_threads(args: argparse.Namespace) -> None:
    """The thread count, once per command, before any torch work (the one place a command's threads are
    set); also what the torchrun entry points (`python -m fortifai_bench.collapse` / `.train`) apply.

    The command's own --threads, else the global one, else the user's OMP_NUM_THREADS, else the command's
    `default_threads` (collapse: 1, see cli/collapse.py), else the load-based policy (fortifai_bench.threads)."""
    explicit = getattr(args, "threads", None)
    if explicit is None:
        explicit = getattr(args, "global_threads", None)
    threads.check(explicit)  # here too with --nproc: refused before N processes start
    if (getattr(args, "nproc", None) or 1) > 1:
        return  # torchrun starts the processes and gives each OMP_NUM_THREADS=1 unless the user set it
    if explicit is None and threads.explicit_env() is None:
        explicit = getattr(args, "default_threads", None)
    threads.apply_default(explicit)


def main(argv: list[str] | None = None) -> int:
    threads.start()  # the load snapshot: building the parser below fills the policy's measuring window
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        # No arguments at all: the embedded default (collapse_facts with ce and tce:0.9).
        argv = ["collapse"]
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import signal

    signal.signal(signal.SIGTERM, _stop)  # as Ctrl-C: the runs stop cleanly and say how to resume
    try:
        apply_threads(args)
        result = args.func(args)
    except FortifaiError as exc:
        print(f"fortifai-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        term = _STOPPED_BY == signal.SIGTERM
        print(f"fortifai-bench: {'stopped by SIGTERM' if term else 'interrupted'}"
              + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:
        return _closed_pipe()
    try:
        sys.stdout.flush()  # here, not at interpreter exit, where a closed pipe prints "Exception ignored"
    except BrokenPipeError:
        return _closed_pipe()
    return int(result or 0)


_STOPPED_BY = None


def _stop(signum, frame) -> None:
    """SIGTERM raises KeyboardInterrupt, so every `finally` runs (worker processes stopped, queues closed) and
    the exit is clean, where the default action would kill the process on the spot."""
    global _STOPPED_BY
    _STOPPED_BY = signum
    raise KeyboardInterrupt


def _closed_pipe() -> int:
    """The reader of our output went away (`fortifai-bench ... --json | head -1`): stop quietly, as `cat` does.
    Python's own exit would flush stdout again and print a traceback, so stdout points at /dev/null from here;
    the status is what a process killed by SIGPIPE reports (128 + 13)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
