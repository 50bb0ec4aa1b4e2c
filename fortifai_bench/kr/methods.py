"""The rules that pick a KR question's answer from the two continuations' per-token log-probabilities.

A named choice, never a silent one (`eval.kr_method` of a collapse task, checked against `METHODS`):

- `sum` (lm-eval's `acc`): the true continuation wins when its summed log-likelihood is at least the
  false one's (ties go to the true one, as lm-eval's argmax picks the first choice).
- `mean_shorter` (the paper's code): mean per-token log-probability over the first n tokens of each
  continuation, n = the shorter continuation's token count.

Needs no torch, so a task's config can check its method without loading a model.
"""

from __future__ import annotations

import math

METHODS = ("sum", "mean_shorter")


def decide(method: str, lp_t: list[float], lp_f: list[float]) -> bool:
    """Whether the true continuation wins under `method` (see module doc)."""
    if method == "sum":
        return math.fsum(lp_t) >= math.fsum(lp_f)
    n = min(len(lp_t), len(lp_f))
    return math.fsum(lp_t[:n]) / n >= math.fsum(lp_f[:n]) / n


def margin(method: str, lp_t: list[float], lp_f: list[float]) -> float:
    """By how much the true continuation wins under `method` (negative: it loses), in the quantity `decide`
    compares: how close a question is to flipping (`verify`: a float rounding can flip a near tie)."""
    if method == "sum":
        return math.fsum(lp_t) - math.fsum(lp_f)
    n = min(len(lp_t), len(lp_f))
    return math.fsum(lp_t[:n]) / n - math.fsum(lp_f[:n]) / n
