"""One lane of a sweep that outlives sessions: run the queue's first job that is neither finished nor held by a
live lane, then the next, until none is left.

QUEUE holds one job a line, `REGIME ARM SEED [BOARD]` (ARM: a loss spec, or `control` for the clean control;
BOARD: the file under --publish DIR its run goes onto, DIR/<task>.json unless named, so a task can have a board
per CPU kind), `#` starting a comment; the order is the priority (the pretrained-LM boards': seed by seed, every
arm of a seed before the next). Each job is a run of `collapse_regimes.py`'s layout under --out (`ensure_run`:
a finished run is reused, a killed one resumed stage by stage, a new one started from what a finished CE run
computed). Lanes share a queue, one per core: a lane claims a job with OUT/.claims/<regime>-<arm>-s<seed>.pid, created
exclusively, holding its process id and start time; a claim whose process is gone (a lane killed with its
session) is taken over. So after a stop the same command resumes the sweep, and the queue can be edited between
jobs (a lane reads it again before each). A clean control whose CE run at its seed is still in its stage 0 is
passed over until that stage is done (the control copies it), the lane waiting when nothing else is free.
`--only REGIME ARM SEED` runs one job, claimed the same way (so no lane starts it too), out of the queue's order,
then exits: a run started beside the lanes. `--publish DIR` puts each run the lane finishes onto its board,
DIR/<task>.json, verified, where that board exists (a board is created once, with its design, by `fortifai-bench
publish`): the run folders live on the machine, which a session may not get back, while the board is a file of
the checkout, so a run's verified numbers outlive its folder (an arm's entry grows by seeds, `publish`); a
finished run left off its existing board (its lane stopped during the publish) is published by the next lane
that reaches it, the run not repeated, the claim held through the publish. With it
the lane also passes over a job whose seed is on its board already, and one whose board holds runs of another CPU
kind than this machine's (`results.cpu_kind`: a board keeps one), so one queue serves every machine a session gets.
`--prune` then removes the stage models of the runs on their boards (a Gemma run keeps 6.2 GB of them), so a sweep
of pretrained-LM runs fits the disk.

    OMP_NUM_THREADS=1 python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 &   # one per core
    python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 --status               # state, hours left
    OMP_NUM_THREADS=1 python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 --only facts_smol ce 0 &
    OMP_NUM_THREADS=1 python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 --publish leaderboards &
    OMP_NUM_THREADS=1 python benchmarks/sweep_lane.py runs/queue.txt --out runs/regimes_v3 --publish leaderboards --prune &
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collapse_regimes import (REGIMES, ensure_run, finished_run_dir, newest_run, regime_task,  # noqa: E402
                              runs_of)

from fortifai_bench.collapse.rundir import slug  # noqa: E402
from fortifai_bench.errors import FortifaiError  # noqa: E402
from fortifai_bench.io import read_json  # noqa: E402
from fortifai_bench.leaderboard.board import arm_entry  # noqa: E402
from fortifai_bench.leaderboard.publish import board_cpu_kinds, publish  # noqa: E402
from fortifai_bench.results import cpu, cpu_kind  # noqa: E402


@dataclass(frozen=True)
class Job:
    regime: str
    arm: str  # a loss spec, or "control"
    seed: int
    board: str | None = None  # a board file under --publish DIR other than <task>.json; the run is the same

    def __str__(self) -> str:
        return " ".join(map(str, (self.regime, self.arm, self.seed) + ((self.board,) if self.board else ())))

    def claim_file(self, out: Path) -> Path:
        return out / ".claims" / f"{self.regime}-{slug(self.arm)}-s{self.seed}.pid"


def read_queue(path: Path) -> list[Job]:
    """The queue's jobs in order; a bad line is an error naming the file and line."""
    lines = enumerate(path.read_text().splitlines(), 1)
    return [parse_job(words, f"{path}:{n}") for n, line in lines if (words := line.split("#", 1)[0].split())]


