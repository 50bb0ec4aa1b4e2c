"""Power of a board's claims: how many seeds per entry detect a loss that outlasts CE by 1.5x (or 1.25x), after
the board's adjustment (Holm over its claims against CE), from each regime's measured per-seed times.

For each regime board (hot = collapse_facts, greedy = collapse_facts_greedy, longtail = collapse_facts_longtail)
and each TCE arm on it, simulated data sets draw n seeds of CE (mean and sd as measured on the board) and n
seeds of the arm (mean ratio x CE's, the arm's measured sd), cut to [0, horizon] as restricted times are. A
claim is detected when its p is below alpha / m, m the board's number of claims: Holm's first step, so the
power printed is a lower bound on Holm's (exact when no null claim is rejected first). Two tests:

- unpaired: the board's test, the exact two-sided permutation test over seeds (`stats.permutation_p`:
  every split while there are at most 1,000,000; beyond, the bench samples 20,000 splits where the board
  samples 99,999), on independent arms;
- paired: the same seeds on both arms (same base and data order), the sign-flip test on the per-seed
  differences (`stats.paired_permutation_p`), drawing the pairs with the correlation measured between CE's
  and the TCE arms' per-seed times on the board (pooled over the regime's TCE arms by Fisher's z); the
  design uses the lower end of its one-sided 80% interval (clipped at 0): five seeds measure a
  correlation poorly.

Both tests are computed here by enumerating splits (sign flips) as a matrix product, far faster than scipy's
permutation_test for thousands of data sets; the bench first checks them against `stats.permutation_p` and
`stats.paired_permutation_p` on random data.

    python benchmarks/bench_power.py [--sims 2000] [--seed 0] [--max-seeds 40]
    python benchmarks/bench_power.py --design 1.85,0.35 [--arm-sd 0.70] [--claims 3]   # a design before its board

`--design MEAN,SD` skips the boards: a planned design whose CE was measured (mean and seed sd of restricted
times, e.g. a new task version's calibration) and whose arms are not yet run, every arm with `--arm-sd`
(default: CE's sd), unpaired, `--claims` claims against CE (default 3), horizon 5.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from functools import lru_cache

import numpy as np

from fortifai_bench.leaderboard import load_board, leaderboards_dir
from fortifai_bench.metrics import Failure
from fortifai_bench.stats import ALPHA, MAX_EXACT_SPLITS, paired_permutation_p, permutation_p

REGIMES = {"hot": "collapse_facts", "greedy": "collapse_facts_greedy", "longtail": "collapse_facts_longtail"}
RATIOS = (1.5, 1.25)
POWER = 0.8
SAMPLED = 20_000  # splits (sign flips) drawn where there are too many to enumerate


# ----------------------------------------------------------------------------------------- the boards

def board_times(task: str) -> tuple[dict[str, dict[int, float]], int, int]:
    """Per loss spec, seed -> restricted time to failure, as the board computes it; the horizon; and the
    number of claims the board makes against CE (one per non-CE, non-control entry)."""
    board = load_board(leaderboards_dir() / f"{task}.json")
    arms, horizon = {}, None
    for e in board["entries"]:
        if e.get("control"):
            continue
        fails = [Failure.from_dict(d) for d in e["time_to_failure"]["per_seed"]]
        arms[e["loss"]["spec"]] = {s: f.restricted() for s, f in zip(e["seeds"], fails)}
        horizon = fails[0].horizon
    return arms, horizon, sum(1 for spec in arms if spec != "ce")


def correlation(a: dict[int, float], b: dict[int, float]) -> float:
    seeds = sorted(set(a) & set(b))
    return float(np.corrcoef([a[s] for s in seeds], [b[s] for s in seeds])[0, 1])


def pooled_correlation(rs: list[float], n: int, level: float = 0.8) -> tuple[float, float]:
    """Fisher's z mean of several correlations over n seeds, and the lower end of its one-sided interval
    (counting n seeds once: the arms share CE's seeds, so they are not independent estimates)."""
    from scipy.stats import norm

    z = float(np.mean(np.arctanh(np.clip(rs, -0.999, 0.999))))
    return math.tanh(z), math.tanh(z - norm.ppf(level) / math.sqrt(n - 3))


# ------------------------------------------------------------------------------- the tests, fast

@lru_cache(maxsize=None)
def _splits(n: int, seed: int) -> np.ndarray:
    """0/1 rows marking group A of each split of 2n seeds (all C(2n, n) of them, or SAMPLED random ones)."""
    if math.comb(2 * n, n) <= MAX_EXACT_SPLITS:
        rows = np.zeros((math.comb(2 * n, n), 2 * n))
        for i, combo in enumerate(itertools.combinations(range(2 * n), n)):
            rows[i, combo] = 1.0
        return rows
    rng = np.random.default_rng(seed)
    return (np.argsort(rng.random((SAMPLED, 2 * n)), axis=1) < n).astype(float)


@lru_cache(maxsize=None)
def _flips(n: int, seed: int) -> np.ndarray:
    """+-1 rows, one per way of swapping the seeds' pairs (all 2^n, or SAMPLED random ones)."""
    if 2 ** n <= MAX_EXACT_SPLITS:
        return 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(SAMPLED, n))


