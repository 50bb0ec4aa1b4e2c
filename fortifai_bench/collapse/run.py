"""One collapse run (one task, one loss, one seed): Algorithm 1 of the ForTIFAI paper, read top to bottom.

    set up      the data and its stage plans (`collapse.plan`, computed once), the loss, M_0, the run
                directory (`rundir.RunDir`: its files, and what a resumed run finds done), the chance level
    for each stage plan i = 0..N:
      train       M_i from M_{i-1} on the stage's pool (`train_stage` -> `train.loop.train` -> a step -> the loss)
      regenerate  M_i rewrites every split of its pool (`regenerate_split` -> `collapse.regenerate`)
      evaluate    everything measured on M_i (`collapse.evaluate`)
      save        its metrics.json, then results.json with the stages so far
    finish      the final results.json and plots

A resumed run skips every phase whose files exist and computes exactly what the uninterrupted run
computes: every phase is seeded by the plan (seed, stage, phase), and the phases after training start
from M_i *as saved on disk*.

The same code runs in one process or in N under torchrun (`fortifai-bench collapse --nproc N`, or
`torchrun ... -m fortifai_bench.collapse`), with no rank logic here: rank 0 alone reads and writes the
run directory (`RunDir`), training is DDP, and regeneration, KR scoring and the stage's forward passes
are shared out and put back in order on every process (`Dist.map_sharded`), so every process holds the
same rows and metrics. A run may be resumed with another number of processes; rewrites depend on (seed,
stage, split, paragraph) only. Model directories are the one thing every process reads from disk: on
several nodes the run folder (--out) must be on a filesystem all of them see.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import time
from typing import Callable

from fortifai_bench.collapse.base import base_model, base_record
from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.corruption import gradient_split, threshold, token_classes, trained_summary
from fortifai_bench.collapse.evaluate import chance, evaluate_stage
from fortifai_bench.collapse.plan import StagePlan, plan
from fortifai_bench.collapse.progress import Board, label
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.regenerate import regenerate
from fortifai_bench.collapse.rundir import Context, RunDir, score_name
from fortifai_bench.distributed import Dist, solo
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.sets import kr_record
from fortifai_bench.losses import load_loss
from fortifai_bench.models import check_options
from fortifai_bench.results import ids_sha256, make_results, runtime
from fortifai_bench.train.loop import train


def run_collapse(task: CollapseTask, loss: str = "ce", loss_args: dict | None = None, *, seed: int | None = None,
                 out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
                 progress: bool | str = True, command: str | None = None,
                 report: Callable[[dict], None] | None = None) -> dict:
    """Run Algorithm 1 for one seed; return the results dict (also written to RUN/results.json). Under
    torchrun, every process calls this and gets the same results.

    `progress`: True draws bars on a terminal (one line per stage otherwise), "lines" one line per stage,
    False nothing. `report`: where the run's progress events go instead (`collapse.progress`; a worker
    process of an experiment sends them to the parent's board)."""
    dist = Dist.start(task.train.device)  # the process group, set up once, serves every run of this process
    board = None
    if report is None and progress and dist.main:
        board = Board([label(task, loss, task.seed if seed is None else seed)], [task.stages], progress)
        report = lambda event: board.update({"run": 0, **event})  # noqa: E731
    try:
        # set up (the phases draw their own bars under the board's)
        ctx = open_context(task, loss, loss_args, seed, out, resume, board is not None and board.bars_on, command,
                           dist)
        ctx.report = report if dist.main else None
        ctx.say(kind="open", run_dir=str(ctx.run.path))
        stages: list[dict] = []
        for p in ctx.plans:
            done = ctx.run.finished(p)
            if done is not None:  # done before: a resumed run's, or copied from an identical run
                stages.append(done)
                ctx.say(kind="stage", stage=p.stage, reused=reused(ctx, p), **summary(done))
                continue
            with stopping(ctx, p, stages):  # an error: one line, and results.json with the stages done
                # train M_i from M_{i-1} on the stage's pool
                if not ctx.run.trained(p):
                    ctx.say(kind="phase", stage=p.stage, phase="train")
                    train_stage(ctx, p)
                # regenerate: M_i as saved (so a resumed run and an uninterrupted one agree exactly) rewrites
                # every split of its pool
                model, tokenizer = ctx.load_model(ctx.run.model_dir(p))
                rewrites: dict[int, list[dict]] = {}
                for k, g in p.pool:
                    if not ctx.run.regenerated(p, k):
                        ctx.say(kind="phase", stage=p.stage, phase="regenerate")
                        regenerate_split(ctx, p, model, tokenizer, k, g)
                    rewrites[k] = ctx.run.written(p.stage, k)
                # evaluate M_i; save its metrics (metrics.json marks the stage done), then results.json
                ctx.say(kind="phase", stage=p.stage, phase="evaluate")
                metrics = evaluate(ctx, p, model, tokenizer, rewrites)
                ctx.run.save_metrics(p, metrics)
            stages.append(metrics)
            ctx.run.write_results(results(ctx, stages))
            ctx.say(kind="stage", stage=p.stage, seconds=metrics["seconds"], **summary(metrics))
        return ctx.run.finish(results(ctx, stages))
    finally:
        if board is not None:
            board.close()


