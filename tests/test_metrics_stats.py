"""The statistics over seeds and questions (metrics): the exact permutation test and the p-values it can
give, the RMST ratio's bootstrap interval, Holm's adjustment, power from a measured sd, clustered question
bootstraps and intervals cut to a score's range."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fortifai_bench.metrics import Failure, bootstrap_ci, compare_failures, mean_ci, summarize_failures
from fortifai_bench.stats import (detectable_difference, format_p, holm, paired_permutation_p, permutation_p, ratio_ci,
                                  smallest_p)


def _fails(times, horizon=5):
    return [Failure("failed", t, horizon) if t < horizon else Failure("never_failed", None, horizon) for t in times]


def test_fully_separated_seeds_give_the_smallest_p_the_split_count_allows():
    # 3 vs 3: 20 splits, the observed one and its mirror are the extremes: two-sided p = 2/20
    c = compare_failures(_fails([3.0, 3.2, 2.8]), _fails([1.0, 1.2, 0.8]))
    assert c["p_value"] == pytest.approx(0.1) and c["splits"] == 20 and c["min_p"] == pytest.approx(0.1)
    assert c["ratio"] == pytest.approx(3.0) and c["diff"] == pytest.approx(2.0)
    # 5 vs 5: 252 splits, p = 2/252
    c = compare_failures(_fails([3.0, 3.1, 3.2, 3.3, 3.4]), _fails([1.0, 1.1, 1.2, 1.3, 1.4]))
    assert c["p_value"] == pytest.approx(2 / 252) and c["splits"] == 252
    assert smallest_p(3, 3) == pytest.approx(0.1) and smallest_p(5, 5) == pytest.approx(2 / 252)
    assert smallest_p(2, 2) == pytest.approx(1 / 3) and smallest_p(4, 4) == pytest.approx(2 / 70)


def test_exact_p_counts_splits_by_hand():
    # a = {1, 2, 4}, b = {3, 5, 6}: of the 20 ways to pick a's three values from 1..6, only {1,2,3} (sum 6)
    # and {1,2,4} (sum 7) give a sum <= 7, so one-sided p = 2/20 and two-sided p = 4/20
    assert permutation_p([1, 2, 4], [3, 5, 6]) == pytest.approx(0.2)
    assert permutation_p([3, 5, 6], [1, 2, 4]) == pytest.approx(0.2)


def test_exact_p_equals_brute_force_enumeration():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 1.0, 4), rng.normal(0.0, 1.0, 5)
    pooled, obs = np.concatenate([a, b]), a.mean() - b.mean()
    diffs = np.array([pooled[list(s)].mean() - np.delete(pooled, list(s)).mean()
                      for s in itertools.combinations(range(9), 4)])
    tol = 1e-12
    want = min(1.0, 2 * min(np.mean(diffs >= obs - tol), np.mean(diffs <= obs + tol)))
    assert len(diffs) == 126 and permutation_p(a, b) == pytest.approx(want)
    # many data sets at once (leading dimension) give each its own exact p
    batch = permutation_p(np.stack([a, b[:4]]), np.stack([b, np.append(a, 0.0)]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(want)


def test_paired_p_counts_sign_flips_by_hand():
    """Runs paired by seed: the p of mean(a - b) over the 2^n swaps of a seed's two values."""
    a, b = [2.0, 2.5, 1.9, 2.2, 2.4, 2.1], [1.8, 2.6, 1.5, 2.0, 2.0, 2.05]
    d = np.subtract(a, b)
    stats = [np.mean(d * signs) for signs in itertools.product([1, -1], repeat=len(d))]
    by_hand = 2 * min(np.mean(np.array(stats) >= d.mean() - 1e-12), np.mean(np.array(stats) <= d.mean() + 1e-12))
    assert paired_permutation_p(a, b) == pytest.approx(min(1.0, by_hand))
    # every seed's difference the same sign: 2/2^n, so 5 paired seeds cannot reach 0.05 (1/16), 6 can (1/32)
    assert paired_permutation_p([3.0] * 5, [1.0] * 5) == pytest.approx(1 / 16)
    assert paired_permutation_p([3.0] * 6, [1.0, 1.2, 0.9, 1.1, 1.0, 1.3]) == pytest.approx(1 / 32)


