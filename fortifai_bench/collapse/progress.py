"""What a user sees while collapse runs go: one board for every run of an experiment, in this process or
side by side in worker processes.

A run reports events (`run.run_collapse`'s `report`): `open` (its directory, task, loss, stages), `phase`
(a stage's train, regenerate or evaluate starts), `stage` (a stage is done, with its metrics). A run in
this process reports to the board directly; a worker process puts its events on a queue that the parent
reads (`experiment._side_by_side`), so there is one board either way. The board draws:

* on a terminal: one tqdm bar per run ("run k of N", task, loss, "(control)" for the clean control, the
  stage and phase it is in, its last KR-split-0, its ETA) and one for the whole experiment, plus one line
  per finished stage above them;
* otherwise (piped to a file, or `-q`): only that one line per finished stage, with the experiment's ETA,
  so a log holds no carriage returns.
Stage lines go to stdout (with the tables that follow them), bars to stderr.
"""

from __future__ import annotations

import math
import sys
import time

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.stats import format_number

PHASES = ("train", "regenerate", "evaluate")


def bars_wanted(progress, stream=None) -> bool:
    """Whether to draw bars: progress asked for (True, not "lines" or False) and the output is a terminal."""
    stream = stream or sys.stderr
    return progress is True and hasattr(stream, "isatty") and stream.isatty()


def label(task: CollapseTask, spec: str, seed: int) -> str:
    """How a run is named on the board: task, loss, "(control)" for the clean control, seed."""
    return f"{task.task} {spec}{' (control)' if task.mode == 'clean' else ''} seed {seed}"


def eta_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "ETA unknown"
    seconds = round(seconds)
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


class Board:
    """The progress of `labels` (one per run, in the experiment's order) as events come in (`update`)."""

    def __init__(self, labels: list[str], stages: list[int], progress=True):
        self.labels, self.stages = labels, stages
        self.bars_on = bars_wanted(progress)
        self.start = time.perf_counter()
        self.done = [0] * len(labels)       # stages finished (computed here or reused) per run
        self.reused = [0] * len(labels)     # of which found done (resumed, or copied from an identical run)
        self.runs: dict[int, str] = {}      # run index -> its directory
        self.bars, self.total = [], None
        if self.bars_on:
            from tqdm.auto import tqdm

            self.bars = [tqdm(total=n, desc=self.name(k), unit="stage", position=k, leave=True,
                              dynamic_ncols=True) for k, n in enumerate(stages)]
            self.total = tqdm(total=sum(stages), desc=f"{len(labels)} run{'s' * (len(labels) > 1)}",
                              unit="stage", position=len(labels), leave=True, dynamic_ncols=True)

    def name(self, k: int) -> str:
        n = len(self.labels)
        return f"run {k + 1} of {n}: {self.labels[k]}" if n > 1 else self.labels[k]

    def eta(self) -> float | None:
        """Seconds left for the whole experiment, at the rate its computed stages have gone so far."""
        computed = sum(self.done) - sum(self.reused)
        left = sum(self.stages) - sum(self.done)
        if left == 0:
            return 0.0
        return (time.perf_counter() - self.start) / computed * left if computed else None

    def update(self, event: dict) -> None:
        k, kind = event["run"], event["kind"]
        if kind == "open":
            self.runs[k] = event["run_dir"]
            self.say(f"{self.name(k)}: {event['run_dir']}")
        elif kind == "phase" and self.bars_on:
            self.bars[k].set_postfix_str(f"stage {event['stage']} {event['phase']}", refresh=True)
        elif kind == "stage":
            self.done[k] += 1
            self.reused[k] += bool(event.get("reused"))
            if self.bars_on:
                self.bars[k].set_postfix_str(f"KR-split-0 {format_number(event['score'])}", refresh=False)
                self.bars[k].update()
                self.total.update()
            self.say(self._stage_line(k, event))

    def _stage_line(self, k: int, e: dict) -> str:
        head = f"{self.name(k)}: stage {e['stage']}: KR-split-0 {format_number(e['score'])}"
        head += tag_columns(e)
        head += f"  KR-total {format_number(e.get('kr_total'))}  KL {format_number(e.get('kl'))}"
        if e.get("reused"):
            return f"{head}  ({e['reused']})"
        s = e.get("seconds") or {}
        times = "  ".join(f"{p} {s[p]:.1f}s" for p in PHASES if p in s)
        left = self.stages[k] - self.done[k]
        return f"{head}  {times}  [{left} stage{'s' * (left != 1)} left; {eta_text(self.eta())}]"

    def say(self, line: str) -> None:
        """A line on stdout (with the run's table), above the bars (stderr) when they are drawn."""
        if self.bars_on:
            from tqdm.auto import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        for bar in self.bars + ([self.total] if self.total is not None else []):
            bar.close()
        self.bars, self.total = [], None




def tag_columns(metrics: dict) -> str:
    """KR-split-0 per tag ("  mode 0.958  tail 0.885") for a tagged KR set; nothing for an untagged one."""
    return "".join(f"  {tag} {format_number(x)}" for tag, x in (metrics.get("score_by_tag") or {}).items())
