"""The two phases of a stage that make something: training M_i on its pool, and M_i rewriting a split.

Each takes the run's `rundir.Context` and the stage's `plan.StagePlan`, and leaves its files in the run
directory (`rundir`: model and train.json; split_<k>.jsonl and its work record), so that a resumed run
skips it. Every phase is seeded by the plan (seed, stage, phase), and a stage's later phases start from
its model *as saved on disk*, so a run killed at any moment and resumed computes exactly what the
uninterrupted run computes. Under torchrun, training is DDP (`train.train`); a rewrite is shared out
paragraph by paragraph (`Dist.map_sharded`; every paragraph's sampling seed is its own, so the share
does not change a rewrite); the corruption measure runs on rank 0.
"""

from __future__ import annotations

import os
import time

from fortifai_bench.collapse import rundir
from fortifai_bench.collapse.plan import StagePlan
from fortifai_bench.collapse.rundir import Context


def load_stage_model(ctx: Context, spec: str | os.PathLike):
    """A model of the run (the base or a stage's directory) with the task's loading options, on this
    process's device."""
    from fortifai_bench.models import load_model

    m = ctx.task.model
    model, tokenizer = load_model(spec, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                  revision=m.revision if str(spec) == m.name else None)
    return model.to(ctx.dist.device), tokenizer


def training_texts(ctx: Context, p: StagePlan) -> list[str]:
    """The paragraphs M_i trains on: of each (split, generation) of the pool, those the plan chose."""
    return [text for text, _, _ in training_rows(ctx, p)]


def training_rows(ctx: Context, p: StagePlan) -> list[tuple[str, object, int]]:
    """(text, the real paragraph it is a generation of, that generation) for every paragraph M_i trains on."""
    out = []
    for (k, g), chosen in zip(p.pool, p.paragraphs):
        split = [r["text"] for r in rundir.rows(ctx, k, g)]
        out += [(split[j], ctx.data.splits[k][j], g) for j in chosen]
    return out


def training_classes(tokenizer, rows: list[tuple[str, object, int]]) -> tuple[list[list[int]], dict]:
    """Every training token's class (`corruption.token_classes`: fresh, faithful or corrupted, and a fact's
    value stated true or false), and how many facts the regenerated paragraphs state true, false or not."""
    from fortifai_bench.collapse.corruption import token_classes

    classes, facts = [], {"true": 0, "false": 0, "missing": 0}
    for text, original, g in rows:
        cls, counts = token_classes(tokenizer, original, text, g)
        classes.append(cls)
        if g > 0:
            facts = {k: facts[k] + counts[k] for k in facts}
    return classes, facts


def rewrite_pairs(ctx: Context, p: StagePlan) -> list[tuple[str, str]]:
    """(original, rewritten) texts of every regenerated split stage i trains on."""
    pairs = []
    for k, g in p.pool:
        if g > 0:
            pairs += [(q.text, r["text"]) for q, r in zip(ctx.data.splits[k], rundir.rows(ctx, k, g))]
    return pairs


def train_stage(ctx: Context, p: StagePlan) -> None:
    """M_i trained from M_{i-1} on the stage's pool, saved with train.json (what it trained on, its
    history, and where the loss put its gradient: the mask it applied in training per token class, and in
    eval mode with the models that start and end the stage; `collapse.corruption`)."""
    from fortifai_bench.collapse.corruption import gradient_split, threshold, trained_summary
    from fortifai_bench.train import train

    task, dist = ctx.task, ctx.dist
    rows = training_rows(ctx, p)
    texts = [text for text, _, _ in rows]
    model, tokenizer = load_stage_model(ctx, ctx.base_spec if p.previous_model is None
                                        else str(ctx.run / p.previous_model))
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
    rundir.save_training(ctx, p, result.model, tokenizer, {
        "training_data": p.record(), "paragraphs": len(texts), "seconds": result.seconds, "processes": dist.world,
        "summary": {"best_epoch": result.best_epoch, "train_loss": last.get("train_loss"),
                    "val_loss": last.get("val_loss"), "masked_fraction": last.get("masked_fraction"),
                    "mean_p_correct": last.get("mean_p_correct")},
        "history": result.history,
        "gradient": {"trained": trained, "start": before, "end": after},
    })


def regenerate_split(ctx: Context, p: StagePlan, model, tokenizer, k: int, g: int) -> None:
    """D_k^(g) rewritten by M_i into D_k^(g+1), each process rewriting a share of its paragraphs, longest
    with longest so that every process gets a similar number of tokens. Written with the work done (wall
    seconds; paragraphs, new tokens and seconds per process)."""
    from fortifai_bench.collapse.regenerate import regenerate

    start = time.perf_counter()
    source = rundir.rows(ctx, k, g)
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
    rundir.write_split(ctx, p, k, out, record)
