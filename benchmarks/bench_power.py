"""What n vs n seeds can detect: the difference in mean time to failure found with 80% power by the exact
two-sided permutation test at alpha 0.05 (`metrics.detectable_difference`), for seed standard deviations
0.2, 0.3, 0.43 (CE on collapse_facts v2, seeds 0-4) and 0.5, and n = 3, 5, 8 seeds per loss.

The test sees the seeds' values up to shift and scale, so each n has one number in units of sd (printed as
"d/sd"); each sd column is that number times sd. Beside it, the smallest p n vs n seeds can give, and for
reference the same power from Student's t-test on the same normal data (what the board used before).

    python benchmarks/bench_power.py [--sims 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

from fortifai_bench.metrics import detectable_effect, smallest_p

SDS = (0.2, 0.3, 0.43, 0.5)
NS = (3, 5, 8)


def t_test_effect(n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The same power from the two-sample t-test (df = 2n - 2), on the noncentral t distribution."""
    from scipy import optimize, stats

    df, crit = 2 * n - 2, stats.t.ppf(1 - alpha / 2, 2 * n - 2)
    scale = math.sqrt(2.0 / n)
    return float(optimize.brentq(lambda e: stats.nct.sf(crit, df, e / scale) - power, 1e-6, 20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated data sets per difference tried (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"80% power, alpha 0.05 two-sided, exact permutation test, {args.sims} simulated data sets (seed {args.seed})")
    print("| n vs n | smallest p | d/sd | " + " | ".join(f"sd {sd:g}" for sd in SDS) + " | t-test d/sd | seconds |")
    print("|---:|---:|---:|" + "---:|" * len(SDS) + "---:|---:|")
    for n in NS:
        start = time.perf_counter()
        effect = detectable_effect(n, n_sims=args.sims, seed=args.seed)
        seconds = time.perf_counter() - start
        cells = ["never" if math.isinf(effect) else f"{sd * effect:.2f}" for sd in SDS]
        shown = "-" if math.isinf(effect) else f"{effect:.3f}"
        print(f"| {n} | {smallest_p(n, n):.4g} | {shown} | " + " | ".join(cells)
              + f" | {t_test_effect(n):.3f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