# ------------------------------------------------------------------------------------------ set up

def open_context(task, loss, loss_args, seed, out, resume, progress, command, dist) -> Context:
    """The run's context: checked inputs, the data and its plan, the run directory, M_0, the chance level
    (computed here, or read back when RUN/chance.json exists)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars at every stage drown the protocol's own
    if seed is not None:
        task = dataclasses.replace(task, seed=int(seed))
    checked = load_loss(loss, **(loss_args or {}))
    checked.rehearse()  # a loss that breaks only in backward fails now, before a run folder exists
    check_options(task.model.dtype, task.model.attn_implementation)
    data = load_data(task)  # before creating anything: bad corpus or KR input fails first
    plans = plan(task, [len(split) for split in data.splits])
    run = RunDir.open(task, checked.describe(), dist, out=out, resume=resume, command=command)
    try:
        ctx = Context(task, plans, run, data, checked, dist.on_main(build_base, task, progress), dist, progress,
                      command)
        ctx.chance = chance(ctx)
    except Exception:  # the base model or the chance level failed: a new run's folder holds nothing of use
        if resume is None:
            run.discard()
        raise
    return ctx


def build_base(task: CollapseTask, progress: bool) -> str:
    """M_0's spec; rank 0 alone builds and caches a tiny base (once) while the others wait."""
    with solo():
        return base_model(task, progress=progress)


# ------------------------------------------------------------------------------------------ train

def train_stage(ctx: Context, p: StagePlan) -> None:
    """M_i trained from M_{i-1} on the stage's pool, saved with train.json (what it trained on, its
    history, and where the loss put its gradient: the mask it applied in training per token class, and in
    eval mode with the models that start and end the stage; `collapse.corruption`)."""
    task, dist = ctx.task, ctx.dist
    rows = training_rows(ctx, p)
    texts = [text for text, _, _ in rows]
    model, tokenizer = ctx.load_model(ctx.base_spec if p.previous_model is None
                                      else str(ctx.run.path / p.previous_model))
    classes, facts = training_classes(tokenizer, rows)
    if ctx.progress:
        parts = ", ".join(f"D_{k}^({g})" for k, g in p.pool)
        print(f"stage {p.stage}: training on [{parts}] ({len(texts)} paragraphs, {p.epochs} epochs)", flush=True)
    pairs = rewrite_pairs(ctx, p)
    # corrupted vs faithful tokens, as M_{i-1} and then M_i see them in eval mode: one forward pass, on rank 0
    # and the fresh real split D_i as a pair with itself (every token faithful): the kept rate TCE gives
    # real text, against the rates it gives the regenerated text's corrupted and faithful tokens (issue 19)
    fresh = [(q.text, q.text) for q in ctx.data.splits[p.stage]] if pairs else []
    before = dist.on_main(gradient_split, model, tokenizer, ctx.loss, pairs, task.eval.batch_size, fresh)
    result = train(model, tokenizer, texts, ctx.loss, p.train, progress=ctx.progress, classes=classes)
    after = dist.on_main(gradient_split, result.model, tokenizer, ctx.loss, pairs, task.eval.batch_size, fresh)
    # the mask as trained (issue 26): what the loss applied in every step, tallied per token class
    trained = None if result.tally is None else trained_summary(result.tally, threshold(ctx.loss),
                                                                  facts if pairs else None)
    last = result.history[-1] if result.history else {}
    ctx.run.save_training(p, result.model, tokenizer, {
        "training_data": p.record(), "paragraphs": len(texts), "seconds": result.seconds, "processes": dist.world,
        "summary": {"best_epoch": result.best_epoch, "train_loss": last.get("train_loss"),
                    "val_loss": last.get("val_loss"), "masked_fraction": last.get("masked_fraction"),
                    "mean_p_correct": last.get("mean_p_correct")},
        "history": result.history,
        "gradient": {"trained": trained, "start": before, "end": after},
    })


