"""One collapse run (one task, one loss, one seed): Algorithm 1 as a loop over its stage plans.

For each stage (`collapse.plan`, computed once): train M_i on its pool, let M_i regenerate the pool's
splits, evaluate M_i, save its metrics (`collapse.phases`, `collapse.evaluate`). The run lives in a
resumable run directory (`collapse.rundir`, which also says what each file holds); a resumed run skips
every phase whose files exist and computes exactly what the uninterrupted run computes.

The same code runs in one process or in N under torchrun (`fortifai-bench collapse --nproc N`, or
`torchrun ... -m fortifai_bench.collapse`), with no rank logic here: rank 0 alone reads and writes the
run directory (`rundir`), training is DDP, and regeneration, KR scoring and the stage's forward passes
are shared out and put back in order on every process (`Dist.map_sharded`), so every process holds the
same rows and metrics. A run may be resumed with another number of processes; rewrites depend on (seed,
stage, split, paragraph) only. Model directories are the one thing every process reads from disk: on
several nodes the run folder (--out) must be on a filesystem all of them see.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from pathlib import Path
from typing import Callable

from fortifai_bench.collapse import rundir
from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.plan import StagePlan, plan
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.rundir import Context, read_run_config, slug  # noqa: F401 (the CLI, benchmarks)
from fortifai_bench.errors import FortifaiError


def run_collapse(task: CollapseTask, loss: str = "ce", loss_args: dict | None = None, *, seed: int | None = None,
                 out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
                 progress: bool | str = True, command: str | None = None,
                 report: Callable[[dict], None] | None = None) -> dict:
    """Run Algorithm 1 for one seed; return the results dict (also written to RUN/results.json). Under
    torchrun, every process calls this and gets the same results.

    `progress`: True draws bars on a terminal (one line per stage otherwise), "lines" one line per stage,
    False nothing. `report`: where the run's progress events go instead (`collapse.progress`; a worker
    process of an experiment sends them to the parent's board)."""
    from fortifai_bench.distributed import Dist

    dist = Dist.start(task.train.device)  # the process group, set up once, serves every run of this process
    board = None
    if report is None and progress and dist.main:
        from fortifai_bench.collapse import progress as shown

        board = shown.Board([shown.label(task, loss, task.seed if seed is None else seed)], [task.stages], progress)
        report = lambda event: board.update({"run": 0, **event})  # noqa: E731
    bars = board is not None and board.bars_on  # the phases draw their own bars under the run's
    try:
        ctx = open_context(task, loss, loss_args, seed, out, resume, bars, command, dist)
        ctx.report = report if dist.main else None
        _report(ctx, kind="open", run_dir=str(ctx.run))
        stages: list[dict] = []
        for p in ctx.plans:
            done = rundir.finished(ctx, p)
            if done is not None:
                stages.append(done)
                _report(ctx, kind="stage", stage=p.stage, reused=_reused(ctx, p), **_summary(done))
                continue
            stages.append(_guarded_stage(ctx, p, stages))
            rundir.write_results(ctx, stages)
            _report(ctx, kind="stage", stage=p.stage, seconds=stages[-1]["seconds"], **_summary(stages[-1]))
        return rundir.finish(ctx, stages)
    finally:
        if board is not None:
            board.close()


def _report(ctx: Context, **event) -> None:
    if ctx.report is not None:
        ctx.report(event)


def _summary(metrics: dict) -> dict:
    """What the progress board shows of a finished stage."""
    return {k: metrics.get(k) for k in ("score", "score_by_tag", "kr_total", "kl")}


def _reused(ctx: Context, p: StagePlan) -> str:
    """Why a stage is done before this process ran it: copied from an identical run, or a resumed run's."""
    source = rundir.copied_from(ctx, p.folder)
    return f"copied from {source}, the same stage" if source else "done before: resumed"


