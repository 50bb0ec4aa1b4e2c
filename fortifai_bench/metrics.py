"""Statistics shared by KR scoring, the collapse protocol, the toys and the leaderboard.

Confidence intervals are percentile bootstraps with a fixed seed, so a result file is reproducible. Time to
failure has one definition here (`failure`), with its censoring; `compare_failures` tests two losses' times
over seeds with the exact permutation test of `fortifai_bench.stats` (import the tests from there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fortifai_bench.stats import (diff_ci, gap_share_ci, n_splits, paired_permutation_p, permutation_p, ratio_ci,
                                  smallest_p)

# The failure threshold, defined here only (a collapse task's eval.failure_threshold defaults to it): time to
# failure is the stage where KR-split-0 falls below it; half of the gain above chance (0.5) on a two-choice test.
DEFAULT_THRESHOLD = 0.75


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 2000, seed: int = 0,
                 clusters: Sequence | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (e.g. 0/1 correctness of KR questions). With
    `clusters` (one label per value, e.g. the fact a question asks about) whole clusters are resampled:
    three questions about one fact are not three independent draws."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    if clusters is None:
        means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    else:
        sums, sizes = cluster_totals(x[None, :], clusters)
        weights = resample_weights(sizes.size, n_boot, rng)
        means = (weights @ sums[0]) / (weights @ sizes)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def cluster_totals(rows: np.ndarray, clusters: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster: the sum of each row's values over its members ([rows, clusters]) and its size."""
    labels = np.asarray([str(c) for c in clusters])
    if labels.size != rows.shape[1]:
        raise ValueError(f"{labels.size} cluster labels for {rows.shape[1]} values")
    _, index = np.unique(labels, return_inverse=True)
    k = int(index.max()) + 1
    sums = np.zeros((rows.shape[0], k))
    np.add.at(sums, (slice(None), index), rows)
    return sums, np.bincount(index, minlength=k).astype(float)


def resample_weights(k: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, k]: how often each of k clusters is drawn when k are drawn with replacement, per resample
    (the counts of uniform draws, one bincount over all resamples: 5-10x faster than rng.multinomial)."""
    draws = rng.integers(0, k, size=(n_boot, k)) + k * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(float)


def mean_ci(values: Sequence[float], level: float = 0.95, bounds: tuple | None = None) -> dict:
    """Mean and t-interval over seeds; one seed gives a degenerate interval. `bounds` (lo, hi; either may be
    None) is the range the quantity cannot leave, e.g. (0, 1) for an accuracy: the interval is cut to it
    (the truth lies inside, so cutting drops only impossible values and keeps the coverage)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        return {"mean": None, "ci": [None, None], "n": 0}
    m = float(x.mean())
    if x.size == 1 or float(x.std(ddof=1)) == 0.0:
        return {"mean": m, "ci": [m, m], "n": int(x.size)}
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": m, "ci": clip_interval([m - half, m + half], bounds), "n": int(x.size)}


def clip_interval(ci: Sequence, bounds: tuple | None) -> list:
    lo, hi = bounds or (None, None)
    return [None if v is None else min(max(v, -math.inf if lo is None else lo), math.inf if hi is None else hi)
            for v in ci]


# The range of each per-stage score (`score_name` in results.json). A score not listed is only known to be
# >= 0 (the toys' variance_retention and diversity_retention are ratios that can exceed 1).
SCORE_BOUNDS = {"kr_split0": (0.0, 1.0), "exp_neg_kl": (0.0, 1.0)}