def parse_job(words: list[str], where: str) -> Job:
    """`REGIME ARM SEED [BOARD]` as a Job; a bad one is an error naming `where` (a queue's file and line, or
    --only)."""
    if len(words) not in (3, 4) or not words[2].isdigit():
        raise FortifaiError(f"{where}: expected 'REGIME ARM SEED [BOARD]', got {' '.join(words)!r}")
    if words[0] not in REGIMES:
        raise FortifaiError(f"{where}: unknown regime {words[0]!r} (benchmarks/collapse_regimes.py's REGIMES)")
    board = words[3] if len(words) == 4 else None
    if board is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+\.json", board):
        raise FortifaiError(f"{where}: board {board!r} is not a .json file name (letters, digits, _ . - only)")
    return Job(words[0], words[1], int(words[2]), board)


def _started(pid: int) -> str | None:
    """A process's start time (/proc/PID/stat field 22), which tells it apart from a later one with its id."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _held(claim: Path) -> bool:
    """Whether the lane that wrote `claim` is still running."""
    try:
        pid, start = claim.read_text().split()
    except (OSError, ValueError):
        return False  # being written, or torn: a live lane writes it in one call, so treat it as stale
    return _started(int(pid)) == start


def running(job: Job, out: Path) -> bool:
    """Whether a live lane holds `job`'s claim."""
    return job.claim_file(out).exists() and _held(job.claim_file(out))