def _two_sided(null: np.ndarray, observed: np.ndarray, sampled: bool) -> np.ndarray:
    """scipy.stats.permutation_test's two-sided p from the null statistics [K, B] and the observed [B]."""
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))
    less = (null <= observed + tol).sum(axis=0)
    greater = (null >= observed - tol).sum(axis=0)
    k = null.shape[0]
    if sampled:  # scipy counts the observed split among the sampled ones
        less, greater, k = less + 1, greater + 1, k + 1
    return np.minimum(1.0, 2 * np.minimum(less, greater) / k)


def unpaired_p(a: np.ndarray, b: np.ndarray, seed: int = 0, batch: int = 32) -> np.ndarray:
    """`stats.permutation_p` of mean(a) - mean(b) for n vs n seeds, many data sets at once ([B, n] each)."""
    n = a.shape[1]
    rows = _splits(n, seed)
    pooled = np.concatenate([a, b], axis=1)
    total = pooled.sum(axis=1)
    out = []
    for i in range(0, len(pooled), batch):
        sums = rows @ pooled[i:i + batch].T  # [K, B]: group A's sum in each split
        null = (2 * sums - total[i:i + batch]) / n  # mean(A) - mean(B)
        observed = (a[i:i + batch].sum(axis=1) - b[i:i + batch].sum(axis=1)) / n
        out.append(_two_sided(null, observed, len(rows) < math.comb(2 * n, n)))
    return np.concatenate(out)


def paired_p(a: np.ndarray, b: np.ndarray, seed: int = 0, batch: int = 64) -> np.ndarray:
    """`stats.paired_permutation_p` for many data sets at once ([B, n] each)."""
    n = a.shape[1]
    flips = _flips(n, seed)
    d = a - b
    out = []
    for i in range(0, len(d), batch):
        null = flips @ d[i:i + batch].T / n
        out.append(_two_sided(null, d[i:i + batch].mean(axis=1), len(flips) < 2 ** n))
    return np.concatenate(out)


def check_fast_tests() -> None:
    """The fast tests give the board's p-values (to rounding) on random data, ties included."""
    rng = np.random.default_rng(1)
    for n in (3, 5, 6):
        a, b = rng.normal(size=(20, n)).round(1), rng.normal(0.5, 1, size=(20, n)).round(1)
        assert np.allclose(unpaired_p(a, b), permutation_p(a, b), atol=1e-9), n
        assert np.allclose(paired_p(a, b), paired_permutation_p(a, b), atol=1e-9), n


# ----------------------------------------------------------------------------------------- power