def test_constant_sides_give_the_exact_p_never_zero():
    c = compare_failures(_fails([3.0, 3.0, 3.0]), _fails([1.0, 1.0, 1.0]))
    assert c["p_value"] == pytest.approx(0.1)  # a t-test would say 0; 3 seeds a side cannot say less than 0.1
    assert c["ratio_ci"] == [pytest.approx(3.0), pytest.approx(3.0)]
    same = compare_failures(_fails([2.0, 2.0]), _fails([2.0, 2.0]))
    assert same["p_value"] == pytest.approx(1.0)
    assert compare_failures(_fails([3.0]), _fails([1.0, 1.2]))["p_value"] is None  # one seed: no test
    censored = compare_failures(_fails([5, 5, 5]), _fails([1.0, 2.0, 3.0]))  # never failed: restricted at 5
    assert censored["diff"] == pytest.approx(3.0) and censored["p_value"] == pytest.approx(0.1)


def test_format_p_never_prints_zero():
    assert format_p(2 / 252) == "p = 0.0079"
    assert format_p(0.0, 252) == "p < 1/252" and format_p(None) == "p = -"
    assert "0" != format_p(1e-300)[4:]


def test_ratio_interval_resamples_seeds():
    a, b = [2.0, 2.0, 4.0], [1.0, 1.0, 1.0]
    lo, hi = ratio_ci(a, b, n_boot=2000)
    # every resample of a has mean in [2, 4] and b's is 1: the percentile interval lies in [2, 4]
    assert 2.0 <= lo < np.mean(a) < hi <= 4.0
    assert ratio_ci(a, b, n_boot=2000) == [lo, hi]  # fixed seed
    assert ratio_ci([2.0], b) == [None, None]


def test_holm_steps_down():
    # sorted 0.01, 0.03, 0.04 of three tests: 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 0.04)
    assert holm([0.01, 0.04, None, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), None, pytest.approx(0.06)]
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([0.2, 0.9]) == [pytest.approx(0.4), pytest.approx(0.9)]
    assert holm([]) == []
    # two planned tests without a p yet count at p = 1: the given ones are adjusted over the family of four
    assert holm([0.01, 0.03], untested=2) == [pytest.approx(0.04), pytest.approx(0.09)]


def test_power_from_a_measured_sd():
    assert detectable_difference(0.43, 3) == math.inf  # 3 vs 3 seeds can never reach p < 0.05
    d5 = detectable_difference(0.43, 5, n_sims=1000)
    assert detectable_difference(0.86, 5, n_sims=1000) == pytest.approx(2 * d5)  # only d / sd matters
    assert detectable_difference(0.43, 6, n_sims=300) < d5
    # an independent simulation at that difference has about 80% power
    rng = np.random.default_rng(7)
    z = rng.standard_normal((2, 2000, 5))
    power = np.mean(permutation_p(0.43 * z[0] + d5, 0.43 * z[1]) < 0.05)
    assert 0.75 < power < 0.85
    # close to the t-test's answer on normal data (the exact test gives up little power at 5 seeds)
    from scipy import stats
    t_power = stats.nct.sf(stats.t.ppf(0.975, 8), 8, d5 / (0.43 * math.sqrt(2 / 5)))
    assert 0.8 < t_power < 0.9


def test_cluster_bootstrap_resamples_whole_facts():
    # two facts of three questions each, one always right and one always wrong: a resample draws each fact
    # 0, 1 or 2 times, so the mean is 0, 0.5 or 1 and the 95% interval is [0, 1]
    values, facts = [1, 1, 1, 0, 0, 0], ["f1", "f1", "f1", "f2", "f2", "f2"]
    assert bootstrap_ci(values, clusters=facts) == (0.0, 1.0)
    lo, hi = bootstrap_ci(values)  # as six independent questions: narrower
    assert 0.0 < lo and hi < 1.0
    with pytest.raises(ValueError, match="5 cluster labels for 6 values"):
        bootstrap_ci(values, clusters=facts[:5])


