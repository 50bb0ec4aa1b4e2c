"""Statistics shared by KR scoring, the collapse protocol, the toys and the leaderboard.

Confidence intervals are percentile bootstraps with a fixed seed, so a result file is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


# ----------------------------------------------------------------------------------------------------------
# Time to failure: the one definition (`failure`) and the one summary over seeds (`summarize_failures`).
# Everything that shows a time to failure (results.json, the CLI table, boards, compare, plots) uses these.

FAILED, NEVER_FAILED, NEVER_LEARNED = "failed", "never_failed", "never_learned"


@dataclass(frozen=True)
class Failure:
    """When a per-stage score first fell below the threshold, counted in stages from M_0 (stage 0).

    status ``failed``: `time` is the first crossing, linearly interpolated between the two stages around it.
    status ``never_failed``: right-censored; the score stayed at or above the threshold through stage
    `horizon` (the last stage), so the time is only known to exceed `horizon`.
    status ``never_learned``: M_0 was already below the threshold; there was nothing to retain, so the
    run says nothing about collapse (it is not a time of 0).
    """

    status: str
    time: float | None
    horizon: int

    def restricted(self) -> float | None:
        """min(time, horizon): the value whose mean is the restricted mean time to failure (None if never learned)."""
        if self.status == NEVER_LEARNED:
            return None
        return float(self.horizon) if self.status == NEVER_FAILED else min(self.time, float(self.horizon))

    def to_dict(self) -> dict:
        return {"status": self.status, "time": self.time, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, d: dict) -> "Failure":
        return cls(d["status"], d.get("time"), int(d["horizon"]))


def failure(scores: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> Failure:
    """The time to failure of one run (see `Failure`); `scores[i]` is stage i's score."""
    scores = [float(s) for s in scores]
    horizon = len(scores) - 1
    if not scores or scores[0] < threshold:
        return Failure(NEVER_LEARNED, None, max(horizon, 0))
    for i in range(1, len(scores)):
        if scores[i] < threshold:
            prev = scores[i - 1]
            return Failure(FAILED, float(i - 1 + (prev - threshold) / (prev - scores[i])), horizon)
    return Failure(NEVER_FAILED, None, horizon)


def time_to_failure(scores: Sequence[float], threshold: float = DEFAULT_THRESHOLD) -> float | None:
    """`failure(...).time`: the interpolated crossing, None when it never failed or never learned."""
    return failure(scores, threshold).time


def _kaplan_meier_median(fails: list[Failure]) -> float | None:
    """The Kaplan-Meier median time to failure (scipy.stats.ecdf on right-censored data); None if the
    estimated survival never drops to 0.5 within the horizon."""
    from scipy import stats

    done = [f.time for f in fails if f.status == FAILED]
    censored = [float(f.horizon) for f in fails if f.status == NEVER_FAILED]
    if not done:
        return None
    res = stats.ecdf(stats.CensoredData(uncensored=done, right=censored))
    q, p = res.sf.quantiles, res.sf.probabilities
    below = np.flatnonzero(p <= 0.5)
    return float(q[below[0]]) if below.size else None


