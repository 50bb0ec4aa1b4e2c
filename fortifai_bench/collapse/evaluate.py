"""What the protocol measures on M_i after it has regenerated the stage's splits.

* KR for every split, KR-total (all splits' questions), KR over the splits trained on so far, and the
  per-question bits of split 0 (for paired tests between runs). A tagged KR set (`facts-longtail`: "mode"
  and "tail" questions) adds KR per tag and split (`kr_by_tag`, `score_by_tag` for split 0); an untagged
  set adds nothing, so its records are unchanged.
* Perplexity on held-out real text the model never trained on.
* KL(original || generated) of token unigrams and bigrams (`metrics.ngram_kl`: additive smoothing of
  1e-6 per count over the union support), between the real splits and this stage's rewrite of them;
  distinct-1/2/3 of the rewrite.
* Confidence (the model's probability of the next token), the paper's Fig. 1 contrasts (Sec. 2.1.1): on
  the tokens M_i generated itself (its rewrite of the pool), on the real text it trained on (the real
  splits of its pool) and on unseen real text (held out): mean, share above gamma (the loss's TCE
  threshold, else 0.9) and a histogram, in eval mode (dropout off, as the model generates); and the same
  means and shares in train mode (`train_mode`: dropout on, one draw from the stage's own seed, so the
  run's random stream is untouched), the mode in which TCE's mask is applied. A model without dropout
  (SmolLM2) gives the same numbers in both modes, so they are copied rather than computed twice.
* Optional lm-eval tasks (e.g. blimp, hellaswag) on the stage's saved model directory.

Every function here takes the run's `rundir.Context` (task, data, processes) and, for one stage, its
`plan.StagePlan` (the splits seen so far, the stage's folder). Under torchrun every process runs
`evaluate_stage` on a strided share of the KR questions and of the sequences it scores
(`Dist.map_sharded`), and gets every result back in order, so all processes hold the same metrics; the
per-process counts are in ``metrics["processes"]``. lm-eval runs on rank 0.
"""

from __future__ import annotations

import math

import torch

from fortifai_bench.collapse.corruption import threshold
from fortifai_bench.collapse.plan import StagePlan, stage_seed
from fortifai_bench.collapse.probs import token_probs
from fortifai_bench.collapse.rundir import Context
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.quality import length_bias
from fortifai_bench.kr.scoring import score
from fortifai_bench.metrics import confidence_summary, distinct_n, ngram_kl
from fortifai_bench.models import has_dropout
from fortifai_bench.resources import tasks_dir


def kl_floor(ctx: Context, tokenizer) -> dict:
    """What `kl_split0` reads when nothing drifted: the unigram KL between real texts of one distribution,
    measured the same way (same smoothing). `halves`: the two halves of split 0 (half the text, so a
    higher floor); `split1`: split 0 against split 1, an equally large real sample of other paragraphs."""
    special = set(tokenizer.all_special_ids)
    ids = [[_strip_special(tokenizer(p.text)["input_ids"], special) for p in split] for split in ctx.data.splits]
    half = len(ids[0]) // 2
    return {"halves": ngram_kl(ids[0][:half], ids[0][half:], 1) if half else None,
            "split1": ngram_kl(ids[0], ids[1], 1) if len(ids) > 1 else None}


def _strip_special(ids: list[int], special: set[int]) -> list[int]:
    return [t for t in ids if t not in special]


def sharded_token_probs(dist, model, sequences: list[list[int]], batch_size: int) -> list[list[float]]:
    """`token_probs` with every process scoring a strided share; the whole list, in order, everywhere."""
    return dist.map_sharded(lambda mine: token_probs(model, mine, batch_size), sequences)


