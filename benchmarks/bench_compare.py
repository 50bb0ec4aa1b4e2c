"""`fortifai-bench compare`: the paired question bootstrap of the time-to-failure difference.

Side by side in one run, on the same synthetic KR bits (6 stages x N questions, two runs):
  vectorized: all question draws at once, curves by one uint8 gather and sum, censored time to failure over
              all resamples at once (as fortifai_bench.compare.ttf_difference does);
  loop:       the obvious version: per resample, index the bits, average, call metrics.time_to_failure.
With the same seed both make the same draws, so both print the same interval; the figure is the speed ratio.

    python benchmarks/bench_compare.py [--items 1000] [--boot 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fortifai_bench.compare import censored_ttf
from fortifai_bench.metrics import time_to_failure


def synthetic_bits(n_items: int, accuracies: list[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([(rng.random(n_items) < a).astype(float) for a in accuracies])


def vectorized(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    n = a.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def curves(bits):
        return bits.astype(np.uint8)[:, idx].sum(-1, dtype=np.int64).T / n

    d = censored_ttf(curves(a), 0.75) - censored_ttf(curves(b), 0.75)
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def loop(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n, horizon = a.shape[1], a.shape[0]
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
    for name, fn in (("vectorized", vectorized), ("loop", loop)):
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            ci = fn(a, b, args.boot, 0)
            times.append(time.perf_counter() - t)
        best[name] = min(times)
        print(f"{name:>10}: {best[name] * 1000:8.1f} ms (best of {args.repeat}), 95% CI {ci[0]:+.3f} .. {ci[1]:+.3f}")
    print(f"loop / vectorized = {best['loop'] / best['vectorized']:.1f}x "
          f"({args.items} questions, 6 stages, {args.boot} resamples)")


if __name__ == "__main__":
    main()
