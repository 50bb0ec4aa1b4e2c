"""`fortifai-bench compare`: the paired question bootstrap of the time-to-failure difference.

Side by side in one run, on the same synthetic KR bits (6 stages x N questions, two runs):
  clusters:   what fortifai_bench.compare does now: per resample, how often each cluster (a fact; here each
              question its own, then facts of three questions) is drawn (metrics.resample_weights), per
              cluster the right answers (metrics.cluster_totals), curves by one matrix product;
  vectorized: all question draws at once, curves by one uint8 gather and sum (what compare did before it
              resampled facts);
  loop:       the obvious version: per resample, index the bits, average, call metrics.time_to_failure.
vectorized and loop make the same draws, so they print the same interval; the clusters variant draws counts
instead of indices (the same distribution), so its interval differs by resampling noise only.

    python benchmarks/bench_compare.py [--items 1000] [--boot 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fortifai_bench.compare import restricted_times
from fortifai_bench.metrics import cluster_totals, resample_weights, time_to_failure


def synthetic_bits(n_items: int, accuracies: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([(rng.random(n_items) < a).astype(float) for a in accuracies])


def vectorized(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    n = a.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def curves(bits):
        return bits.astype(np.uint8)[:, idx].sum(-1, dtype=np.int64).T / n

    d = restricted_times(curves(a), 0.75) - restricted_times(curves(b), 0.75)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def clusters(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, size: int = 1) -> tuple[float, float]:
    labels = [str(i // size) for i in range(a.shape[1])]
    weights = resample_weights(len(set(labels)), n_boot, np.random.default_rng(seed))

    def ttf(bits):
        right, n = cluster_totals(bits, labels)
        return restricted_times((weights @ right.T) / (weights @ n)[:, None], 0.75)

    d = ttf(a) - ttf(b)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def loop(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n, horizon = a.shape[1], a.shape[0] - 1  # a run that never fails counts as the last stage
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        ta = time_to_failure(list(a[:, idx].mean(axis=1)), 0.75)
        tb = time_to_failure(list(b[:, idx].mean(axis=1)), 0.75)
        diffs.append((horizon if ta is None else ta) - (horizon if tb is None else tb))
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    a = synthetic_bits(args.items, [0.98, 0.95, 0.9, 0.85, 0.8, 0.72], 0)
    b = synthetic_bits(args.items, [0.98, 0.9, 0.8, 0.7, 0.62, 0.55], 1)
    best = {}
    variants = (("clusters", clusters), ("facts of 3", lambda a, b, n, s: clusters(a, b, n, s, size=3)),
                ("vectorized", vectorized), ("loop", loop))
    for name, fn in variants:
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ci = fn(a, b, args.boot, 0)
            times.append(time.perf_counter() - t)
        best[name] = min(times)
        print(f"{name:>11}: {best[name] * 1000:8.1f} ms (best of {args.repeat}), 95% CI {ci[0]:+.3f} .. {ci[1]:+.3f}")
    print(f"vectorized / clusters = {best['vectorized'] / best['clusters']:.1f}x, "
          f"loop / vectorized = {best['loop'] / best['vectorized']:.1f}x "
          f"({args.items} questions, 6 stages, {args.boot} resamples)")


if __name__ == "__main__":
    main()
