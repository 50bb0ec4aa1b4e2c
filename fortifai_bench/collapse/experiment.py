"""An experiment: one collapse task, several losses, several seeds, an optional baseline and clean control.

    from fortifai_bench.collapse import load_task, run_experiment
    exp = run_experiment(load_task("collapse_facts"), ["ce", "tce:0.9"], seeds=[0, 1, 2], control=True)
    print(exp.table())

Every (loss, seed) is one resumable run directory (`run.run_collapse`); the experiment adds what only
makes sense across runs: the summary over seeds (`results.summarize_runs`), the comparison with the
baseline (`metrics.compare_failures`, seeds as the unit), the clean control (the same task with
`mode: clean`, trained with the baseline loss), a summary JSON and the comparison plot.

`jobs > 1` runs that many (loss, seed) runs at once, each in its own process with one torch thread. Why:
a run's numbers depend on its thread count (float rounding changes what sampling corrupts), so one-thread
runs give exactly the numbers of `--threads 1` runs, which is how the seeded board is made; and a tiny
model's parallel regions are too short for several threads to pay off, so single-threaded runs side by
side are as fast as one multi-threaded run after another on an idle CPU (112 s against 108 s for the
embedded default) and faster beside other work (1.35x against 1.58x slower beside a busy process;
BENCHMARKS.md, "Threads and floors").
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.errors import FortifaiError

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
                   out: str | os.PathLike = "runs", progress: bool = True, command: str | None = None,
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
              out: str | os.PathLike = "runs", progress: bool = True, command: str | None = None,
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


def baseline_runs(text: str | None):
    """A `--baseline` as run_experiment takes it: a loss spec as given, or the results of run directories
    (RUN[,RUN...], results.json files, or a folder of runs)."""
    if text is None:
        return None
    from fortifai_bench.results import load_results

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
    from fortifai_bench.collapse.config import task_from_dict
    from fortifai_bench.collapse.run import read_run_config, run_collapse
    from fortifai_bench.results import summarize_runs

    recorded, recorded_loss = read_run_config(run)
    task = task_from_dict(recorded.to_dict(), overrides, source=str(Path(run) / "config.yaml"))
    spec = loss or recorded_loss["spec"]
    given = loss_args if (loss or loss_args) else _user_args(recorded_loss)
    results = run_collapse(task, spec, given, resume=run, progress=progress, command=command)
    return Experiment(task, {spec: [results]}, {spec: summarize_runs([results])})


def _user_args(loss_desc: dict) -> dict:
    """The keyword arguments a user gave, from a recorded loss description (short specs carry theirs)."""
    from fortifai_bench.losses import load_loss

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
    from fortifai_bench.results import summarize_runs

    for job, result in zip(planned, results):
        exp.groups[job.label].append(result)
    exp.seconds = seconds
    exp.summaries = {label: summarize_runs(runs) for label, runs in exp.groups.items()}
    if exp.baseline is not None:
        _add_comparisons(exp)
    if write_summary and sum(len(v) for v in exp.groups.values()) >= 2:
        exp.summary_path = _write_summary(exp, Path(out))


def execute(planned: list[Job], jobs: int = 1, *, out, progress: bool, command: str | None) -> list[dict]:
    """The results of every planned run, in order: here one after another, or `jobs` processes at once."""
    from fortifai_bench.collapse.run import run_collapse

    if jobs > 1 and len(planned) > 1:
        return _side_by_side(planned, jobs, out, progress, command)
    if jobs > 1:  # one run: here, but with one thread like a worker's, so --jobs promises the same numbers
        _one_thread()
    return [run_collapse(j.task, j.spec, j.args, seed=j.seed, out=out, progress=progress, command=command)
            for j in planned]


def _one_thread() -> None:
    """One torch thread, as `--threads 1` sets it (so the policy's refresh leaves it alone): each worker
    process, before anything in it runs torch, and this process for a single run under --jobs."""
    from fortifai_bench import threads

    threads.apply_default(1)


def _side_by_side(planned: list[Job], jobs: int, out, progress: bool, command: str | None) -> list[dict]:
    import concurrent.futures as cf
    import multiprocessing

    from tqdm.auto import tqdm

    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.collapse.run import run_collapse
    from fortifai_bench.distributed import env_world

    if env_world()[0] > 1:
        raise FortifaiError("--jobs > 1 starts its own processes: not under torchrun (use --nproc or --jobs 1)")
    for job in planned:  # the tiny base is pretrained once, here, not by every worker at the same time
        base_model(job.task, progress=progress)
    results: list[dict | None] = [None] * len(planned)
    # spawn, not fork: a forked copy of a process that has run torch can deadlock in its thread pools
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(planned)), mp_context=context,
                                initializer=_one_thread) as pool:
        futures = {pool.submit(run_collapse, j.task, j.spec, j.args, seed=j.seed, out=out, progress=False,
                               command=command): k for k, j in enumerate(planned)}
        bar = tqdm(total=len(planned), desc=f"{len(planned)} runs, {min(jobs, len(planned))} at a time",
                   unit="run", disable=not progress)
        try:
            for future in cf.as_completed(futures):
                k = futures[future]
                results[k] = future.result()  # a run's error (a FortifaiError) is raised here, in one line
                bar.update()
                job = planned[k]
                curve = " ".join(f"{st['score']:.3f}" for st in results[k]["stages"])
                tqdm.write(f"{job.label} seed {job.seed}: KR-split-0 {curve}  ({results[k]['run_dir']})")
        except BaseException:
            for future in futures:
                future.cancel()  # the runs not started yet; those running finish their stage files
            raise
        finally:
            bar.close()
    return results


def _add_comparisons(exp: Experiment) -> None:
    from fortifai_bench.metrics import compare_failures
    from fortifai_bench.results import run_failure

    base = [run_failure(r) for r in exp.groups[exp.baseline]]
    for label, runs in exp.groups.items():
        if label != exp.baseline:
            exp.summaries[label]["vs_baseline"] = {"baseline": exp.baseline,
                                                   **compare_failures([run_failure(r) for r in runs], base)}


def _write_summary(exp: Experiment, out: Path) -> Path:
    from fortifai_bench.io import write_json

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"summary-{exp.task.task}-{stamp}.json"
    write_json(path, {"task": {"name": exp.task.task, "version": exp.task.version},
                      "config_hash": exp.task.config_hash(), "baseline": exp.baseline,
                      "seconds": {"wall": exp.seconds, **exp.phase_seconds()}, "summaries": exp.summaries})
    try:
        from fortifai_bench.collapse.plots import plot_compare

        plot_compare(exp.groups, path.with_suffix(""), exp.task.eval.failure_threshold)
    except ImportError:  # matplotlib missing: the numbers stand without the picture
        pass
    return path


# ------------------------------------------------------------------------------------------ the table

def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


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
        rows += [[f"  {tag}"] + [_fmt(tag_mean(exp.groups[n], i, tag)) for n in names] for tag in tags]
    rows.append(["failure"] + [s[n]["time_to_failure"]["text"] for n in names])
    rows.append(["KM median"] + [_fmt(s[n]["time_to_failure"]["km_median"], 2) for n in names])
    rows.append(["KL split 0, M_last"] + [_cell(s[n]["per_stage"]["kl_split0"], n_stages - 1) for n in names])
    rows.append(["AUC"] + [_fmt(s[n]["auc"]["mean"]) for n in names])
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
    return _fmt(stats[i]["mean"]) if i < len(stats) else "-"


def _versus(v: dict | None) -> str:
    if not v or v.get("ratio") is None:
        return "-"
    from fortifai_bench.metrics import format_p

    p = v.get("p_value")
    return f"{v['ratio']:.2f}x" + (" " + format_p(p, v.get("splits")).replace(" = ", "=") if p is not None else "")