def draw(n: int, sims: int, ce: tuple[float, float], arm: tuple[float, float], rho: float, horizon: int,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n seeds of CE and of the arm, `sims` times: normal with the given (mean, sd) and correlation rho
    between a seed's two runs, cut to [0, horizon] as a restricted time is."""
    z = rng.standard_normal((2, sims, n))
    z1 = rho * z[0] + math.sqrt(max(0.0, 1 - rho * rho)) * z[1]
    a = np.clip(arm[0] + arm[1] * z1, 0, horizon)
    b = np.clip(ce[0] + ce[1] * z[0], 0, horizon)
    return a, b


def detection_rate(n: int, ce: tuple[float, float], arm: tuple[float, float], rho: float, horizon: float,
                   alpha: float, paired: bool, sims: int = 2000, seed: int = 0) -> float:
    """The share of `sims` simulated boards (n seeds a side, drawn by `draw`) whose claim's p is below alpha: the
    power of the test at that design. Also the retention claims' (benchmarks/smol_retention.py: AUCs, horizon 1)."""
    a, b = draw(n, sims, ce, arm, rho if paired else 0.0, horizon, np.random.default_rng(seed))
    p = paired_p(a, b, seed) if paired else unpaired_p(a, b, seed)
    return float(np.mean(p < alpha))


def power(n: int, ratio: float, ce: tuple[float, float], arm_sd: float, rho: float, horizon: int, m: int,
          paired: bool, sims: int, seed: int) -> float:
    """Power for an arm whose mean time is `ratio` x CE's, at Holm's first step over m claims."""
    return detection_rate(n, ce, (ratio * ce[0], arm_sd), rho, horizon, ALPHA / m, paired, sims, seed)


def seeds_needed(ratio: float, ce, arm_sd, rho, horizon, m, paired, sims, seed, max_seeds) -> int | None:
    """The fewest seeds per entry with power >= POWER (None: not within max_seeds). Power rises with n,
    so a bisection over n after doubling finds it."""
    def ok(n):
        return power(n, ratio, ce, arm_sd, rho, horizon, m, paired, sims, seed) >= POWER

    lo, hi = 2, 4
    while not ok(hi):
        if hi >= max_seeds:
            return None
        lo, hi = hi, min(2 * hi, max_seeds)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def fmt_n(n: int | None, max_seeds: int) -> str:
    return f"> {max_seeds}" if n is None else str(n)


def planned(mean: float, sd: float, arm_sd: float, m: int, args) -> None:
    """Power of a design not yet on a board: CE measured, every arm at `arm_sd`, unpaired, horizon 5."""
    print(f"| CE mean, sd | arm sd | claims | ratio | power at 5 / 10 seeds | seeds for 0.8 (power there) |\n"
          "|---|---:|---:|---:|---|---|")
    for ratio in RATIOS:
        common = dict(ce=(mean, sd), arm_sd=arm_sd, rho=0.0, horizon=5, m=m, paired=False, sims=args.sims,
                      seed=args.seed)
        n = seeds_needed(ratio, max_seeds=args.max_seeds, **common)
        there = "" if n is None else f" ({power(n, ratio, **common):.2f})"
        print(f"| {mean:.2f}, {sd:.2f} | {arm_sd:.2f} | {m} | {ratio:g}x | {power(5, ratio, **common):.2f} / "
              f"{power(10, ratio, **common):.2f} | {fmt_n(n, args.max_seeds)}{there} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=2000, help="simulated data sets per design (default 2000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-seeds", type=int, default=40, help="largest seeds per entry tried (default 40)")
    ap.add_argument("--design", help="MEAN,SD of CE's restricted times: a planned design instead of the boards")
    ap.add_argument("--arm-sd", type=float, help="with --design: every arm's sd (default: CE's)")
    ap.add_argument("--claims", type=int, default=3, help="with --design: claims against CE (default 3)")
    ap.add_argument("--regimes", default=",".join(REGIMES), help=f"boards to read (default: {','.join(REGIMES)})")
    args = ap.parse_args()
    start = time.perf_counter()
    check_fast_tests()
    if args.design:
        mean, sd = (float(x) for x in args.design.split(","))
        planned(mean, sd, sd if args.arm_sd is None else args.arm_sd, args.claims, args)
        print(f"\n{time.perf_counter() - start:.0f} s")
        return
    print(f"Power after Holm over each board's claims against CE (p < {ALPHA:g} / claims), {args.sims} simulated "
          f"data sets per design (seed {args.seed}); times normal, cut to [0, horizon]\n")
    print("| regime | claims | seeds n | CE mean, sd | arm | arm sd | r with CE (n seeds) | design r (pooled, 80% lower) | "
          "power at n seeds, 1.5x / 1.25x: unpaired | paired | seeds for 0.8 at 1.5x: unpaired | paired | "
          "power at those seeds, 1.25x: unpaired | paired |")
    print("|---|---:|---:|---|---|---:|---:|---:|---|---|---:|---:|---|---|")
    for regime in args.regimes.split(","):
        arms, horizon, m = board_times(REGIMES[regime])
        ce_times = list(arms["ce"].values())
        ce = (float(np.mean(ce_times)), float(np.std(ce_times, ddof=1)))
        tce = [spec for spec in arms if spec.startswith("tce")]
        rs = {spec: correlation(arms[spec], arms["ce"]) for spec in tce}
        r_pool, r_low = pooled_correlation(list(rs.values()), len(ce_times))
        rho = max(0.0, r_low)
        for spec in tce:
            sd = float(np.std(list(arms[spec].values()), ddof=1))
            common = dict(ce=ce, arm_sd=sd, horizon=horizon, m=m, sims=args.sims, seed=args.seed)
            at5 = [power(len(ce_times), r, rho=rho, paired=pp, **common) for pp in (False, True) for r in RATIOS]
            need = [seeds_needed(1.5, rho=rho, paired=pp, max_seeds=args.max_seeds, **common) for pp in (False, True)]
            at_need = ["-" if n is None else f"{power(n, 1.25, rho=rho, paired=pp, **common):.2f}"
                       for n, pp in zip(need, (False, True))]
            print(f"| {regime} | {m} | {len(ce_times)} | {ce[0]:.2f}, {ce[1]:.2f} | {spec} | {sd:.2f} | {rs[spec]:.2f} | "
                  f"{r_pool:.2f} ({rho:.2f}) | {at5[0]:.2f} / {at5[1]:.2f} | {at5[2]:.2f} / {at5[3]:.2f} | "
                  f"{fmt_n(need[0], args.max_seeds)} | {fmt_n(need[1], args.max_seeds)} | {at_need[0]} | {at_need[1]} |",
                  flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
