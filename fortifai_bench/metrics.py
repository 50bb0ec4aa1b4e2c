"""Statistics shared by KR scoring, the collapse protocol, the toys and the leaderboard.

Confidence intervals are percentile bootstraps with a fixed seed, so a result file is reproducible.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.75  # half of the gain above chance (0.5) on a two-choice test


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (e.g. 0/1 correctness of KR questions)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean and t-interval over seeds; one seed gives a degenerate interval."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci": [None, None], "n": 0}
    m = float(x.mean())
    if x.size == 1 or float(x.std(ddof=1)) == 0.0:
        return {"mean": m, "ci": [m, m], "n": int(x.size)}
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": m, "ci": [m - half, m + half], "n": int(x.size)}


def time_to_failure(scores: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> float | None:
    """First stage at which `scores` fall below `threshold`, linearly interpolated; None if never.

    Stage i has score scores[i]. If scores[0] is already below, the failure time is 0.
    """
    for i, s in enumerate(scores):
        if s < threshold:
            if i == 0:
                return 0.0
            prev = scores[i - 1]
            return float(i - 1 + (prev - threshold) / (prev - s))
    return None


def area_under_curve(scores: Sequence[float]) -> float:
    """Trapezoidal area under a per-stage curve, divided by the number of intervals (so in [0, 1] for accuracies)."""
    y = np.asarray(scores, dtype=float)
    if y.size < 2:
        return float(y[0]) if y.size else float("nan")
    return float(((y[1:] + y[:-1]) / 2).mean())


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


# ----------------------------------------------------------------------------------------------------------
# Collapse metrics: how far generated text drifts from the original (KL of n-gram distributions), how
# diverse it is (distinct-n), and how confident a model is on tokens (the paper's Fig. 1).

KL_EPSILON = 1e-6  # additive smoothing of every n-gram count over the union support (see ngram_kl)


def _ngrams(sequences, n: int):
    from collections import Counter

    counts = Counter()
    for seq in sequences:
        seq = list(seq)
        counts.update(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))
    return counts


def ngram_kl(original, generated, n: int = 1, epsilon: float = KL_EPSILON) -> float:
    """KL(original || generated) of token n-gram distributions, in nats.

    `original` and `generated` are iterables of token-id sequences. Zeros: both distributions are
    taken over the UNION of the n-grams seen in either, and `epsilon` is added to every count before
    normalizing (additive smoothing), so an n-gram the generated text never produces costs
    log(p / (epsilon / total)) instead of infinity. Empty input on either side gives nan.
    """
    p_counts, q_counts = _ngrams(original, n), _ngrams(generated, n)
    if not p_counts or not q_counts:
        return float("nan")
    support = list(set(p_counts) | set(q_counts))
    p = np.array([p_counts.get(g, 0) for g in support], dtype=float) + epsilon
    q = np.array([q_counts.get(g, 0) for g in support], dtype=float) + epsilon
    p /= p.sum()
    q /= q.sum()
    return float(np.sum(p * (np.log(p) - np.log(q))))


def distinct_n(sequences, n: int = 2) -> float:
    """Distinct n-grams divided by all n-grams (Li et al. 2016) over `sequences`; nan if none."""
    counts = _ngrams(sequences, n)
    total = sum(counts.values())
    return float(len(counts) / total) if total else float("nan")


def confidence_summary(probs: Sequence[float], bins: int = 20) -> dict:
    """Summary and histogram of per-token probabilities of the next token (values in [0, 1]).

    Returns mean, median, the fraction above 0.9 (what TCE(0.9) would mask) and the histogram
    (`bins` equal-width bins on [0, 1]: edges and counts) for plotting.
    """
    x = np.asarray(probs, dtype=float)
    counts, edges = np.histogram(x, bins=bins, range=(0.0, 1.0))
    if x.size == 0:
        return {"n": 0, "mean": None, "median": None, "frac_above_0.9": None,
                "hist": {"edges": edges.tolist(), "counts": counts.tolist()}}
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        "frac_above_0.9": float((x > 0.9).mean()),
        "hist": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
