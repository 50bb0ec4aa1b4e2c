"""Time to failure: one definition (metrics.failure), one summary over seeds, censoring handled honestly,
the results contract that carries it (the tests over seeds: test_metrics_stats.py)."""

from __future__ import annotations

import pytest

from fortifai_bench.metrics import Failure, failure, summarize_failures


def test_failure_interpolates_the_first_crossing_from_m0():
    f = failure([0.95, 0.85, 0.70, 0.90], 0.75)
    assert f.status == "failed" and f.time == pytest.approx(1 + (0.85 - 0.75) / (0.85 - 0.70)) and f.horizon == 3
    assert f.restricted() == f.time


def test_never_failed_is_censored_and_never_learned_is_not_time_zero():
    never = failure([0.95, 0.9, 0.8], 0.75)
    assert never.status == "never_failed" and never.time is None and never.restricted() == 2.0
    dud = failure([0.6, 0.9, 0.9], 0.75)
    assert dud.status == "never_learned" and dud.time is None and dud.restricted() is None
    assert Failure.from_dict(never.to_dict()) == never


def test_summary_gives_no_interval_from_censored_seeds():
    fails = [failure(s, 0.75) for s in ([0.95, 0.85, 0.7], [0.95, 0.9, 0.8], [0.95, 0.7, 0.6])]
    s = summarize_failures(fails)
    assert (s["n"], s["failed"], s["never_failed"], s["never_learned"]) == (3, 2, 1, 0)
    assert s["mean"] is None and s["ci"] == [None, None]  # not a t-interval over a fake failure at the horizon
    assert s["restricted_mean"] == pytest.approx((fails[0].time + 2.0 + fails[2].time) / 3)
    assert s["text"].startswith(">= ") and "1 of 3 never failed" in s["text"]
    # Kaplan-Meier: failures at 0.667 and 1.667, one censored at 2 -> survival 2/3 then 1/3: median 1.667
    assert s["km_median"] == pytest.approx(fails[0].time)


def test_summary_when_every_seed_failed_and_when_none_learned():
    fails = [failure([0.95, 0.7], 0.75), failure([0.95, 0.8, 0.7], 0.75)]
    s = summarize_failures(fails)
    assert s["mean"] == pytest.approx((fails[0].time + fails[1].time) / 2) and s["ci"][0] < s["mean"] < s["ci"][1]
    assert summarize_failures([failure([0.5, 0.9], 0.75)])["text"] == "never learned"
