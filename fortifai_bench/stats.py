"""Tests and their resolution, for verdicts over seeds and over paired questions.

Tests over seeds are exact permutation tests (every split of the seeds into two groups), so a p-value is a
count of splits, never an approximation, and the smallest p a number of seeds can give is known
(`smallest_p`); `paired_permutation_p` is the same test for runs paired by seed; `detectable_difference`
says what difference n seeds resolve at an unadjusted alpha, `holm` adjusts a family of p-values, `ratio_ci`
bounds a ratio of means by the bootstrap (`diff_ci` a difference, `gap_share_ci` a share of a gap), `mcnemar`
compares two models on the same questions. Numbers in, numbers out: `metrics.compare_failures` applies them to
times to failure.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

ALPHA = 0.05  # the level of every verdict over seeds: board ties, better / worse than CE


# ----------------------------------------------------------------------------------------------------------
# Tests over seeds. The unit is a seed; the value is its restricted time min(time to failure, horizon).
# The test is an exact two-sided permutation test on the difference of means: under "the loss makes no
# difference" every split of the n_a + n_b seeds into groups of n_a and n_b is as likely as the observed one,
# so p counts splits (scipy.stats.permutation_test enumerates them). With no ties the smallest p is
# 2 / C(n_a + n_b, n_a): 0.1 for 3 vs 3 seeds (so 3 seeds can never reach 0.05), 2/252 = 0.0079 for 5 vs 5.

MAX_EXACT_SPLITS = 1_000_000  # beyond this (11 vs 11 seeds and up) scipy samples 99,999 splits instead


def n_splits(n_a: int, n_b: int) -> int:
    return math.comb(n_a + n_b, n_a)


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest two-sided p an exact permutation test of n_a vs n_b seeds can give (no ties)."""
    return min(1.0, 2 / n_splits(n_a, n_b))


def _mean_diff(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def permutation_p(a, b) -> float | np.ndarray:
    """Two-sided p of mean(a) - mean(b) over all splits of the pooled values. `a` [.., n_a] and `b`
    [.., n_b] may carry leading dimensions (many data sets tested at once, e.g. a power simulation)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    exact = n_splits(a.shape[-1], b.shape[-1]) <= MAX_EXACT_SPLITS
    res = stats.permutation_test((a, b), _mean_diff, permutation_type="independent", vectorized=True, axis=-1,
                                 n_resamples=np.inf if exact else 99_999, random_state=0)
    return float(res.pvalue) if np.ndim(res.pvalue) == 0 else np.asarray(res.pvalue)


def paired_permutation_p(a, b) -> float | np.ndarray:
    """Two-sided p of mean(a - b) over the 2^n ways of swapping a seed's two values, for runs paired by seed
    (the same seed gives both losses the same base and data order). `a` and `b` [.., n]; the smallest p is
    2 / 2^n (1/16 for 5 seeds: a paired test needs 6 seeds to reach 0.05 at all)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    exact = 2 ** a.shape[-1] <= MAX_EXACT_SPLITS
    res = stats.permutation_test((a, b), _mean_diff, permutation_type="samples", vectorized=True, axis=-1,
                                 n_resamples=np.inf if exact else 99_999, random_state=0)
    return float(res.pvalue) if np.ndim(res.pvalue) == 0 else np.asarray(res.pvalue)


def _mean_ratio(a, b, axis=-1):
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def ratio_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 9999,
             seed: int = 0, paired: bool = False) -> list:
    """Percentile bootstrap interval of mean(a) / mean(b), resampling each side's seeds
    (scipy.stats.bootstrap, fixed seed); `paired`: resampling the seeds' pairs (a[i], b[i]) together. Two
    constant sides give the point; fewer than 2 seeds a side, None."""
    if len(b) and np.mean(b) == 0:
        return [None, None]
    return _bootstrap_ci(_mean_ratio, (a, b), level, n_boot, seed, paired)


def diff_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 9999,
            seed: int = 0, paired: bool = False) -> list:
    """`ratio_ci` for mean(a) - mean(b)."""
    return _bootstrap_ci(_mean_diff, (a, b), level, n_boot, seed, paired)