def test_intervals_stay_in_the_range_of_the_quantity():
    s = mean_ci([1.0, 1.0, 0.99], bounds=(0.0, 1.0))
    assert s["ci"][1] == 1.0 and s["ci"][0] < s["mean"]
    assert mean_ci([1.0, 1.0, 0.99])["ci"][1] > 1.0  # the t-interval itself crosses 1
    ttf = summarize_failures(_fails([0.1, 0.2, 3.5], horizon=4))
    assert ttf["ci"][0] == 0.0 and ttf["restricted_ci"][0] == 0.0 and ttf["ci"][1] <= 4


def test_gap_recovered_is_the_share_of_ce_gap_to_the_control_a_loss_closes():
    """metrics.gap_recovered: a loss at the control's AUCs closes all of CE's gap (1), one at CE's none (0),
    halfway half, with an interval around it from the seeds' spread; with no gap measured (the control's
    interval against CE reaches 0) there is no share, as the ratio would be unbounded."""
    from fortifai_bench.metrics import gap_recovered

    ce = {0: 0.85, 1: 0.87, 2: 0.86, 3: 0.84, 4: 0.88}
    control = {s: v + 0.09 for s, v in ce.items()}
    assert gap_recovered(control, ce, control)["share"] == pytest.approx(1.0)
    assert gap_recovered(ce, ce, control)["share"] == pytest.approx(0.0)
    half = gap_recovered({s: v + 0.045 for s, v in ce.items()}, ce, control)
    assert half["gap"] == pytest.approx(0.09) and 0 < half["gap_ci"][0] < 0.09 < half["gap_ci"][1]
    assert half["share"] == pytest.approx(0.5) and half["share_ci"][0] < 0.5 < half["share_ci"][1]
    assert 0.3 < half["share_ci"][0] and half["share_ci"][1] < 0.7  # a sd of 0.016 against a gap of 0.09
    none = gap_recovered(ce, ce, {s: v + 0.005 * (-1) ** s for s, v in ce.items()})
    assert none["gap_ci"][0] < 0 < none["gap_ci"][1] and none["share"] is None and none["share_ci"] == [None, None]
    assert gap_recovered(ce, ce, {0: 0.95})["share"] is None  # one control seed: no interval for the gap
    # AUCs like the heavy board's at seeds 0-2 (2026-12-07), one control seed at one of CE's values, so some
    # resamples tie CE's and the control's means; the interval takes them as the extremes, with no numpy warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tied = gap_recovered({0: 0.929, 1: 0.961}, {0: 0.969, 1: 0.939, 2: 0.948}, {0: 0.974, 1: 0.965, 2: 0.969})
    assert tied["gap_ci"][0] > 0 and tied["share_ci"][0] < tied["share"] < tied["share_ci"][1]


def test_compare_paired_uses_the_pairs():
    """Paired by seed, a constant AUC gain of 0.05 over six seeds whose own AUCs spread over 0.3 is the exact
    sign-flip test's smallest p (2/64) with an interval at the gain itself; the unpaired test of the same values
    sees only the spread. Seeds one side lacks are left out of the pairs."""
    from fortifai_bench.metrics import compare_paired, compare_retention

    a = {0: 0.8, 1: 0.7, 2: 0.9, 3: 0.75, 4: 0.85, 5: 0.6}
    b = {s: v - 0.05 for s, v in a.items()}
    paired = compare_paired(a, b, "difference")
    assert paired["pairs"] == 6 and paired["p_value"] == pytest.approx(2 / 64) == paired["min_p"]
    assert paired["diff_ci"] == pytest.approx([0.05, 0.05]) and paired["correlation"] == pytest.approx(1.0)
    assert compare_retention(a, b)["p_value"] > 0.5
    assert compare_paired({**a, 6: 0.99}, b, "difference")["pairs"] == 6
    ratio = compare_paired({s: 2.0 + s for s in range(6)}, {s: 1.0 + s for s in range(6)})
    assert ratio["ratio"] == pytest.approx(4.5 / 3.5) and ratio["p_value"] == pytest.approx(2 / 64)