def open_context(task, loss, loss_args, seed, out, resume, progress, command, dist) -> Context:
    """The run's context: checked inputs, the data and its plan, the run directory, M_0, the chance level
    (computed here, or read back when RUN/chance.json exists)."""
    from transformers.utils import logging as hf_logging

    from fortifai_bench.collapse.evaluate import chance
    from fortifai_bench.losses import load_loss
    from fortifai_bench.models import check_options

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every stage drown the protocol's own
    if seed is not None:
        task = dataclasses.replace(task, seed=int(seed))
    checked = load_loss(loss, **(loss_args or {}))
    checked.rehearse()  # a loss that breaks only in backward fails now, before a run folder exists
    check_options(task.model.dtype, task.model.attn_implementation)
    data = load_data(task)  # before creating anything: bad corpus or KR input fails first
    plans = plan(task, [len(split) for split in data.splits])
    run = Path(dist.on_main(lambda: str(rundir.open_run(task, checked.describe(), out=out, resume=resume,
                                                         command=command))))
    try:
        ctx = Context(task, plans, run, data, checked, dist.on_main(_build_base, task, progress), dist, progress,
                      command)
        ctx.chance = chance(ctx)
    except Exception:  # the base model or the chance level failed: a new run's folder holds nothing of use
        if resume is None:
            dist.on_main(rundir.discard_unstarted, run)
        raise
    return ctx


def _build_base(task: CollapseTask, progress: bool) -> str:
    """M_0's spec; rank 0 alone builds and caches a tiny base (once) while the others wait."""
    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.distributed import solo

    with solo():
        return base_model(task, progress=progress)


def _guarded_stage(ctx: Context, p: StagePlan, stages: list[dict]) -> dict:
    """One stage; an error stops the run in one line, recorded in results.json with the stages kept."""
    try:
        try:
            return _stage(ctx, p)
        except OSError as exc:  # e.g. a full disk inside save_pretrained: say it in one line
            if exc.errno != errno.ENOSPC:
                raise
            raise FortifaiError(f"disk full while writing {ctx.run / p.folder}") from exc
    except FortifaiError as exc:
        rundir.write_stopped(ctx, stages, {"stage": p.stage, "error": str(exc)})
        kept = f"stages 0..{p.stage - 1} are kept" if p.stage else "no stage finished"
        raise FortifaiError(f"stage {p.stage} stopped: {exc}; {kept} in {ctx.run}") from exc


def _stage(ctx: Context, p: StagePlan) -> dict:
    """Train M_i, regenerate its pool's splits, evaluate it, save its metrics (each phase skipped when a
    killed run finished it)."""
    from fortifai_bench.collapse.evaluate import evaluate_stage
    from fortifai_bench.collapse.phases import load_stage_model, regenerate_split, train_stage

    if not rundir.trained(ctx, p):
        _report(ctx, kind="phase", stage=p.stage, phase="train")
        train_stage(ctx, p)
    info = rundir.read_training(ctx, p)
    # Always continue from the saved model, so a resumed run and an uninterrupted one agree exactly.
    model, tokenizer = load_stage_model(ctx, ctx.run / p.folder / "model")
    new_rows: dict[int, list[dict]] = {}
    for k, g in p.pool:
        if not rundir.regenerated(ctx, p, k):
            _report(ctx, kind="phase", stage=p.stage, phase="regenerate")
            regenerate_split(ctx, p, model, tokenizer, k, g)
        new_rows[k] = rundir.written(ctx, p.stage, k)
    work = rundir.read_work(ctx, p)
    t0 = time.perf_counter()
    _report(ctx, kind="phase", stage=p.stage, phase="evaluate")
    metrics = evaluate_stage(ctx, p, model, tokenizer, new_rows)
    metrics["training_data"] = info["training_data"]
    metrics["real_share"] = p.real_share
    metrics["train"] = info["summary"]
    metrics["gradient"] = info.get("gradient")  # corrupted vs faithful tokens and the loss's mask on them
    metrics["seconds"] = {"train": info["seconds"], "regenerate": sum(w["seconds"] for w in work.values()),
                          "evaluate": time.perf_counter() - t0}
    metrics["processes"]["regenerate"] = {k: w["per_process"] for k, w in work.items()}
    rundir.save_metrics(ctx, p, metrics)
    return metrics