def training_rows(ctx: Context, p: StagePlan) -> list[tuple[str, object, int]]:
    """(text, the real paragraph it is a generation of, that generation) for every paragraph M_i trains on:
    of each (split, generation) of the pool, those the plan chose."""
    out = []
    for (k, g), chosen in zip(p.pool, p.paragraphs):
        split = [r["text"] for r in ctx.rows(k, g)]
        out += [(split[j], ctx.data.splits[k][j], g) for j in chosen]
    return out


def training_classes(tokenizer, rows: list[tuple[str, object, int]]) -> tuple[list[list[int]], dict]:
    """Every training token's class (`corruption.token_classes`: fresh, faithful or corrupted, and a fact's
    value stated true or false), and how many facts the regenerated paragraphs state true, false or not (None
    on a corpus whose paragraphs record no facts)."""
    classes, facts, known = [], {"true": 0, "false": 0, "missing": 0}, False
    for text, original, g in rows:
        cls, counts = token_classes(tokenizer, original, text, g)
        classes.append(cls)
        if g > 0:
            facts = {k: facts[k] + counts[k] for k in facts}
            known = known or "facts" in (original.meta or {})
    return classes, facts if known else None  # None: the corpus states no facts (not "none stated")


def rewrite_pairs(ctx: Context, p: StagePlan) -> list[tuple[str, str]]:
    """(original, rewritten) texts of every regenerated split stage i trains on."""
    pairs = []
    for k, g in p.pool:
        if g > 0:
            pairs += [(q.text, r["text"]) for q, r in zip(ctx.data.splits[k], ctx.rows(k, g))]
    return pairs


# ------------------------------------------------------------------------------------------ regenerate

def regenerate_split(ctx: Context, p: StagePlan, model, tokenizer, k: int, g: int) -> None:
    """D_k^(g) rewritten by M_i into D_k^(g+1), each process rewriting a share of its paragraphs, longest
    with longest so that every process gets a similar number of tokens. Written with the work done (wall
    seconds; paragraphs, new tokens and seconds per process)."""
    start = time.perf_counter()
    source = ctx.rows(k, g)
    work: dict = {}

    def rewrite(share: list[dict]) -> list[tuple]:
        res = regenerate(model, tokenizer, [r["text"] for r in share], ctx.task.regenerate,
                         seed=p.regenerate_seed(k), keys=[r["id"] for r in share], progress=ctx.progress,
                         desc=f"stage {p.stage} regenerate D_{k}")
        work.update(paragraphs=len(share), new_tokens=res.new_tokens, seconds=res.seconds)
        return [(text, ids, gen.index(True) if True in gen else len(ids))
                for text, ids, gen in zip(res.texts, res.ids, res.generated)]

    done = ctx.dist.map_sharded(rewrite, source, order=sorted(range(len(source)), key=lambda j: len(source[j]["text"])))
    out = [{"id": r["id"], "split": k, "generation": g + 1, "text": text, "ids": ids, "first": first}
           for r, (text, ids, first) in zip(source, done)]
    each = ctx.dist.gather([work.get("paragraphs", 0), work.get("new_tokens", 0), work.get("seconds", 0.0)])
    record = {"seconds": time.perf_counter() - start, "per_process": {
        "paragraphs": [w[0] for w in each], "new_tokens": [w[1] for w in each], "seconds": [w[2] for w in each]}}
    ctx.run.write_split(p, k, out, record)


