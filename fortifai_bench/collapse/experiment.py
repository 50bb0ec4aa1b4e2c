"""An experiment: one collapse task, several losses, several seeds, an optional baseline and clean control.

    from fortifai_bench.collapse import load_task, run_experiment
    exp = run_experiment(load_task("collapse_facts"), ["ce", "tce:0.9"], seeds=[0, 1, 2], control=True)
    print(exp.table())

Every (loss, seed) is one resumable run directory (`run.run_collapse`); the experiment adds what only
makes sense across runs: the summary over seeds (`results.summarize_runs`), the comparison with the
baseline (`metrics.compare_failures`, seeds as the unit), the clean control (the same task with
`mode: clean`, trained with the baseline loss), a summary JSON and the comparison plot. `run_suite` runs
one experiment per task in one pool of processes; `run_default` is the embedded default, what a bare
`fortifai-bench collapse` runs (its rules: `collapse.defaults`).

`jobs > 1` runs that many (loss, seed) runs at once, each in its own process with one torch thread. Why:
a run's numbers depend on its thread count (float rounding changes what sampling corrupts), so one-thread
runs give exactly the numbers of `--threads 1` runs, which is how the seeded board is made; and a tiny
model's parallel regions are too short for several threads to pay off, so single-threaded runs side by
side are as fast as one multi-threaded run after another on an idle CPU (112 s against 108 s for the
embedded default) and faster beside other work (1.35x against 1.58x slower beside a busy process;
BENCHMARKS.md, "Threads and floors").
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import json
import multiprocessing
import multiprocessing.forkserver
import os
import queue
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from fortifai_bench import threads
from fortifai_bench.collapse import rundir
from fortifai_bench.collapse.base import base_model, with_base_seed
from fortifai_bench.collapse.config import CollapseTask, task_from_dict
from fortifai_bench.collapse.defaults import DEFAULT_LOSSES, count_runs, default_jobs, default_tasks, with_control
from fortifai_bench.collapse.plan import plan
from fortifai_bench.collapse.plots import plot_compare, plot_mechanism
from fortifai_bench.collapse.progress import Board, label
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.run import open_context, run_collapse
from fortifai_bench.distributed import Dist, env_world
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import write_json
from fortifai_bench.losses import load_loss
from fortifai_bench.metrics import compare_failures
from fortifai_bench.models import require_model
from fortifai_bench.results import load_results, run_failure, summarize_runs
from fortifai_bench.stats import format_number, format_p

CONTROL = "control"


@dataclass
class Experiment:
    task: CollapseTask
    groups: dict[str, list[dict]] = field(default_factory=dict)      # label -> results of each seed
    summaries: dict[str, dict] = field(default_factory=dict)         # label -> results.summarize_runs
    baseline: str | None = None                                      # label of the baseline group
    summary_path: Path | None = None
    seconds: float | None = None                                     # wall time of run_experiment
    jobs: int = 1                                                    # runs at once (run_experiment's jobs)

    def phase_seconds(self) -> dict[str, float]:
        """Seconds per phase (train, regenerate, evaluate), summed over every stage of every run, as the
        runs recorded them (a reused run counts its own earlier time)."""
        totals = {"train": 0.0, "regenerate": 0.0, "evaluate": 0.0}
        for runs in self.groups.values():
            for r in runs:
                for stage in r["stages"]:
                    for phase, sec in (stage.get("seconds") or {}).items():
                        totals[phase] = totals.get(phase, 0.0) + sec
        return totals

    def table(self) -> str:
        return format_table(self)


def control_task(task: CollapseTask) -> CollapseTask:
    """The clean control of `task`: same schedule, model and training, every split kept real."""
    return dataclasses.replace(task, mode="clean")


@dataclass(frozen=True)
class Job:
    """One run of an experiment: a group label, the task, the loss and its arguments, the seed."""

    label: str
    task: CollapseTask
    spec: str
    args: dict
    seed: int


def run_experiment(task: CollapseTask, losses: list[str], seeds: list[int], *, loss_args: dict | None = None,
                   baseline: str | list[dict] | None = None, control: bool = False,
                   out: str | os.PathLike = "runs", progress: bool | str = True, command: str | None = None,
                   write_summary: bool = True, jobs: int = 1) -> Experiment:
    """Run every loss (and the baseline and the control) for every seed; summarize and compare.

    `baseline`: a loss spec run with the same seeds (default: "ce" when it is among several losses), or
    the results of runs made earlier. `loss_args` go to the losses under test, not to the baseline.
    `jobs`: runs at once, one process and one torch thread each (module doc); 1: one after another here.
    """
    exp, planned = plan_experiment(task, losses, seeds, loss_args=loss_args, baseline=baseline, control=control,
                                   jobs=jobs)
    start = time.perf_counter()
    results = execute(planned, jobs, out=out, progress=progress, command=command)
    finish_experiment(exp, planned, results, time.perf_counter() - start, out=out, write_summary=write_summary)
    return exp


def run_suite(tasks: list[CollapseTask], losses: list[str], seeds: list[int], *, control: bool = False,
              out: str | os.PathLike = "runs", progress: bool | str = True, command: str | None = None,
              write_summary: bool = True, jobs: int = 1) -> list[Experiment]:
    """One experiment per task (a regime of the suite), every run of every task in one pool of `jobs`
    processes, so the regimes' runs go side by side as one experiment's do."""
    plans = [plan_experiment(t, losses, seeds, control=control, jobs=jobs) for t in tasks]
    start = time.perf_counter()
    results = execute([j for _, planned in plans for j in planned], jobs, out=out, progress=progress,
                      command=command)
    wall = time.perf_counter() - start
    for exp, planned in plans:
        mine, results = results[: len(planned)], results[len(planned):]
        finish_experiment(exp, planned, mine, wall, out=out, write_summary=write_summary)
    return [exp for exp, _ in plans]


def run_default(tasks: list[CollapseTask] | None = None, *, control: bool | None = None, jobs: int | None = None,
                out: str | os.PathLike = "runs", progress: bool | str = True, command: str | None = None,
                write_summary: bool = True) -> list[Experiment]:
    """The embedded default, what a bare `fortifai-bench collapse` runs (`collapse.defaults`): ce and tce:0.9
    on every task of the suite (`tasks`, default: `defaults.DEFAULT_SUITE`) at the first task's seed, beside
    the clean control unless `control` is False, every run side by side unless `jobs` says otherwise."""
    tasks = default_tasks() if tasks is None else tasks
    seeds = [tasks[0].seed]
    control = with_control(tasks[0], control, default=True)
    jobs = default_jobs(count_runs(tasks, DEFAULT_LOSSES, seeds, control), jobs, default=True)
    return run_suite(tasks, DEFAULT_LOSSES, seeds, control=control, out=out, progress=progress, command=command,
                     write_summary=write_summary, jobs=jobs)


def baseline_runs(text: str | None):
    """A `--baseline` as run_experiment takes it: a loss spec as given, or the results of run directories
    (RUN[,RUN...], results.json files, or a folder of runs)."""
    if text is None:
        return None

    paths = [Path(t) for t in text.split(",")]
    if not all(p.is_dir() or p.suffix == ".json" for p in paths):
        return text
    files = []
    for p in paths:
        files += [p] if p.suffix == ".json" or (p / "results.json").is_file() else sorted(p.glob("*/results.json"))
    if not files:
        raise FortifaiError(f"--baseline {text}: no results.json found there")
    return [load_results(f) for f in files]


def resume_experiment(run: str | os.PathLike, overrides: list[str], loss: str | None, loss_args: dict, *,
                      progress: bool = True, command: str | None = None) -> Experiment:
    """Continue a killed run at its first unfinished stage, as an experiment of one run. `overrides` apply
    to the run's recorded task and must not change it; without `loss` and `loss_args` the recorded loss
    and the arguments its user gave are used."""
    recorded, recorded_loss = rundir.read_run_config(run)
    task = task_from_dict(recorded.to_dict(), overrides, source=str(Path(run) / "config.yaml"))
    require_model(task.model.name)  # as for a new run: a model not installed is one line, before any work
    spec = loss or recorded_loss["spec"]
    given = loss_args if (loss or loss_args) else _user_args(recorded_loss)
    try:
        results = run_collapse(task, spec, given, resume=run, progress=progress, command=command)
    except KeyboardInterrupt as exc:
        raise Stopped([str(run)], 1) from exc
    return Experiment(task, {spec: [results]}, {spec: summarize_runs([results])})


def _user_args(loss_desc: dict) -> dict:
    """The keyword arguments a user gave, from a recorded loss description (short specs carry theirs)."""
    plain = load_loss(loss_desc["spec"]).describe()["args"]
    return {k: v for k, v in loss_desc.get("args", {}).items() if plain.get(k, object()) != v}


def plan_experiment(task: CollapseTask, losses: list[str], seeds: list[int], *, loss_args: dict | None = None,
                    baseline: str | list[dict] | None = None, control: bool = False,
                    jobs: int = 1) -> tuple[Experiment, list[Job]]:
    """The experiment's groups and the runs it needs, in order (run_experiment's arguments)."""
    if not losses:
        raise FortifaiError("run_experiment: give at least one loss")
    if task.mode == "clean" and control:
        raise FortifaiError("the task is already the clean control (mode: clean); drop --control")
    if not isinstance(jobs, int) or jobs < 1:
        raise FortifaiError(f"--jobs must be an integer >= 1, got {jobs!r}")
    exp = Experiment(task, jobs=jobs)
    planned: list[Job] = []

    def plan(label, t, spec, args):
        exp.groups[label] = []
        planned.extend(Job(label, t, spec, args, s) for s in seeds)

    if isinstance(baseline, list):
        exp.baseline = f"{baseline[0]['loss']['spec']} (baseline)"
        exp.groups[exp.baseline] = baseline
    elif isinstance(baseline, str) and baseline not in losses:
        exp.baseline = baseline
        plan(baseline, task, baseline, {})
    for spec in losses:
        plan(spec, task, spec, loss_args or {})
    if exp.baseline is None:
        if isinstance(baseline, str):
            exp.baseline = baseline
        elif "ce" in losses and len(losses) > 1:
            exp.baseline = "ce"  # the reference loss is the natural baseline
    if control:
        # trained with the baseline loss: the control isolates regeneration, not the loss
        plan(CONTROL, control_task(task), baseline if isinstance(baseline, str) else "ce", {})
    return exp, planned


def finish_experiment(exp: Experiment, planned: list[Job], results: list[dict], seconds: float, *,
                      out: str | os.PathLike, write_summary: bool) -> None:
    """Group the runs' results, summarize them over seeds, compare with the baseline, write the summary."""
    for job, result in zip(planned, results):
        exp.groups[job.label].append(result)
    exp.seconds = seconds
    exp.summaries = {label: summarize_runs(runs) for label, runs in exp.groups.items()}
    if exp.baseline is not None:
        _add_comparisons(exp)
    if write_summary and sum(len(v) for v in exp.groups.values()) >= 2:
        exp.summary_path = _write_summary(exp, Path(out))