def score_bounds(score_name: str) -> tuple:
    if score_name.startswith("kr_split0"):  # kr_split0 and its per-tag forms (kr_split0_tail): accuracies
        return (0.0, 1.0)
    return SCORE_BOUNDS.get(score_name, (0.0, None))


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
    Both intervals are cut to [0, horizon], the range a time to failure can take.
    """
    fails = list(fails)
    learned = [f for f in fails if f.status != NEVER_LEARNED]
    done = [f.time for f in learned if f.status == FAILED]
    n_cens = sum(f.status == NEVER_FAILED for f in learned)
    horizon = max((f.horizon for f in fails), default=0)
    out = {"n": len(fails), "failed": len(done), "never_failed": n_cens,
           "never_learned": len(fails) - len(learned), "horizon": horizon,
           "per_seed": [f.to_dict() for f in fails],
           "mean": None, "ci": [None, None], "sd": None}
    if learned and n_cens == 0:
        stat = mean_ci(done, level, bounds=(0.0, horizon))
        out.update(mean=stat["mean"], ci=stat["ci"], sd=float(np.std(done, ddof=1)) if len(done) > 1 else None)
    restricted = mean_ci([f.restricted() for f in learned], level, bounds=(0.0, horizon))
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


def compare_failures(a: Sequence[Failure], b: Sequence[Failure], level: float = 0.95) -> dict:
    """Does A fail later than B? Seeds are the unit: the exact permutation test (`permutation_p`) on the
    restricted times of the learned seeds. `ratio` = restricted mean of A / that of B, with a bootstrap
    interval over seeds (`ratio_ci`); `min_p` the smallest p these seed counts can give. p is None when a
    side has fewer than 2 learned seeds."""
    ra = [f.restricted() for f in a if f.status != NEVER_LEARNED]
    rb = [f.restricted() for f in b if f.status != NEVER_LEARNED]
    out = {"n_a": len(ra), "n_b": len(rb), "test": "exact permutation test over seeds on min(time to failure, "
           "horizon), two-sided", "effect": "ratio", "diff": None, "ratio": None, "ratio_ci": [None, None], "p_value": None,
           "splits": None, "min_p": None}
    if not ra or not rb:
        return out
    ma, mb = float(np.mean(ra)), float(np.mean(rb))
    out["diff"], out["ratio"] = ma - mb, (ma / mb if mb else None)
    if len(ra) >= 2 and len(rb) >= 2:
        out.update(p_value=permutation_p(ra, rb), splits=n_splits(len(ra), len(rb)),
                   min_p=smallest_p(len(ra), len(rb)), ratio_ci=ratio_ci(ra, rb, level))
    return out


def compare_retention(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> dict:
    """Does A retain more than B? The per-seed AUC of the score over stages (`area_under_curve`), seed -> value
    per side. For regimes where B (CE) never fails within the horizon, so that time to failure is censored on
    every seed and cannot tell losses apart (collapse_wikitext_smol: the collapse is a gap below the clean
    control, not a fall below the threshold). The test is the exact permutation test over seeds, unpaired as
    the boards' claims are; where both sides ran the same seeds, the paired test (same data order, same base)
    and the correlation of the pairs are given beside it, so a design can measure whether pairing pays. The
    effect is the difference of mean AUCs (`effect: "difference"`, with a bootstrap interval over seeds,
    `diff_ci`), where `compare_failures` gives a ratio of times."""
    va, vb = list(a.values()), list(b.values())
    out = {"n_a": len(va), "n_b": len(vb), "test": "exact permutation test over seeds on the AUC, two-sided",
           "effect": "difference", "diff": None, "diff_ci": [None, None], "p_value": None, "splits": None,
           "min_p": None, "paired": None}
    if not va or not vb:
        return out
    out["diff"] = float(np.mean(va) - np.mean(vb))
    if len(va) >= 2 and len(vb) >= 2:
        out.update(p_value=permutation_p(va, vb), splits=n_splits(len(va), len(vb)), min_p=smallest_p(len(va), len(vb)),
                   diff_ci=diff_ci(va, vb, level))
    if len(a) >= 2 and set(a) == set(b):
        paired = compare_paired(a, b, "difference", level)
        seeds = sorted(a)
        out["paired"] = {"n": paired["pairs"], "p_value": paired["p_value"], "min_p": paired["min_p"],
                         "correlation": paired["correlation"],
                         "diff_sd": float(np.std([a[s] - b[s] for s in seeds], ddof=1))}
    return out


def gap_recovered(loss: dict[int, float], ce: dict[int, float], control: dict[int, float],
                  level: float = 0.95) -> dict:
    """How much of CE's retention gap below the clean control a loss closes, on the per-seed AUCs (seed ->
    value): (mean loss - mean CE) / (mean control - mean CE); 1 is the control's retention, 0 CE's, below 0
    less than CE's. Descriptive, in the unit a reader asks for ("does it prevent collapse?"), beside
    `compare_retention`'s test, which it does not replace. Its interval is a percentile bootstrap over seeds,
    each arm resampled on its own. No share (None) where the gap's own interval (`diff_ci`, control against
    CE) reaches 0: with no collapse measured there is nothing to recover, and the ratio is unbounded."""
    vl, vc, vk = list(loss.values()), list(ce.values()), list(control.values())
    out = {"gap": None, "gap_ci": [None, None], "share": None, "share_ci": [None, None]}
    if not vl or not vc or not vk:
        return out
    out["gap"] = float(np.mean(vk) - np.mean(vc))
    out["gap_ci"] = diff_ci(vk, vc, level)
    low = out["gap_ci"][0]
    if low is None or low <= 0:
        return out
    out["share"] = (float(np.mean(vl)) - float(np.mean(vc))) / out["gap"]
    out["share_ci"] = gap_share_ci(vl, vc, vk, level)
    return out


def compare_paired(a: dict[int, float], b: dict[int, float], effect: str = "ratio", level: float = 0.95) -> dict:
    """`compare_failures` (effect "ratio", values the restricted times) or `compare_retention` (effect
    "difference", values the AUCs) with the runs paired by seed, for a board created with `publish --paired`:
    two losses run with the same seed share the base and the data order, so under greedy decoding their times
    move together (BENCHMARKS.md, "Power of the exact test over seeds": r 0.30-0.73 on the greedy board, 0.71-0.96
    on its v1 with one base) and the test on per-seed differences can be the stronger one. The test is the exact sign-flip test
    (`paired_permutation_p`, every one of the 2^n swaps; smallest p 2/2^n), the interval a bootstrap over the
    seeds' pairs. Only the seeds both sides ran are used (a paired board holds one seed set), seed -> value."""
    seeds = sorted(set(a) & set(b))
    va, vb = [a[s] for s in seeds], [b[s] for s in seeds]
    what = "min(time to failure, horizon)" if effect == "ratio" else "the AUC"
    ci_key = "ratio_ci" if effect == "ratio" else "diff_ci"
    out = {"n_a": len(seeds), "n_b": len(seeds), "pairs": len(seeds), "effect": effect,
           "test": f"exact sign-flip test over seeds paired by seed on {what}, two-sided", "diff": None,
           "ratio": None, ci_key: [None, None], "p_value": None, "splits": None, "min_p": None, "correlation": None}
    if not seeds:
        return out
    ma, mb = float(np.mean(va)), float(np.mean(vb))
    out["diff"] = ma - mb
    if effect == "ratio":
        out["ratio"] = ma / mb if mb else None
    if len(seeds) >= 2:
        interval = ratio_ci if effect == "ratio" else diff_ci
        out.update(p_value=paired_permutation_p(va, vb), splits=2 ** len(seeds), min_p=min(1.0, 2 / 2 ** len(seeds)))
        out[ci_key] = interval(va, vb, level, paired=True)
        if np.ptp(va) and np.ptp(vb):
            out["correlation"] = float(np.corrcoef(va, vb)[0, 1])
    return out


def area_under_curve(scores: Sequence[float]) -> float:
    """Trapezoidal area under a per-stage curve, divided by the number of intervals (so in [0, 1] for accuracies)."""
    y = np.asarray(scores, dtype=float)
    if y.size < 2:
        return float(y[0]) if y.size else float("nan")
    return float(((y[1:] + y[:-1]) / 2).mean())


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