def _gap_share(x, ce, control, axis=-1):
    base = np.mean(ce, axis=axis)
    return (np.mean(x, axis=axis) - base) / (np.mean(control, axis=axis) - base)


def gap_share_ci(x: Sequence[float], ce: Sequence[float], control: Sequence[float], level: float = 0.95,
                 n_boot: int = 9999, seed: int = 0) -> list:
    """Percentile bootstrap interval of (mean(x) - mean(ce)) / (mean(control) - mean(ce)), each group's values
    resampled on their own (`metrics.gap_recovered`). A resample whose CE and control means tie has no share (its
    ratio is infinite): AUCs are multiples of one question over the stages, so ties happen, and the percentiles
    take those resamples as the extremes they are, silently (numpy would warn once per call)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _bootstrap_ci(_gap_share, (x, ce, control), level, n_boot, seed)


def _bootstrap_ci(statistic, groups: tuple, level: float, n_boot: int, seed: int, paired: bool = False) -> list:
    """Percentile bootstrap interval of `statistic` over the groups' values (each group resampled on its own,
    or, `paired`, the groups' values together by position); no interval under two values a group."""
    from scipy import stats

    samples = [np.asarray(v, float) for v in groups]
    if any(len(v) < 2 for v in samples):
        return [None, None]
    if all(np.ptp(v) == 0 for v in samples):
        r = float(statistic(*samples))
        return [r, r]
    res = stats.bootstrap(samples, statistic, vectorized=True, paired=paired, method="percentile",
                          n_resamples=n_boot, confidence_level=level, random_state=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def format_number(x: float | None, digits: int = 3) -> str:
    """A score or time as tables and progress lines print it: `digits` decimals, "-" when there is none
    (None, or NaN: a value that could not be computed)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_p(p: float | None, splits: int | None = None) -> str:
    """'p = 0.0079'; a p of 0 (impossible for an exact test, which counts the observed split) is shown as
    the resolution 'p < 1/N' rather than as 0."""
    if p is None:
        return "p = -"
    if p <= 0:
        return f"p < 1/{splits}" if splits else "p < 1e-16"
    return f"p = {p:.2g}"


def holm(pvalues: Sequence[float | None], untested: int = 0) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out of the family). An
    adjusted p < alpha rejects with family-wise error <= alpha, whatever the dependence between tests.
    `untested`: members of the family planned but without a p yet, counted at p = 1 (they sort last, so the
    given p-values are adjusted over the whole planned family)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    size = len(tested) + untested
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (size - rank) * p))
        out[i] = running
    return out


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = 0.8, n_sims: int = 2000,
                          seed: int = 0) -> float:
    """The difference in mean time to failure that n vs n seeds detect with the given `power` in the exact
    two-sided permutation test at `alpha`, when seeds' times are normal with standard deviation `sd`.
    Simulated (fixed seed, `n_sims` data sets, the same draws for every difference tried). The test only
    sees the values up to shift and scale, so the answer is `sd` times a number that depends on n alone.
    math.inf when n seeds cannot reach `alpha` at all (`smallest_p(n, n)` >= alpha, e.g. n = 3)."""
    return float(sd * detectable_effect(n, alpha, power, n_sims, seed))


@lru_cache(maxsize=64)
def detectable_effect(n: int, alpha: float = ALPHA, power: float = 0.8, n_sims: int = 2000, seed: int = 0) -> float:
    """`detectable_difference` in units of the seed standard deviation."""
    if smallest_p(n, n) >= alpha:
        return math.inf
    z = np.random.default_rng(seed).standard_normal((2, n_sims, n))

    def power_at(effect: float) -> float:
        return float(np.mean(permutation_p(z[0] + effect, z[1]) < alpha))

    lo, hi = 0.0, 1.0
    while power_at(hi) < power:
        lo, hi = hi, 2 * hi
    for _ in range(8):  # bisection to 1/256 of the bracket, finer than the simulation's own noise
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if power_at(mid) < power else (lo, mid)
    return hi


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """Exact McNemar test on paired 0/1 outcomes (the same questions answered by two models)."""
    from scipy.stats import binomtest

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length: {a.size} vs {b.size}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "n": int(a.size), "p_value": p}