def evaluate_stage(ctx: Context, p: StagePlan, model, tokenizer, new_rows: dict[int, list[dict]]) -> dict:
    """Everything measured on M_i, given its rewrite of each split of its pool (`new_rows`)."""
    task, dist, data = ctx.task, ctx.dist, ctx.data
    special = set(tokenizer.all_special_ids)
    metrics: dict = {"stage": p.stage}
    metrics.update(_kr(ctx, model, tokenizer, p))

    # held-out real text: perplexity and confidence on unseen text
    heldout_ids = [tokenizer(t)["input_ids"] for t in data.heldout]
    heldout_p = [x for row in sharded_token_probs(dist, model, heldout_ids, task.eval.batch_size) for x in row]
    nll = -sum(math.log(max(x, 1e-45)) for x in heldout_p) / len(heldout_p) if heldout_p else float("nan")
    metrics["perplexity"] = math.exp(nll) if heldout_p else None
    metrics["heldout_nll"] = nll if heldout_p else None

    # the rewrite of this stage: drift from the real splits, diversity, confidence on own tokens
    splits = sorted(new_rows)
    generated = [_strip_special(r["ids"], special) for k in splits for r in new_rows[k]]
    original = [_strip_special(tokenizer(q.text)["input_ids"], special) for k in splits for q in data.splits[k]]
    metrics["regenerated_splits"] = splits
    metrics["kl"] = ngram_kl(original, generated, 1)
    metrics["kl_bigram"] = ngram_kl(original, generated, 2)
    split0 = [k for k in splits if k == 0]
    if split0:
        gen0 = [_strip_special(r["ids"], special) for r in new_rows[0]]
        orig0 = [_strip_special(tokenizer(q.text)["input_ids"], special) for q in data.splits[0]]
        metrics["kl_split0"] = ngram_kl(orig0, gen0, 1)
    metrics["kl_floor"] = kl_floor(ctx, tokenizer)
    for n in (1, 2, 3):
        metrics[f"distinct_{n}"] = distinct_n(generated, n)
    rows = [r for k in splits for r in new_rows[k]]
    metrics["confidence"] = _confidence(ctx, p, model, tokenizer, rows, heldout_ids, heldout_p)
    if task.eval.lm_eval_tasks:
        metrics["lm_eval"] = dist.on_main(run_lm_eval, ctx.run.model_dir(p), task.eval.lm_eval_tasks,
                                          task.eval.batch_size, model, tokenizer)
    share = lambda n: [len(range(r, n, dist.world)) for r in range(dist.world)]  # noqa: E731
    metrics["processes"] = {"world": dist.world, "kr_questions": share(len(data.questions)),
                            "scored_sequences": share(len(heldout_ids) + len(rows))}
    return metrics


def _confidence(ctx: Context, p: StagePlan, model, tokenizer, rows: list[dict], heldout_ids: list[list[int]],
                heldout_p: list[float]) -> dict:
    """The Fig. 1 contrasts (see module doc): M_i's confidence on its own rewrite (`own_generated`: the tokens
    it generated, from each row's `first`), on the real text of its pool (`trained_real`) and on held-out
    real text (`unseen_real`), in eval mode, then in train mode."""
    dist, batch, bins = ctx.dist, ctx.task.eval.batch_size, ctx.task.eval.confidence_bins
    gamma = threshold(ctx.loss)
    real_ids = [tokenizer(ctx.data.splits[k][j].text)["input_ids"]
                for (k, g), chosen in zip(p.pool, p.paragraphs) if g == 0 for j in chosen]
    own_ids = [r["ids"] for r in rows]

    def own(probs):  # probs[j][t - 1] is p(ids[t]); generated tokens are those at positions >= first
        return [x for r, ps in zip(rows, probs) for x in ps[max(r["first"] - 1, 0):]]

    def flat(probs):
        return [x for ps in probs for x in ps]

    def summary(x: list[float], hist: bool = True) -> dict:
        out = {**confidence_summary(x, bins), "share_above_gamma": _share_above(x, gamma)}
        return out if hist else {k: out[k] for k in ("n", "mean", "share_above_gamma")}

    out = {"gamma": gamma, "mode": "eval",
           "own_generated": summary(own(sharded_token_probs(dist, model, own_ids, batch))),
           "trained_real": summary(flat(sharded_token_probs(dist, model, real_ids, batch))),
           "unseen_real": summary(heldout_p)}
    if not has_dropout(model):  # train mode computes what eval mode did, to the bit: no second pass
        out["train_mode"] = {k: {m: out[k][m] for m in ("n", "mean", "share_above_gamma")}
                             for k in ("own_generated", "trained_real", "unseen_real")}
        return out
    # train mode: one dropout draw of its own (fork_rng restores the run's generator afterwards)
    devices = [dist.device] if dist.device.type == "cuda" else []
    was_training = model.training
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(stage_seed(ctx.task.seed, p.stage, "confidence"))
        model.train()
        try:
            out["train_mode"] = {
                "own_generated": summary(own(sharded_token_probs(dist, model, own_ids, batch)), hist=False),
                "trained_real": summary(flat(sharded_token_probs(dist, model, real_ids, batch)), hist=False),
                "unseen_real": summary(flat(sharded_token_probs(dist, model, heldout_ids, batch)), hist=False)}
        finally:
            model.train(was_training)
    return out


def _share_above(x: list[float], gamma: float) -> float | None:
    """The share of probabilities above `gamma`: what TCE(gamma) masks."""
    return sum(1 for v in x if v > gamma) / len(x) if x else None