def execute(planned: list[Job], jobs: int = 1, *, out, progress: bool | str, command: str | None) -> list[dict]:
    """The results of every planned run, in order: here one after another, or `jobs` processes at once.

    Work two runs would do identically is done once (`Sharing`): the base model's chance level, and the
    clean control's stage 0 (its baseline's). On Ctrl-C or SIGTERM the runs stop, and the error says which
    run directories to resume."""
    if jobs > 1:  # one thread, like a worker's: --jobs promises the numbers of one-thread runs
        _one_thread()
    share = Sharing(planned, out, command)
    board = None
    if progress and len(planned) > 1:
        board = Board([label(j.task, j.spec, j.seed) for j in planned],
                      [j.task.stages for j in planned], progress)
    try:
        if jobs > 1 and len(planned) > 1:
            return _side_by_side(planned, jobs, share, board, command)
        return _one_after_another(planned, share, board, progress, command)
    except KeyboardInterrupt as exc:
        raise Stopped(share.unfinished(), len(planned)) from exc
    finally:
        if board is not None:
            board.close()


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped an experiment: its message says which runs to resume, and how."""

    def __init__(self, runs: list[str], planned: int):
        resume = "; resume with: " + "; ".join(f"fortifai-bench collapse --resume {r}" for r in runs) if runs else ""
        later = planned - len(runs)
        super().__init__(f"{len(runs)} unfinished run{'s' * (len(runs) != 1)} kept{resume}"
                         + (f" ({later} other{'s' * (later != 1)} finished or not started)" if later else ""))


def _one_after_another(planned, share: "Sharing", board, progress, command) -> list[dict]:
    results: list[dict] = []
    for k, j in enumerate(planned):
        report = (lambda e, k=k: board.update({"run": k, **e})) if board is not None else None
        results.append(run_collapse(j.task, j.spec, j.args, seed=j.seed, resume=share.prepare(k),
                                    progress=progress, command=command, report=report))
        share.finished(k)
    return results


def _one_thread() -> None:
    """One torch thread, as `--threads 1` sets it (so the policy's refresh leaves it alone): each worker
    process, before anything in it runs torch, and this process for a single run under --jobs."""
    threads.apply_default(1)


# --------------------------------------------------------------------------------- work done once

def chance_key(job: Job) -> str:
    """What a run's chance.json depends on: the base model and how it is loaded, the corpus, its cut and
    KR set and how they are scored, the device; not the loss, the seed, the mode, training or decoding.
    Runs with one key compute the same chance.json (the six of the embedded default do)."""
    d = with_base_seed(dataclasses.replace(job.task, seed=job.seed)).to_dict()  # a base per seed: its own key
    keys = ("corpus", "corpus_part", "stages", "paragraphs_per_split", "model", "eval")
    return json.dumps({**{k: d[k] for k in keys}, "device": d["train"]["device"]}, sort_keys=True)


def same_stage0(a: Job, b: Job) -> bool:
    """Whether run b's stage 0 is exactly run a's: the same loss, arguments and seed, tasks that differ in
    their mode only, and the same stage-0 plan (what M_0 trains on, the trainer's config, every seed). So
    it is for the clean control and the baseline it is trained with (stage 0 trains on the real split 0 in
    every mode, then rewrites it); checked bitwise, file by file, in tests/test_collapse.py."""
    if (a.spec, a.args, a.seed) != (b.spec, b.args, b.seed) or a.task.mode == b.task.mode:
        return False
    ta, tb = (dataclasses.replace(j.task, seed=j.seed) for j in (a, b))
    if dataclasses.replace(ta, mode=tb.mode) != tb:
        return False
    sizes = [len(split) for split in load_data(ta).splits]
    return plan(ta, sizes)[0] == plan(tb, sizes)[0]


class Sharing:
    """Which runs of an experiment start from another's work, and their run directories, made before
    they start: the first run of each `chance_key` computes chance.json here (in this process, with the
    runs' thread count) and the others copy it; a run whose stage 0 is another's (`same_stage0`: the
    control) waits for it and copies that stage's folder (`rundir.copy_stage`). Each run then resumes its
    directory and skips what it finds done, so its numbers are those it would have computed."""

    def __init__(self, planned: list[Job], out, command: str | None):
        self.planned, self.out, self.command = planned, out, command
        self.donor: dict[int, int] = {}                          # run -> the run whose stage 0 it copies
        for k, b in enumerate(planned):
            for i, a in enumerate(planned[:k]):
                if k not in self.donor and same_stage0(a, b):
                    self.donor[k] = i
        self.chance: dict[str, Path] = {}                        # chance_key -> a run holding its chance.json
        self.runs: dict[int, Path] = {}
        self.done: set[int] = set()

    def ready(self, k: int, stage0_done: set[int]) -> bool:
        return k not in self.donor or self.donor[k] in stage0_done

    def prepare(self, k: int) -> Path:
        """Run k's directory, holding chance.json and, for a run with a donor, its donor's stage 0 (which
        must be finished by then)."""
        job = self.planned[k]
        key = chance_key(job)
        dist = Dist.start(job.task.train.device)  # under torchrun every process prepares each run: rank 0 writes
        if key not in self.chance:
            run = _open_with_chance(job, self.out, self.command)
            self.chance[key] = run
        else:
            run = Path(dist.on_main(lambda: str(self._open_copying_chance(job, key))))
        if k in self.donor:
            dist.on_main(rundir.copy_stage, self.runs[self.donor[k]], run, "stage_0")
        self.runs[k] = run
        return run

    def _open_copying_chance(self, job: Job, key: str) -> Path:
        task = dataclasses.replace(job.task, seed=job.seed)
        run = rundir.open_run(task, load_loss(job.spec, **job.args).describe(), out=self.out, command=self.command)
        rundir.copy_chance(self.chance[key], run)
        return run

    def finished(self, k: int) -> None:
        self.done.add(k)

    def unfinished(self) -> list[str]:
        return [str(run) for k, run in sorted(self.runs.items()) if k not in self.done]


def _open_with_chance(job: Job, out, command: str | None) -> Path:
    """A new run directory for `job` with its chance.json computed (`run.open_context`), in this process."""
    ctx = open_context(job.task, job.spec, job.args, job.seed, out, None, False, command,
                       Dist.start(job.task.train.device))
    return ctx.run.path


# --------------------------------------------------------------------------------- side by side

# What every worker imports, imported once by the forkserver process before it forks them (it runs no torch
# op, so a fork of it is safe), rather than by each worker: about 3 s of CPU per worker on the 2-core machine.
PRELOAD = ["torch", "transformers", "transformers.models.gpt2.modeling_gpt2", "fortifai_bench.collapse.run",
           "fortifai_bench.collapse.evaluate", "fortifai_bench.train.loop",
           "fortifai_bench.collapse.regenerate", "fortifai_bench.kr.scoring"]
_EVENTS = None  # in a worker: the queue its runs' progress events go to


def _worker_start(events) -> None:
    """A worker's setup: one thread, Ctrl-C left to the parent (which stops the workers), events to the queue."""
    global _EVENTS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent stops us
    signal.signal(signal.SIGTERM, _stop_worker)
    _EVENTS = events
    events.put({"kind": "worker", "pid": os.getpid()})
    _one_thread()


def _stop_worker(signum, frame) -> None:
    """SIGTERM from the parent: exit through Python's own shutdown, which releases the semaphores this
    process created (tqdm's lock): killed on the spot, it would leave them to the resource tracker's warning."""
    raise SystemExit(128 + signum)


def _work(k: int, job: Job, run: Path, command: str | None) -> dict:
    return run_collapse(job.task, job.spec, job.args, seed=job.seed, resume=run, progress=False, command=command,
                        report=lambda event: _EVENTS.put({"run": k, **event}))


def _side_by_side(planned: list[Job], jobs: int, share: Sharing, board, command: str | None) -> list[dict]:
    """The runs in `jobs` worker processes; their progress drawn here (`board`) from the events they send."""
    if env_world()[0] > 1:
        raise FortifaiError("--jobs > 1 starts its own processes: not under torchrun (use --nproc or --jobs 1)")
    # forkserver, not fork: a forked copy of a process that has run torch can deadlock in its thread pools
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()  # it imports PRELOAD while this process prepares the runs
    for job in planned:  # the tiny base is pretrained once, here, not by every worker at the same time
        base_model(dataclasses.replace(job.task, seed=job.seed), progress=board is not None)
    results: list[dict | None] = [None] * len(planned)
    events = context.Queue()
    workers: set[int] = set()
    stage0: set[int] = set()  # runs whose stage 0 is done
    pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(planned)), mp_context=context,
                                  initializer=_worker_start, initargs=(events,))
    futures: dict = {}
    try:
        def submit_ready():
            for k in range(len(planned)):
                if k not in futures.values() and share.ready(k, stage0):
                    futures[pool.submit(_work, k, planned[k], share.prepare(k), command)] = k

        submit_ready()
        while len(share.done) < len(planned):
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                event = None
            if event is not None and event["kind"] == "worker":
                workers.add(event["pid"])
            elif event is not None:
                if board is not None:
                    board.update(event)
                if event["kind"] == "stage" and event["stage"] == 0 and event["run"] not in stage0:
                    stage0.add(event["run"])
                    submit_ready()
            for future in [f for f, k in futures.items() if f.done() and k not in share.done]:
                k = futures[future]
                results[k] = future.result()  # a run's error (a FortifaiError) is raised here, in one line
                share.finished(k)
                stage0.add(k)
                submit_ready()
                if board is not None:
                    curve = " ".join(f"{st['score']:.3f}" for st in results[k]["stages"])
                    board.say(f"{board.name(k)}: done, KR-split-0 {curve}  ({results[k]['run_dir']})")
    except KeyboardInterrupt:
        for pid in workers:  # our own workers, by id: their files are whole (atomic writes), so each resumes
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        raise
    finally:
        for future in futures:
            future.cancel()  # the runs not started yet; after an error, those running finish their stage files
        pool.shutdown(wait=True)
        events.close()
        events.cancel_join_thread()
    return results


def _add_comparisons(exp: Experiment) -> None:
    base = [run_failure(r) for r in exp.groups[exp.baseline]]
    for name, runs in exp.groups.items():
        if name != exp.baseline:
            exp.summaries[name]["vs_baseline"] = {"baseline": exp.baseline,
                                                   **compare_failures([run_failure(r) for r in runs], base)}


def _write_summary(exp: Experiment, out: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # the task name is a user's string (a task YAML's `task:`): one safe path component, as run folders are
    path = out / f"summary-{rundir.slug(exp.task.task, 'task', keep='._-')}-{stamp}.json"
    write_json(path, {"task": {"name": exp.task.task, "version": exp.task.version},
                      "config_hash": exp.task.config_hash(), "baseline": exp.baseline,
                      "seconds": {"wall": exp.seconds, **exp.phase_seconds()}, "summaries": exp.summaries})
    try:
        plot_compare(exp.groups, path.with_suffix(""), exp.task.eval.failure_threshold)
        plot_mechanism(exp.groups, path.with_name(f"{path.stem}-mechanism"))
    except ImportError:  # matplotlib missing: the numbers stand without the picture
        pass
    return path


# ------------------------------------------------------------------------------------------ the table



def format_table(exp: Experiment) -> str:
    """KR-split-0 per stage (mean over seeds) side by side, then time to failure, KL of split 0, AUC."""
    names = list(exp.groups)
    s = exp.summaries
    n_stages = max((len(r["stages"]) for runs in exp.groups.values() for r in runs), default=0)
    rows = [["stage"] + names]
    tags = sorted({t for runs in exp.groups.values() for r in runs for st in r["stages"]
                   for t in st.get("score_by_tag") or {}})
    for i in range(n_stages):
        rows.append([f"M_{i}"] + [_cell(s[n]["per_stage"]["score"], i) for n in names])
        rows += [[f"  {tag}"] + [format_number(tag_mean(exp.groups[n], i, tag)) for n in names] for tag in tags]
    rows.append(["failure"] + [s[n]["time_to_failure"]["text"] for n in names])
    rows.append(["KM median"] + [format_number(s[n]["time_to_failure"]["km_median"], 2) for n in names])
    rows.append(["KL split 0, M_last"] + [_cell(s[n]["per_stage"]["kl_split0"], n_stages - 1) for n in names])
    rows.append(["AUC"] + [format_number(s[n]["auc"]["mean"]) for n in names])
    if exp.baseline:
        rows.append([f"vs {exp.baseline}"] + [_versus(s[n].get("vs_baseline")) for n in names])
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(len(rows[0]))]
    threshold = exp.task.eval.failure_threshold
    lines = [f"KR-split-0 per stage (mean over seeds); failure = first crossing below {threshold:.2f}, "
             f"in stages from M_0" + (f"; beneath each stage its {' and '.join(tags)} questions" if tags else "")]
    lines += ["".join(cell.ljust(widths[0]) if c == 0 else cell.rjust(widths[c]) for c, cell in enumerate(r))
              for r in rows]
    if exp.baseline:
        lines.append(f"vs {exp.baseline}: ratio of restricted mean time to failure (min(time, last stage)), "
                     f"p from the exact permutation test over seeds (two-sided; 3 vs 3 seeds cannot go below 0.1)")
    lines.append(_time_line(exp))
    runs = [r["run_dir"] for runs in exp.groups.values() for r in runs]
    lines.append("runs: " + ", ".join(str(r) for r in runs))
    if exp.summary_path:
        lines.append(f"summary: {exp.summary_path}")
    return "\n".join(lines)


def _time_line(exp: Experiment) -> str:
    """Where the time went: the phases the runs recorded, and the rest of the wall time (the base model,
    the chance level, loading), so a reader sees which phase to speed up."""
    phases = exp.phase_seconds()
    text = " + ".join(f"{name} {sec:.0f} s" for name, sec in phases.items())
    runs = sum(len(r) for r in exp.groups.values())
    if exp.seconds is None:
        return f"time per phase: {text}"
    if exp.jobs > 1 and runs > 1:  # the phases of runs side by side overlap: their sum exceeds the wall time
        return (f"time: {exp.seconds:.0f} s wall for {runs} runs, {min(exp.jobs, runs)} at a time; per phase, "
                f"summed over the runs: {text}")
    other = max(0.0, exp.seconds - sum(phases.values()))
    return f"time: {exp.seconds:.0f} s wall = {text} + other {other:.0f} s (base model, chance level, loading)"


def tag_mean(runs: list[dict], i: int, tag: str) -> float | None:
    """Mean over seeds of stage i's KR-split-0 on the questions tagged `tag` (a tagged KR set)."""
    xs = [r["stages"][i]["score_by_tag"][tag] for r in runs if i < len(r["stages"])
          and (r["stages"][i].get("score_by_tag") or {}).get(tag) is not None]
    return sum(xs) / len(xs) if xs else None


def _cell(stats: list[dict], i: int) -> str:
    return format_number(stats[i]["mean"]) if i < len(stats) else "-"


def _versus(v: dict | None) -> str:
    if not v or v.get("ratio") is None:
        return "-"
    p = v.get("p_value")
    return f"{v['ratio']:.2f}x" + (" " + format_p(p, v.get("splits")).replace(" = ", "=") if p is not None else "")