def claim(job: Job, out: Path) -> bool:
    """Claim `job` for this process (False: a live lane holds it). A stale claim is replaced."""
    path = job.claim_file(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _held(path):
                return False
            path.unlink(missing_ok=True)  # stale: its lane is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {_started(os.getpid())}")
        return True
    return False


def waits_for_ce(job: Job, out: Path) -> bool:
    """Whether `job` is a clean control whose CE run at its seed is running and has not finished its stage 0:
    the control copies that stage (`collapse_regimes.start_from_baseline`), so started now it would train
    the same stage 0 again (a heavy SmolLM2 run's takes 18 minutes)."""
    if job.arm != "control":
        return False
    stage_0 = [run / "stage_0" / "metrics.json" for run in runs_of(out, job.regime, "ce", job.seed)]
    return running(Job(job.regime, "ce", job.seed), out) and not any(f.is_file() for f in stage_0)


def next_job(queue: list[Job], out: Path, unpublished=lambda job: False, fits=lambda job: True) -> Job | None:
    """The first job neither finished (or finished and `unpublished`: its lane stopped between the run's end and
    its publish), nor held by a live lane, nor waiting for its CE's stage 0, claimed; None when there is none.
    Jobs that `fit` (--until) come first, each group in the queue's order; where none fits, the first job."""
    todo = [job for job in queue if (finished_run_dir(out, job.regime, job.arm, job.seed) is None
                                     or unpublished(job)) and not waits_for_ce(job, out)]
    for job in sorted(todo, key=lambda job: not fits(job)):  # stable
        if claim(job, out):
            return job
    return None


def status(queue: list[Job], out: Path, now: float | None = None, boards: Boards | None = None) -> list[str]:
    """One line a job: finished (and, with `boards`, whether it waits for its board), running (a live lane's
    claim: its pid, and how much of its work a stop now would lose, `last_saved`), or waiting (a killed run
    resumes)."""
    now = time.time() if now is None else now
    lines = []
    for job in queue:
        claim_file = job.claim_file(out)
        state = ("finished, not on its board yet (the next lane to reach it publishes it)"
                 if boards and boards.unpublished(job, out) and not running(job, out) else
                 "finished" if finished_run_dir(out, job.regime, job.arm, job.seed) is not None else
                 f"running (pid {claim_file.read_text().split()[0]}{_unsaved(job, out, now)})" if running(job, out)
                 else "waiting for CE's stage 0" if waits_for_ce(job, out) else "waiting")
        lines.append(f"{job}: {state}")
    return lines


def last_saved(job: Job, out: Path) -> float | None:
    """When the job's newest run last wrote a file: a killed lane's run resumes from its last saved phase
    (collapse.run), so the work since then is what stopping the lane now would lose. None: no run yet."""
    run = newest_run(out, job.regime, job.arm, job.seed)
    return max((_mtime(f) for f in run.rglob("*")), default=None) if run else None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a phase's temporary folder, renamed while we look; a claim just released
        return 0.0


def _unsaved(job: Job, out: Path, now: float) -> str:
    """How long the live lane has worked on `job` since its run last saved (or since it claimed the job: a
    resumed run's files are older than its lane)."""
    saved = last_saved(job, out)
    since = max(saved or 0.0, _mtime(job.claim_file(out)))
    return (f"; last saved {time.strftime('%H:%M', time.localtime(saved))}" if saved else "") + \
        f"; a stop now loses {(now - since) / 60:.0f} min"


def stage_seconds(job: Job, out: Path) -> list[float]:
    """The wall seconds of each stage the job's newest run has finished (stage_i/metrics.json: train, regenerate
    and evaluate; a stage copied from CE's run took none)."""
    run = newest_run(out, job.regime, job.arm, job.seed)
    seconds = []
    while run and (f := run / f"stage_{len(seconds)}" / "metrics.json").is_file():
        seconds.append(sum(read_json(f).get("seconds", {}).values()))
    return seconds


Timings = dict[tuple[str, str], list[list[float]]]  # (regime, arm): each finished run's stage seconds


def timings(jobs: list[Job], out: Path) -> Timings:
    """The stage seconds of `jobs`' finished runs, by regime and arm."""
    finished: Timings = {}
    for job in jobs:
        if finished_run_dir(out, job.regime, job.arm, job.seed) is not None:
            finished.setdefault((job.regime, job.arm), []).append(stage_seconds(job, out))
    return finished


def seconds_left(job: Job, out: Path, finished: Timings) -> float | None:
    """About how long `job` still needs: each stage it has not finished timed by that stage's mean over the
    finished runs of its arm (of its regime where its arm has none); None where its regime has no finished run."""
    runs = finished.get((job.regime, job.arm)) or [r for (g, _), rs in finished.items() if g == job.regime for r in rs]
    if not runs:
        return None
    done = len(stage_seconds(job, out))
    return sum(sum(r[i] for r in runs) / len(runs) for i in range(done, min(len(r) for r in runs)))


def hours_left(queue: list[Job], out: Path, timed_by: list[Job] | None = None) -> list[str]:
    """One line a regime with unfinished jobs in `queue`: about how many lane-hours they need (`seconds_left`),
    timed by `timed_by`'s finished runs (default `queue`; the status passes the whole queue, since a job passed
    over for being on its board still has its run here to time its arm by)."""
    finished = timings(timed_by if timed_by is not None else queue, out)
    left: dict[str, list[float | None]] = {}
    for job in queue:
        if finished_run_dir(out, job.regime, job.arm, job.seed) is None:
            left.setdefault(job.regime, []).append(seconds_left(job, out, finished))
    lines = []
    for regime, seconds in left.items():
        runs_left = f"{regime}: {len(seconds)} run{'s' if len(seconds) > 1 else ''} left"
        if None in seconds:
            lines.append(f"{runs_left}, untimed (no finished run of the regime to time them by)")
        else:
            lines.append(f"{runs_left}, about {sum(seconds) / 3600:.1f} lane-hours")
    return lines


def fits_before(stop_at: float | None, jobs: list[Job], out: Path):
    """Whether a job would finish before `stop_at` (--until), timed by `jobs`' finished runs (an untimed job does
    not); every job does where there is no deadline."""
    if stop_at is None:
        return lambda job: True
    finished, now = timings(jobs, out), time.time()

    def fits(job: Job) -> bool:
        left = seconds_left(job, out, finished)
        return left is not None and now + left < stop_at
    return fits


def deadline(until: str, now: float | None = None) -> float:
    """The next time of day `until` (HH:MM, local) as a Unix time; a bad one is an error naming --until."""
    if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", until):
        raise FortifaiError(f"--until {until!r}: expected a time of day HH:MM (when this session stops)")
    now = time.time() if now is None else now
    hour, minute = map(int, until.split(":"))
    today = time.localtime(now)
    at = time.mktime((today.tm_year, today.tm_mon, today.tm_mday, hour, minute, 0, 0, 0, -1))
    return at if at > now else at + 86400


def pass_over(queue: list[Job], boards: Boards | None) -> tuple[list[Job], list[str]]:
    """The jobs a lane here may run, and a line for each it passes over, saying why (`Boards.passed_over`)."""
    keep, lines = [], []
    for job in queue:
        if boards and (why := boards.passed_over(job)):
            lines.append(f"{job}: passed over, {why}")
        else:
            keep.append(job)
    return keep, lines


def disk_free_gb(out: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(out).free / 1e9


@dataclass
class Boards:
    """The boards under `root` (a lane's --publish DIR) as they bear on its jobs, for a machine of CPU kind `kind`."""
    root: Path
    kind: str

    def board(self, job: Job) -> Path:
        return self.root / (job.board or f"{_task_name(job.regime)}.json")

    def passed_over(self, job: Job) -> str | None:
        """Why a lane here should not run `job` (its seed is on the board; the board is another CPU kind's), or
        None: no board yet, or one this machine can add to."""
        if not (path := self.board(job)).exists():
            return None
        board = read_json(path)
        entry = arm_entry(board, *(("ce", True) if job.arm == "control" else (job.arm, False)))
        if entry and job.seed in entry["seeds"]:
            return "on its board"
        kinds = board_cpu_kinds(board)
        return None if not kinds or self.kind in kinds else f"its board is another CPU kind's ({', '.join(kinds)})"

    def unpublished(self, job: Job, out: Path) -> bool:
        """Whether `job`'s run is finished and waits for its board: the board exists, can take it, and lacks its
        seed. A lane killed with its session between a run's end and its verified publish leaves such a run."""
        return (self.board(job).exists() and self.passed_over(job) is None
                and finished_run_dir(out, job.regime, job.arm, job.seed) is not None)

    def prune(self, queue: list[Job], out: Path) -> list[str]:
        """Remove the stage models of every finished run here whose seed is on its board, a board of this machine's
        CPU kind (so the run verified onto it is this one); a line for each. The board keeps the verified numbers
        and the folder its records, while the models are most of a pretrained-LM run's disk (3.1 GB SmolLM2, 6.2 GB
        Gemma 3 270M: a sweep's would fill the disk). CE's stage 0 stays while a clean control of its seed is
        unfinished, for the control copies it (`collapse_regimes.start_from_baseline`). A pruned run can no longer
        be verified again (a rebuilt board) nor lend its stage 0."""
        lines = []
        for job in queue:
            run = finished_run_dir(out, job.regime, job.arm, job.seed)
            if run is None or self.passed_over(job) != "on its board" or self.kind not in board_cpu_kinds(
                    read_json(self.board(job))):
                continue
            lend = job.arm == "ce" and any(j.arm == "control" and (j.regime, j.seed) == (job.regime, job.seed)
                                           and finished_run_dir(out, j.regime, j.arm, j.seed) is None for j in queue)
            models = [m for m in sorted(run.glob("stage_*/model")) if not (lend and m.parent.name == "stage_0")]
            if models:
                size = sum(f.stat().st_size for m in models for f in m.rglob("*") if f.is_file())
                for model in models:
                    shutil.rmtree(model)
                lines.append(f"pruned {len(models)} stage models ({size / 1e9:.1f} GB) of {run}, on its board")
        return lines

    def publish(self, job: Job, out: Path) -> str:
        """Put the job's finished run onto its board, verified, if that board exists; one line saying what
        happened. A refusal (another CPU kind, a paired board's seed sets) is reported, not raised: the lane goes
        on with the queue and the run stays to be published by hand."""
        if not (board := self.board(job)).exists():
            return f"not published: no board {board} (create it with its design: fortifai-bench publish ... --to it)"
        try:
            run = finished_run_dir(out, job.regime, job.arm, job.seed)
            return "; ".join(publish([run], to=board, root=self.root, verify=True).lines())
        except FortifaiError as exc:
            return f"not published: {exc}"


def say(job: Job, what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {job.regime} {job.arm} seed {job.seed}: {what}", flush=True)


@lru_cache(maxsize=None)
def _task_name(regime: str) -> str:
    return regime_task(regime).task


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("queue", type=Path)
    p.add_argument("--out", type=Path, default=Path("runs/regimes"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-free-gb", type=float, default=4.0,
                   help="start no job with less free disk under --out (a SmolLM2 run keeps 3.1 GB of stage models)")
    p.add_argument("--status", action="store_true",
                   help="print each job's state (a running one's: what a stop now would lose) and the lane-hours left "
                        "(timed by finished runs), and exit")
    p.add_argument("--poll", type=float, default=30.0,
                   help="seconds between looks at the queue while a control waits for its CE's stage 0")
    p.add_argument("--only", nargs=3, metavar=("REGIME", "ARM", "SEED"),
                   help="run this one job, claimed as a queue job is (no lane starts it too), then exit")
    p.add_argument("--until", metavar="HH:MM",
                   help="when the machine is expected to go (a session's stop): take first the jobs that would finish "
                        "before then (timed by finished runs, as --status), each group in the queue's order; where "
                        "none would, the queue's first. A run cut off resumes only on the same machine")
    p.add_argument("--publish", type=Path, metavar="DIR",
                   help="after each job, publish its run (verified) onto DIR/<task>.json where that board exists")
    p.add_argument("--prune", action="store_true",
                   help="with --publish: before each job, remove the stage models of the queue's runs that are on "
                        "their boards (CE's stage 0 kept while its seed's control is to run), so a sweep of "
                        "pretrained-LM runs does not fill the disk")
    args = p.parse_args(argv)
    try:
        only = None if args.only is None else parse_job(args.only, "--only")
        import torch  # before cpu(): a CPU's kind includes the kernel set torch dispatches to

        boards = Boards(args.publish.resolve(), cpu_kind(cpu())) if args.publish else None
        if args.prune and not boards:
            raise FortifaiError("--prune needs --publish DIR: a run's models go only once its board holds it")
        if args.status:
            every = read_queue(args.queue)
            queue, over = pass_over(every, boards)
            lines = over + status(queue, args.out, boards=boards) + hours_left(queue, args.out, timed_by=every)
            print("\n".join(lines))
            return 0
        torch.set_num_threads(args.threads)
        tried: set[Job] = set()  # jobs this lane has published, or tried to: a refusal is not tried again

        def unpublished(j: Job) -> bool:  # a finished run left off its board (its lane stopped in the publish)
            return boards is not None and j not in tried and boards.unpublished(j, args.out)

        stop_at = deadline(args.until) if args.until else None
        while True:
            every = read_queue(args.queue)  # again before each job: the queue may be edited between jobs
            for line in boards.prune(every, args.out) if args.prune else []:
                print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            if (free := disk_free_gb(args.out)) < args.min_free_gb:  # checked before a job is claimed
                print(f"error: {free:.1f} GB free under {args.out}, below --min-free-gb {args.min_free_gb:g}: publish "
                      f"finished boards and remove their runs' stage_*/model folders (--prune)", file=sys.stderr)
                return 3
            queue = [only] if only else pass_over(every, boards)[0]  # --only: as asked
            fits = fits_before(stop_at, every, args.out)
            if (job := next_job(queue, args.out, unpublished, fits)) is None:
                if any(waits_for_ce(j, args.out) for j in queue):
                    time.sleep(args.poll)  # a control waits for its CE's stage 0; nothing else is free
                    continue
                if only and finished_run_dir(args.out, only.regime, only.arm, only.seed) is None:
                    raise FortifaiError(f"--only {' '.join(args.only)}: held by a live lane "
                                        f"({only.claim_file(args.out)})")
                break
            try:  # the claim is held through the publish, so no other lane publishes the run too
                if finished_run_dir(args.out, job.regime, job.arm, job.seed) is None:
                    say(job, "start")
                    control = job.arm == "control"
                    ensure_run(args.out, job.regime, "ce" if control else job.arm, job.seed, control, progress=False)
                    say(job, "done")
                if boards:
                    tried.add(job)
                    say(job, boards.publish(job, args.out))
            finally:
                job.claim_file(args.out).unlink(missing_ok=True)
    except FortifaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = f"--only {' '.join(args.only)}" if args.only else args.queue
    print(f"{time.strftime('%H:%M:%S')} nothing left in {source}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