def chance(ctx: Context) -> dict | None:
    """What KR-split-0 reads without knowledge: how often true is the longer continuation (characters and
    the model's tokens), the best length-only guesser, and the base model M_{-1}'s own KR before any
    stage trained it. Computed once per run (RUN/chance.json)."""
    questions = ctx.data.questions
    if not questions:
        return None

    def compute() -> dict:
        model, tokenizer = ctx.load_model(ctx.base_spec)
        base = kr_scores(ctx, model, tokenizer)
        return {"length_bias_split0": length_bias([q for q in questions if q.split == 0], tokenizer),
                "base_model": {"kr_split0": base["score"], "kr_total": base["kr_total"],
                               # a tagged set: the base's prior per tag (facts-longtail: above 0.5 on mode,
                               # below on tail)
                               **({"kr_split0_by_tag": base["score_by_tag"]} if "score_by_tag" in base else {})}}

    return ctx.run.once("chance.json", compute)


def kr_scores(ctx: Context, model, tokenizer) -> dict:
    """KR of `model` on every split's questions: score (split 0), kr_total, per split."""
    return _kr(ctx, model, tokenizer, None)


def _kr(ctx: Context, model, tokenizer, p: StagePlan | None) -> dict:
    task = ctx.task
    questions = ctx.data.questions
    if task.eval.kr_splits == "first":  # split 0 only (config.EvalSettings.kr_splits)
        questions = [q for q in questions if q.split == 0]
    if not questions:
        return {"score": None, "kr": {}, "kr_total": None, "kr_seen": None, "items": {"split0_correct": ""}}

    def scored(mine):
        res = score(model, tokenizer, mine, batch_size=task.eval.batch_size, method=task.eval.kr_method,
                    progress=ctx.progress)
        return list(zip(res.correct, res.truncated))

    correct, truncated = zip(*ctx.dist.map_sharded(scored, questions))
    by_split: dict[int, list[bool]] = {}
    for q, c in zip(questions, correct):
        by_split.setdefault(q.split, []).append(bool(c))
    kr = {str(k): sum(v) / len(v) for k, v in sorted(by_split.items())}
    seen = set(p.seen) if p is not None else set()
    seen_bits = [c for k, v in by_split.items() if k in seen for c in v]
    bits = "".join("1" if c else "0" for q, c in zip(questions, correct) if q.split == 0)
    out = {
        "score": kr.get("0"),
        "kr": kr,
        "kr_total": sum(correct) / len(correct) if task.eval.kr_splits == "all" else None,
        "kr_seen": sum(seen_bits) / len(seen_bits) if seen_bits else None,
        "kr_questions": {str(k): len(v) for k, v in sorted(by_split.items())},
        "items": {"split0_correct": bits},
    }
    if any(truncated):  # contexts longer than the model's window, cut on the left (kr.encode); a set that
        out["kr_truncated"] = sum(truncated)  # fits adds nothing, so its records are unchanged
    out.update(_by_tag(questions, correct))
    tag = task.eval.score_tag
    if tag is not None:
        if (out.get("score_by_tag") or {}).get(tag) is None:
            raise FortifaiError(f"eval.score_tag={tag!r}: the KR set has no split-0 question tagged {tag!r} "
                                f"(tags: {', '.join(sorted(out.get('score_by_tag') or {})) or 'none'})")
        out["score"] = out["score_by_tag"][tag]
    return out


def _by_tag(questions, correct) -> dict:
    """KR per tag and split, and per tag on split 0, for a tagged set; {} for an untagged one. An untagged
    question in a tagged set counts in KR but in no tag."""
    cells: dict[str, dict[int, list[bool]]] = {}
    for q, c in zip(questions, correct):
        if q.tag is not None:
            cells.setdefault(q.tag, {}).setdefault(q.split, []).append(bool(c))
    if not cells:
        return {}
    kr = {t: {str(k): sum(v) / len(v) for k, v in sorted(by.items())} for t, by in sorted(cells.items())}
    return {"kr_by_tag": kr, "score_by_tag": {t: by.get("0") for t, by in kr.items()},
            "kr_questions_by_tag": {t: {str(k): len(v) for k, v in sorted(by.items())}
                                    for t, by in sorted(cells.items())}}


def run_lm_eval(model_dir, tasks: list[str], batch_size: int, model=None, tokenizer=None) -> dict:
    """lm-eval's own harness on the stage's saved model (our kr_* tasks are found in tasks_dir()).

    With `model` (the stage's model, already loaded), lm-eval wraps it instead of loading `model_dir` again;
    that is also how it runs on rank 0 alone under torchrun: given a built model, lm-eval's HFLM sets up no
    process group of its own (it would otherwise wait for the other ranks through accelerate)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_dir()))
    if model is not None:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager)
    else:
        out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}", tasks=list(tasks),
                                      batch_size=batch_size, task_manager=manager, device="cpu"
                                      if not torch.cuda.is_available() else None)
    results = {}
    for name, row in (out or {}).get("results", {}).items():
        results[name] = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return results