# ------------------------------------------------------------------------------------------ evaluate

def evaluate(ctx: Context, p: StagePlan, model, tokenizer, rewrites: dict[int, list[dict]]) -> dict:
    """Stage i's metrics.json: everything measured on M_i (`evaluate_stage`), what it trained on and how
    (train.json), and the time each phase took."""
    info = ctx.run.read_training(p)
    work = ctx.run.read_work(p)
    t0 = time.perf_counter()
    metrics = evaluate_stage(ctx, p, model, tokenizer, rewrites)
    metrics["training_data"] = info["training_data"]
    metrics["real_share"] = p.real_share
    metrics["train"] = info["summary"]
    metrics["gradient"] = info.get("gradient")  # corrupted vs faithful tokens and the loss's mask on them
    metrics["seconds"] = {"train": info["seconds"], "regenerate": sum(w["seconds"] for w in work.values()),
                          "evaluate": time.perf_counter() - t0}
    metrics["processes"]["regenerate"] = {k: w["per_process"] for k, w in work.items()}
    return metrics


# ------------------------------------------------------------------------------------------ save

def results(ctx: Context, stages: list[dict], stopped: dict | None = None) -> dict:
    """results.json (contract 5) with the stages done so far; `stopped`: the stage and error that ended it."""
    task = ctx.task
    ids = [q.id for q in ctx.data.questions if q.split == 0]
    return make_results(
        kind="text", task={"name": task.task, "version": task.version}, loss=ctx.loss.describe(),
        model=task.model.name, seed=task.seed, config=task.to_dict(), control=task.mode == "clean",
        score_name=score_name(task), failure_threshold=task.eval.failure_threshold,
        stages=[{k: v for k, v in s.items() if k != "items"} for s in stages],
        items={"split0_ids_sha256": ids_sha256(ids),
               "split0_ids_order": "KR file order",
               "split0_correct": [s["items"]["split0_correct"] for s in stages]},
        complete=stopped is None and len(stages) == task.stages, stopped=stopped,
        kr_source=ctx.data.kr_source, kr=kr_record(ctx.data.kr_source), base=base_record(task, ctx.base_spec),
        runtime=runtime(world_size=ctx.dist.world, device=ctx.dist.device.type, dtype=task.model.dtype),
        chance=ctx.chance, run_dir=str(ctx.run.path), command=ctx.command)


@contextlib.contextmanager
def stopping(ctx: Context, p: StagePlan, stages: list[dict]):
    """Stage i's phases; an error stops the run in one line, recorded in results.json with the stages kept."""
    try:
        try:
            yield
        except OSError as exc:  # e.g. a full disk inside save_pretrained: say it in one line
            if exc.errno != errno.ENOSPC:
                raise
            raise FortifaiError(f"disk full while writing {ctx.run.path / p.folder}") from exc
    except FortifaiError as exc:
        stopped = {"stage": p.stage, "error": str(exc)}
        ctx.run.write_stopped(lambda: results(ctx, stages, stopped))
        kept = f"stages 0..{p.stage - 1} are kept" if p.stage else "no stage finished"
        raise FortifaiError(f"stage {p.stage} stopped: {exc}; {kept} in {ctx.run.path}") from exc


def summary(metrics: dict) -> dict:
    """What the progress board shows of a finished stage."""
    return {k: metrics.get(k) for k in ("score", "score_by_tag", "kr_total", "kl")}


def reused(ctx: Context, p: StagePlan) -> str:
    """Why a stage is done before this process ran it: copied from an identical run, or a resumed run's."""
    source = ctx.run.copied_from(p.folder)
    return f"copied from {source}, the same stage" if source else "done before: resumed"
