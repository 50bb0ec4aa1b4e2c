"""A fast in-process KR scorer that gives lm-eval's `multiple_choice` answers: `score`.

lm-eval scores each choice as its own sequence `context + " " + continuation`; a KR question has two
choices that share the context, so lm-eval runs the context twice and projects every position onto the
vocabulary. Here each question is ONE row, `context + true[:-1] + false[:-1]`, with a 4D attention mask in
which the false continuation does not see the true one and restarts its positions where the context ends
(a two-branch tree, `kr.tree`), so every token the question needs runs once; rows are sorted by length, so
little is padded, and only the positions that predict continuation tokens are projected onto the vocabulary.
A model whose attention does not honour a custom 4D mask (checked once per model class on a few items,
against the path below) or a row too long for it uses the KV-cache path instead (`kr.kvcache`): the
contexts of a batch run once (left-padded, cache kept), the cache is repeated for the two continuations.
Tokenization follows lm-eval's HFLM exactly (`kr.encode`), and so does a context longer than the model's
window: it loses its first tokens (`ScoreResult.truncated` says which questions). The rule that picks an
answer, `sum` or `mean_shorter`, is `kr.methods`; `acc_norm` is always lm-eval's: summed log-likelihood
divided by the continuation's length in characters.

This module holds the result (`ScoreResult`), the batch order and the loop over batches.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from fortifai_bench import threads
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.encode import Item, encode_items, model_window, question_field
from fortifai_bench.kr.kvcache import batch_naive, batch_shared
from fortifai_bench.kr.methods import METHODS, decide, margin
from fortifai_bench.kr.tree import batch_tree, tree_fits, tree_len, tree_mode
from fortifai_bench.metrics import bootstrap_ci
from fortifai_bench.models import cache_argument

__all__ = ["METHODS", "ScoreResult", "score"]


@dataclass
class ScoreResult:
    """Per-question log-likelihoods and the accuracies derived from them (lists are in input order)."""

    method: str
    ids: list[str]
    splits: list[int]
    logp_true: list[float]  # summed log-likelihood of the true continuation (lm-eval's number)
    logp_false: list[float]
    correct: list[bool]  # by the method's rule
    correct_norm: list[bool]  # lm-eval's acc_norm rule (divided by length in characters)
    tokens_true: list[int] = field(repr=False)
    tokens_false: list[int] = field(repr=False)
    truncated: list[bool] = field(default_factory=list, repr=False)  # context cut on the left to fit the window
    margins: list[float] = field(default_factory=list, repr=False)  # by how much true wins (kr.methods.margin)
    acc: float = float("nan")
    acc_norm: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))

    def by_split(self) -> dict[int, float]:
        """Accuracy (method's rule) per split, e.g. {0: 0.98, 1: 0.97, ...}; KR-split-k."""
        totals: dict[int, list[int]] = {}
        for split, ok in zip(self.splits, self.correct):
            t = totals.setdefault(int(split), [0, 0])
            t[0] += int(ok)
            t[1] += 1
        return {k: hits / n for k, (hits, n) in sorted(totals.items())}

    def correct_bits(self) -> str:
        """Correctness as a '0110...' string in input order (compact per-item record for results.json)."""
        return "".join("1" if ok else "0" for ok in self.correct)


def _accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _order(items: list[Item], batch_size: int, shared: bool, tree: bool = False) -> list[int]:
    """Longest first (like lm-eval), by the key that pads least: every padded token costs a full pass.

    Per-sequence scoring pads context + continuation; tree rows pad their whole length. The KV-cache
    path pads the context (pass 1) and the continuations (pass 2, two rows per question) separately, so
    the cheaper of the two orders (by context, by continuation) is taken, computed from the lengths alone.
    """
    idx = range(len(items))
    if tree:
        return sorted(idx, key=lambda i: tree_len(items[i]), reverse=True)
    if not shared:
        return sorted(idx, key=lambda i: len(items[i].ctx) + max(map(len, items[i].conts)), reverse=True)

    def cost(order):
        total = 0
        for s in range(0, len(order), batch_size):
            b = [items[i] for i in order[s : s + batch_size]]
            total += len(b) * (max(len(it.ctx) for it in b) + 2 * max(len(c) for it in b for c in it.conts))
        return total

    by_ctx = sorted(idx, key=lambda i: (len(items[i].ctx), max(map(len, items[i].conts))), reverse=True)
    by_cont = sorted(idx, key=lambda i: (max(map(len, items[i].conts)), len(items[i].ctx)), reverse=True)
    return min(by_ctx, by_cont, key=cost)


def score(
    model,
    tokenizer,
    questions: Iterable[Any],
    *,
    batch_size: int = 64,
    method: str = "sum",
    progress: bool = False,
    shared_context: bool = True,
) -> ScoreResult:
    """Score KR questions (objects or dicts with id, split, context, true, false) with a causal LM.

    `shared_context=False` runs lm-eval's per-sequence computation instead (same numbers, slower); it is
    also used automatically for a model whose forward takes no position_ids or KV cache.
    """
    if method not in METHODS:
        raise FortifaiError(f"unknown scoring method {method!r}: expected one of {', '.join(METHODS)}")
    if batch_size < 1:
        raise FortifaiError(f"batch_size must be at least 1, got {batch_size}")
    questions = list(questions)
    if not questions:
        raise FortifaiError("no questions to score")

    threads.refresh()  # a long CLI run (a collapse stage ends here) adapts its thread count to the load now
    max_length = model_window(model, tokenizer)
    items = encode_items(questions, tokenizer, max_length)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    shared = shared_context and _accepts(model, "position_ids") and _accepts(model, cache_argument(model))
    keep_logits = _accepts(model, "logits_to_keep")

    per_token: list[tuple[list[float], list[float]] | None] = [None] * len(items)
    was_training = model.training
    model.eval()
    try:
        from tqdm.auto import tqdm

        tree = tree_mode(model, items, pad_id, device, keep_logits) if shared else None
        # Longest first (like lm-eval): padding stays small and an out-of-memory error shows at once.
        order = _order(items, batch_size, shared, tree)
        starts = range(0, len(order), batch_size)
        for s in tqdm(starts, desc="KR scoring", unit="batch", disable=not progress):
            idx = order[s : s + batch_size]
            batch = [items[i] for i in idx]
            if tree and tree_fits(batch, max_length):
                rows = batch_tree(model, batch, pad_id, device, tree)
            elif shared:
                rows = batch_shared(model, batch, pad_id, device, keep_logits)
            else:
                rows = batch_naive(model, batch, pad_id, device)
            for i, row in zip(idx, rows):
                per_token[i] = row
    finally:
        model.train(was_training)

    logp_t = [math.fsum(r[0]) for r in per_token]
    logp_f = [math.fsum(r[1]) for r in per_token]
    correct = [decide(method, r[0], r[1]) for r in per_token]
    len_t = [len(str(question_field(q, "true"))) or 1 for q in questions]
    len_f = [len(str(question_field(q, "false"))) or 1 for q in questions]
    correct_norm = [lt / nt >= lf / nf for lt, lf, nt, nf in zip(logp_t, logp_f, len_t, len_f)]
    return ScoreResult(
        method=method,
        ids=[str(question_field(q, "id")) for q in questions],
        splits=[int(question_field(q, "split")) for q in questions],
        logp_true=logp_t,
        logp_false=logp_f,
        correct=correct,
        correct_norm=correct_norm,
        tokens_true=[len(r[0]) for r in per_token],
        tokens_false=[len(r[1]) for r in per_token],
        truncated=[it.cut > 0 for it in items],
        margins=[margin(method, r[0], r[1]) for r in per_token],
        acc=sum(correct) / len(correct),
        acc_norm=sum(correct_norm) / len(correct_norm),
        ci=bootstrap_ci([float(c) for c in correct]),
    )
