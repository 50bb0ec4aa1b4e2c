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
import math
import os
import time
from pathlib import Path

from fortifai_bench.collapse import rundir
from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.plan import StagePlan, plan
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.rundir import Context, read_run_config, slug  # noqa: F401 (the CLI, benchmarks)
from fortifai_bench.errors import FortifaiError


def run_collapse(task: CollapseTask, loss: str = "ce", loss_args: dict | None = None, *, seed: int | None = None,
                 out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
                 progress: bool = True, command: str | None = None) -> dict:
    """Run Algorithm 1 for one seed; return the results dict (also written to RUN/results.json). Under
    torchrun, every process calls this and gets the same results."""
    from fortifai_bench.distributed import Dist

    dist = Dist.start(task.train.device)  # the process group, set up once, serves every run of this process
    ctx = _open(task, loss, loss_args, seed, out, resume, progress and dist.main, command, dist)
    from tqdm.auto import tqdm

    stages: list[dict] = []
    for p in tqdm(ctx.plans, desc=f"{ctx.task.task} {ctx.loss.spec} seed {ctx.task.seed}", unit="stage",
                  disable=not ctx.progress):
        done = rundir.finished(ctx, p)
        if done is not None:
            stages.append(done)
            continue
        stages.append(_guarded_stage(ctx, p, stages))
        rundir.write_results(ctx, stages)
    return rundir.finish(ctx, stages)


def _open(task, loss, loss_args, seed, out, resume, progress, command, dist) -> Context:
    """The run's context: checked inputs, the data and its plan, the run directory, M_0, the chance level."""
    from transformers.utils import logging as hf_logging

    from fortifai_bench.collapse.evaluate import chance
    from fortifai_bench.losses import load_loss
    from fortifai_bench.models import check_options

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every stage drown the protocol's own
    if seed is not None:
        task = dataclasses.replace(task, seed=int(seed))
    checked = load_loss(loss, **(loss_args or {}))
    check_options(task.model.dtype, task.model.attn_implementation)
    data = load_data(task)  # before creating anything: bad corpus or KR input fails first
    plans = plan(task, [len(split) for split in data.splits])
    run = Path(dist.on_main(lambda: str(rundir.open_run(task, checked.describe(), out=out, resume=resume,
                                                         command=command))))
    ctx = Context(task, plans, run, data, checked, dist.on_main(_build_base, task, progress), dist, progress, command)
    if progress:
        print(f"collapse run: {run}" + (f" ({dist.world} processes)" if dist.world > 1 else ""), flush=True)
    ctx.chance = chance(ctx)
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
        train_stage(ctx, p)
    info = rundir.read_training(ctx, p)
    # Always continue from the saved model, so a resumed run and an uninterrupted one agree exactly.
    model, tokenizer = load_stage_model(ctx, ctx.run / p.folder / "model")
    new_rows: dict[int, list[dict]] = {}
    for k, g in p.pool:
        if not rundir.regenerated(ctx, p, k):
            regenerate_split(ctx, p, model, tokenizer, k, g)
        new_rows[k] = rundir.written(ctx, p.stage, k)
    work = rundir.read_work(ctx, p)
    t0 = time.perf_counter()
    metrics = evaluate_stage(ctx, p, model, tokenizer, new_rows)
    metrics["training_data"] = info["training_data"]
    metrics["real_share"] = p.real_share
    metrics["train"] = info["summary"]
    metrics["gradient"] = info.get("gradient")  # corrupted vs faithful tokens and the loss's mask on them
    metrics["seconds"] = {"train": info["seconds"], "regenerate": sum(w["seconds"] for w in work.values()),
                          "evaluate": time.perf_counter() - t0}
    metrics["processes"]["regenerate"] = {k: w["per_process"] for k, w in work.items()}
    rundir.save_metrics(ctx, p, metrics)
    if ctx.progress:
        s = metrics["seconds"]
        print(f"stage {p.stage}: KR-split-0 {_fmt(metrics['score'])}{_tag_columns(metrics)}  "
              f"KR-total {_fmt(metrics['kr_total'])}  KL {_fmt(metrics['kl'])}  train {s['train']:.1f}s  "
              f"regenerate {s['regenerate']:.1f}s  evaluate {s['evaluate']:.1f}s", flush=True)
    return metrics


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _tag_columns(metrics: dict) -> str:
    """KR-split-0 per tag ("  mode 0.958  tail 0.885") for a tagged KR set; nothing for an untagged one."""
    return "".join(f"  {tag} {_fmt(score)}" for tag, score in (metrics.get("score_by_tag") or {}).items())