def summarize_failures(fails: Sequence[Failure], level: float = 0.95) -> dict:
    """Time to failure over seeds, honest about censoring.

    * ``mean``/``ci``: a t-interval over seeds, given only when every learned seed failed (a censored
      seed is not a failure at the horizon, so no interval is made from it).
    * ``restricted_mean``/``restricted_ci``: the mean of min(time, horizon) (restricted mean time to
      failure): well defined with censoring, a lower bound on the mean when some seed never failed.
      Rankings and the seed-level test (`compare_failures`) use it.
    * ``km_median``: the Kaplan-Meier median, censoring-aware.
    * ``text``: what a table shows, e.g. "2.31 [1.92, 2.70]" or ">= 4.20 (2 of 3 never failed)".
    """
    fails = list(fails)
    learned = [f for f in fails if f.status != NEVER_LEARNED]
    done = [f.time for f in learned if f.status == FAILED]
    n_cens = sum(f.status == NEVER_FAILED for f in learned)
    out = {"n": len(fails), "failed": len(done), "never_failed": n_cens,
           "never_learned": len(fails) - len(learned),
           "horizon": max((f.horizon for f in fails), default=0),
           "per_seed": [f.to_dict() for f in fails],
           "mean": None, "ci": [None, None], "sd": None}
    if learned and n_cens == 0:
        stat = mean_ci(done, level)
        out.update(mean=stat["mean"], ci=stat["ci"], sd=float(np.std(done, ddof=1)) if len(done) > 1 else None)
    restricted = mean_ci([f.restricted() for f in learned], level)
    out["restricted_mean"], out["restricted_ci"] = restricted["mean"], restricted["ci"]
    out["km_median"] = _kaplan_meier_median(learned) if learned else None
    out["text"] = _failure_text(out)
    return out


def _failure_text(s: dict) -> str:
    if s["n"] and s["never_learned"] == s["n"]:
        return "never learned"
    notes = []
    if s["never_failed"]:
        notes.append(f"{s['never_failed']} of {s['n']} never failed")
    if s["never_learned"]:
        notes.append(f"{s['never_learned']} never learned")
    if s["failed"] == 0:
        text = f"not within {s['horizon']} stages"
    elif s["mean"] is not None:
        text = f"{s['mean']:.2f}"
        if s["ci"][0] is not None and s["ci"][0] != s["ci"][1]:
            text += f" [{s['ci'][0]:.2f}, {s['ci'][1]:.2f}]"
    else:
        text = f">= {s['restricted_mean']:.2f}"
    return text + (f" ({'; '.join(notes)})" if notes else "")


def compare_failures(a: Sequence[Failure], b: Sequence[Failure]) -> dict:
    """Does A fail later than B? Seeds are the unit: Welch's t-test on the restricted times (min(time,
    horizon)) of the learned seeds. `ratio` = restricted mean of A / that of B, both counted in stages
    from M_0. p is None when a side has fewer than 2 learned seeds."""
    from scipy import stats

    ra = [f.restricted() for f in a if f.status != NEVER_LEARNED]
    rb = [f.restricted() for f in b if f.status != NEVER_LEARNED]
    out = {"n_a": len(ra), "n_b": len(rb), "test": "Welch t-test over seeds on min(time to failure, horizon)",
           "diff": None, "ratio": None, "p_value": None}
    if not ra or not rb:
        return out
    ma, mb = float(np.mean(ra)), float(np.mean(rb))
    out["diff"], out["ratio"] = ma - mb, (ma / mb if mb else None)
    if len(ra) >= 2 and len(rb) >= 2:
        if np.ptp(ra) == 0 and np.ptp(rb) == 0:
            out["p_value"] = 1.0 if ma == mb else 0.0
        else:
            import warnings

            with warnings.catch_warnings():  # near-constant sides: scipy warns, the p-value still stands
                warnings.simplefilter("ignore", RuntimeWarning)
                out["p_value"] = float(stats.ttest_ind(ra, rb, equal_var=False).pvalue)
    return out


def detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float | None = None) -> float:
    """The smallest difference in mean time to failure between two losses, n seeds each with seed standard
    deviation `sd`, that a two-sided t-test over seeds (df = 2n - 2) declares significant at `alpha`
    (power None: the difference whose t statistic just reaches the critical value), or detects with the
    given `power` (solved on the noncentral t distribution)."""
    from scipy import optimize, stats

    df, se = 2 * n - 2, sd * math.sqrt(2.0 / n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    if power is None:
        return float(crit * se)

    def gap(d):
        nc = d / se
        lower = stats.nct.cdf(-crit, df, nc)  # the wrong-direction tail; scipy gives nan once it underflows
        return stats.nct.sf(crit, df, nc) + (0.0 if math.isnan(lower) else lower) - power

    return float(optimize.brentq(gap, 1e-9 * se, 12 * se))


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
