"""Paired significance between two losses (or any two sets of runs) on the same collapse task.

    fortifai-bench compare RUN_A RUN_B
    fortifai-bench compare A1,A2,A3 B1,B2,B3          # several seeds per side
    fortifai-bench compare -a A1 -a A2 -b B1 -b B2    # the same, as repeated options

Two questions, two tests:

* Do the two final models answer the same KR questions differently? McNemar's exact test on the final
  stage's KR-split-0 items (`items.split0_correct` in results.json), per seed pair and pooled. The runs must
  have scored the very same questions: the item id hashes must agree, or the comparison is refused.
* Does one loss delay collapse? A bootstrap CI of the difference in time to failure (A - B). With several runs
  per side it resamples seeds (the between-seed spread is the honest uncertainty); with one run on a side it
  resamples questions (paired: the same question ids for both sides) and recomputes each curve. A run that
  never fails counts as the horizon (the number of stages), as on the leaderboard.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard import load_run
from fortifai_bench.metrics import mcnemar


def censored_ttf(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Time to failure of every row of `scores` [rows, stages] (metrics.time_to_failure, vectorized), with
    "not reached" as the number of stages."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    n_stages = scores.shape[1]
    below = scores < threshold
    first = below.argmax(axis=1)
    out = np.full(scores.shape[0], float(n_stages))
    rows = np.flatnonzero(below.any(axis=1))
    i = first[rows]
    prev = scores[rows, np.maximum(i - 1, 0)]
    cur = scores[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):
        interp = (i - 1) + (prev - threshold) / (prev - cur)
    out[rows] = np.where(i == 0, 0.0, interp)
    return out


def _bits(run: dict) -> np.ndarray:
    """[stages, questions] 0/1 matrix of split-0 correctness."""
    return np.array([[c == "1" for c in row] for row in run["items"]["split0_correct"]], dtype=float)


def _label(runs: list[dict]) -> str:
    r = runs[0]
    return f"{r['loss']['spec']} ({r['model']}), seeds {','.join(str(x['seed']) for x in runs)}"


def _check_comparable(runs_a: list[dict], runs_b: list[dict]) -> None:
    runs = runs_a + runs_b
    first = runs[0]
    for r in runs[1:]:
        for what, get in (("task", lambda x: (x["task"]["name"], x["task"]["version"])),
                          ("number of stages", lambda x: len(x["stages"])),
                          ("failure threshold", lambda x: x["failure_threshold"]),
                          ("score", lambda x: x["score_name"])):
            if get(r) != get(first):
                raise FortifaiError(f"cannot compare: {r['_path']} has {what} {get(r)}, "
                                    f"{first['_path']} has {get(first)}")
    for side, group in (("A", runs_a), ("B", runs_b)):
        seeds = [r["seed"] for r in group]
        if len(set(seeds)) != len(seeds):
            raise FortifaiError(f"side {side} lists seed {max(seeds, key=seeds.count)} twice")


def _check_items(runs: list[dict]) -> None:
    missing = [r["_path"] for r in runs if not r.get("items")]
    if missing:
        raise FortifaiError(f"cannot run McNemar: {missing[0]} keeps no per-question results (items)")
    first = runs[0]
    for r in runs[1:]:
        if r["items"]["split0_ids_sha256"] != first["items"]["split0_ids_sha256"]:
            raise FortifaiError(
                f"cannot compare: {r['_path']} scored other KR questions than {first['_path']} "
                f"(split-0 item id hash {r['items']['split0_ids_sha256'][:12]}... vs "
                f"{first['items']['split0_ids_sha256'][:12]}...)")
        if len(r["items"]["split0_correct"][-1]) != len(first["items"]["split0_correct"][-1]):
            raise FortifaiError(f"cannot compare: {r['_path']} and {first['_path']} have the same item hash but "
                                f"different numbers of items")


def _pairs(runs_a: list[dict], runs_b: list[dict]) -> list[tuple[dict, dict]] | None:
    """Seed pairs for McNemar: matching seeds if both sides have the same seeds, else the given order."""
    by_seed_b = {r["seed"]: r for r in runs_b}
    if sorted(by_seed_b) == sorted(r["seed"] for r in runs_a):
        return [(a, by_seed_b[a["seed"]]) for a in sorted(runs_a, key=lambda r: r["seed"])]
    if len(runs_a) == len(runs_b):
        return list(zip(runs_a, runs_b))
    return None


def mcnemar_final(runs_a: list[dict], runs_b: list[dict]) -> dict:
    _check_items(runs_a + runs_b)
    pairs = _pairs(runs_a, runs_b)
    if pairs is None:
        raise FortifaiError(f"cannot pair {len(runs_a)} runs with {len(runs_b)} for McNemar: give the same number "
                            f"of runs (seeds) per side")
    per_pair = []
    for a, b in pairs:
        res = mcnemar(_bits(a)[-1].astype(bool), _bits(b)[-1].astype(bool))
        per_pair.append({"seed_a": a["seed"], "seed_b": b["seed"], **res})
    pooled = mcnemar(np.concatenate([_bits(a)[-1] for a, _ in pairs]).astype(bool),
                     np.concatenate([_bits(b)[-1] for _, b in pairs]).astype(bool))
    return {"stage": len(runs_a[0]["stages"]) - 1, "pairs": per_pair, "pooled": pooled}


def ttf_difference(runs_a: list[dict], runs_b: list[dict], *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """Difference in mean time to failure (A - B) and its bootstrap CI (see module doc for the resampling)."""
    n_stages = len(runs_a[0]["stages"])
    thr = runs_a[0]["failure_threshold"]

    def observed(runs):
        return np.array([n_stages if r["time_to_failure"] is None else r["time_to_failure"] for r in runs], float)

    ta, tb = observed(runs_a), observed(runs_b)
    rng = np.random.default_rng(seed)
    if len(runs_a) >= 2 and len(runs_b) >= 2:
        method = "seeds"
        ia = rng.integers(0, len(ta), size=(n_boot, len(ta)))
        ib = rng.integers(0, len(tb), size=(n_boot, len(tb)))
        diffs = ta[ia].mean(axis=1) - tb[ib].mean(axis=1)
    elif all(r.get("items") for r in runs_a + runs_b):
        _check_items(runs_a + runs_b)
        method = "questions"
        n = len(runs_a[0]["items"]["split0_correct"][0])
        # The same question draw for every run (paired); bits as uint8 keep the [stages, boot, n] gather small.
        idx = rng.integers(0, n, size=(n_boot, n))

        def boot_mean(runs):
            return np.mean([censored_ttf(_bits(r).astype(np.uint8)[:, idx].sum(-1, dtype=np.int64).T / n, thr)
                            for r in runs], axis=0)

        diffs = boot_mean(runs_a) - boot_mean(runs_b)
    else:
        method, diffs = "none", None
    alpha = (1 - level) / 2
    ci = None if diffs is None else [float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))]
    return {
        "a": {"mean": float(ta.mean()), "per_seed": [r["time_to_failure"] for r in runs_a]},
        "b": {"mean": float(tb.mean()), "per_seed": [r["time_to_failure"] for r in runs_b]},
        "difference": float(ta.mean() - tb.mean()), "ci": ci, "level": level, "method": method,
        "n_boot": n_boot if diffs is not None else 0, "horizon": n_stages,
    }


def compare_runs(paths_a: list[str], paths_b: list[str], *, n_boot: int = 2000, seed: int = 0) -> dict:
    if not paths_a or not paths_b:
        raise FortifaiError("compare needs at least one run on each side")
    runs_a, runs_b = [load_run(p) for p in paths_a], [load_run(p) for p in paths_b]
    _check_comparable(runs_a, runs_b)
    both_have_items = all(r.get("items") for r in runs_a + runs_b)
    return {
        "task": dict(runs_a[0]["task"]), "score_name": runs_a[0]["score_name"],
        "a": _label(runs_a), "b": _label(runs_b),
        "mcnemar": mcnemar_final(runs_a, runs_b) if both_have_items else None,
        "time_to_failure": ttf_difference(runs_a, runs_b, n_boot=n_boot, seed=seed),
    }


def format_report(res: dict) -> str:
    lines = [f"{res['task']['name']} v{res['task']['version']}", f"A: {res['a']}", f"B: {res['b']}", ""]
    m = res["mcnemar"]
    if m is None:
        lines.append("McNemar: not available (runs keep no per-question results)")
    else:
        lines.append(f"McNemar (exact) on the final stage ({m['stage']}) {res['score_name']} items:")
        for p in m["pairs"]:
            lines.append(f"  seed {p['seed_a']} vs {p['seed_b']}: {p['n']} questions, only A right {p['only_a']}, "
                         f"only B right {p['only_b']}, p = {p['p_value']:.4g}")
        if len(m["pairs"]) > 1:
            q = m["pooled"]
            lines.append(f"  pooled over {len(m['pairs'])} pairs: {q['n']} question-runs, only A right {q['only_a']}, "
                         f"only B right {q['only_b']}, p = {q['p_value']:.4g}")
    t = res["time_to_failure"]
    lines += ["", f"Time to failure (a run that never fails counts as {t['horizon']}, the horizon):",
              f"  A {t['a']['mean']:.2f} (per seed {_fmt_list(t['a']['per_seed'])}), "
              f"B {t['b']['mean']:.2f} (per seed {_fmt_list(t['b']['per_seed'])})"]
    diff = f"  difference A - B = {t['difference']:+.2f}"
    if t["ci"] is None:
        diff += ": no confidence interval (one run per side and no per-question results)"
    else:
        over = "seeds" if t["method"] == "seeds" else "questions (paired)"
        diff += (f", {t['level']:.0%} bootstrap CI [{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}] "
                 f"({t['n_boot']} resamples over {over})")
    lines.append(diff)
    return "\n".join(lines) + "\n"


def _fmt_list(values: list) -> str:
    return ", ".join("not reached" if v is None else f"{v:.2f}" for v in values)


def _split(values: list[str]) -> list[str]:
    return [p for v in values for p in v.split(",") if p]


def _run(args: argparse.Namespace) -> int:
    if args.sides and (args.a or args.b):
        raise FortifaiError("compare: give either RUN_A RUN_B or -a/-b options, not both")
    if args.sides:
        if len(args.sides) != 2:
            raise FortifaiError(f"compare: expected RUN_A RUN_B (comma-separated for several seeds), "
                                f"got {len(args.sides)} arguments")
        a, b = _split([args.sides[0]]), _split([args.sides[1]])
    else:
        a, b = _split(args.a or []), _split(args.b or [])
    res = compare_runs(a, b, n_boot=args.n_boot, seed=args.seed)
    print(json.dumps(res, indent=2) if args.json else format_report(res), end="\n" if args.json else "")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="McNemar on final-stage KR items and a bootstrap CI of the time-to-failure difference",
        description="Compare two runs (or two sets of seeds) of the same collapse task.")
    p.add_argument("sides", nargs="*", metavar="RUN", help="RUN_A RUN_B; several seeds as A1,A2,A3 B1,B2,B3")
    p.add_argument("-a", action="append", metavar="RUN_A", help="a run of side A (repeatable)")
    p.add_argument("-b", action="append", metavar="RUN_B", help="a run of side B (repeatable)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)
