"""The embedded default: what a bare `fortifai-bench` or `fortifai-bench collapse` runs, and the rules that come with it.

It runs two regimes of the suite (issue 19), sampling hot (collapse_facts) and mode-seeking decoding
(collapse_facts_greedy), where the paper places TCE's mechanism (Sec. 3: the confidence gap comes from
greedy generation), for ce and tce:0.9 at each task's own seed, beside the clean control, every run side by
side in its own process. `experiment.run_default` runs it. The command line reads its defaults here and
calls these rules, so a library caller gets what the command does; this module imports no torch, since
the command line's help states them.
"""

from __future__ import annotations

from fortifai_bench.collapse.config import CollapseTask, load_task
from fortifai_bench.errors import FortifaiError

DEFAULT_TASK = "collapse_facts"  # the task of an experiment that names none (`fortifai-bench collapse --loss X`)
DEFAULT_SUITE = ["collapse_facts", "collapse_facts_greedy"]
DEFAULT_LOSSES = ["ce", "tce:0.9"]
SMOKE_TASK = "collapse_smoke"  # `--smoke` (fortifai_bench/collapse/tasks/collapse_smoke.yaml)


def default_tasks() -> list[CollapseTask]:
    """The tasks of the embedded default, loaded."""
    return [load_task(name) for name in DEFAULT_SUITE]


def with_control(task: CollapseTask, control: bool | None = None, *, default: bool = False) -> bool:
    """Whether an experiment on `task` runs the clean control: as asked (True or False); when not said (None),
    for the embedded default only. Never for a task that is the control itself (mode: clean)."""
    return (default if control is None else bool(control)) and task.mode != "clean"


def count_runs(tasks: list[CollapseTask], losses: list[str], seeds: list[int], control: bool) -> int:
    """The runs of an experiment (or a suite of them): every loss and the control, every seed, every task."""
    return (len(losses) + control) * len(seeds) * len(tasks)


def default_jobs(runs: int, jobs: int | None = None, *, default: bool = False, threads: int | None = None,
                 nproc: int | None = None) -> int:
    """How many of `runs` go at once: `jobs` when given, checked against the other ways of using the cores
    (`threads` per run, `nproc` processes per run). When not given: every run side by side for the embedded
    default, on one thread each (the numbers of one-thread runs; `experiment`'s module doc says why), else
    one at a time; also one at a time when a thread count was chosen (`threads`: the user's own schedule)."""
    if jobs is not None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise FortifaiError(f"--jobs must be >= 1, got {jobs}")
        if jobs > 1 and threads is not None:
            raise FortifaiError("--jobs N runs each run with one thread: drop --threads")
        if jobs > 1 and (nproc or 1) > 1:
            raise FortifaiError("--jobs and --nproc both start processes: use one of them")
        return jobs
    return runs if default and threads is None else 1
