"""Paired significance between two losses (or any two sets of runs) on the same collapse task.

    fortifai-bench compare RUN_A RUN_B
    fortifai-bench compare A1,A2,A3 B1,B2,B3          # several seeds per side
    fortifai-bench compare -a A1 -a A2 -b B1 -b B2    # the same, as repeated options

Two questions, two tests:

* Does one loss delay collapse? Seeds are the unit: Welch's t-test over seeds on the restricted time to
  failure min(time, last stage) (`metrics.compare_failures`; a seed that never failed is censored at the
  last stage, and the summary says so). With one run on a side there is no seed-level test; then a bootstrap
  over questions (paired: the same question draw for both sides) gives an interval that reflects question
  sampling within that one seed only, and is labelled as such.
* Do the two final models answer the same KR questions differently? McNemar's exact test on the final
  stage's KR-split-0 items, per seed pair. The runs must have scored the very same questions (item id
  hashes agree). No pooled McNemar: two seeds of one loss share nothing but their questions, so pooling
  question-runs would treat dependent outcomes as independent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from fortifai_bench.errors import FortifaiError
from fortifai_bench.results import check_same_base, load_results as load_run
from fortifai_bench.metrics import mcnemar


def censored_ttf(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The restricted time to failure of every row of `scores` [rows, stages]: `metrics.Failure.restricted`
    vectorized (never failed -> the last stage), except that a row below the threshold at M_0 gives 0."""
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    n_stages = scores.shape[1]
    below = scores < threshold
    first = below.argmax(axis=1)
    out = np.full(scores.shape[0], float(n_stages - 1))
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
    return {"stage": len(runs_a[0]["stages"]) - 1, "pairs": per_pair}


def ttf_difference(runs_a: list[dict], runs_b: list[dict], *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """Time to failure of both sides (`metrics.summarize_failures`), the seed-level test, and with one run
    on a side the question bootstrap (see module doc)."""
    from fortifai_bench.metrics import compare_failures
    from fortifai_bench.results import run_failure, summarize_runs

    fa, fb = [run_failure(r) for r in runs_a], [run_failure(r) for r in runs_b]
    out = {"a": summarize_runs(runs_a)["time_to_failure"], "b": summarize_runs(runs_b)["time_to_failure"],
           "seeds": compare_failures(fa, fb), "questions": None}
    if (len(runs_a) < 2 or len(runs_b) < 2) and all(r.get("items") for r in runs_a + runs_b):
        out["questions"] = _question_bootstrap(runs_a, runs_b, n_boot, seed, level)
    return out


def _question_bootstrap(runs_a, runs_b, n_boot, seed, level) -> dict:
    _check_items(runs_a + runs_b)
    thr = runs_a[0]["failure_threshold"]
    n = len(runs_a[0]["items"]["split0_correct"][0])
    # The same question draw for every run (paired); bits as uint8 keep the [stages, boot, n] gather small.
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def boot_mean(runs):
        return np.mean([censored_ttf(_bits(r).astype(np.uint8)[:, idx].sum(-1, dtype=np.int64).T / n, thr)
                        for r in runs], axis=0)

    diffs = boot_mean(runs_a) - boot_mean(runs_b)
    alpha = (1 - level) / 2
    return {"ci": [float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))], "level": level,
            "n_boot": n_boot, "note": "question sampling within these runs only, not seed-to-seed variation"}


def compare_runs(paths_a: list[str], paths_b: list[str], *, n_boot: int = 2000, seed: int = 0,
                 plot: str | None = None) -> dict:
    if not paths_a or not paths_b:
        raise FortifaiError("compare needs at least one run on each side")
    runs_a, runs_b = [load_run(p) for p in paths_a], [load_run(p) for p in paths_b]
    _check_comparable(runs_a, runs_b)
    check_same_base([], runs_a + runs_b, "cannot compare losses trained from different base models")
    both_have_items = all(r.get("items") for r in runs_a + runs_b)
    if plot:
        from fortifai_bench.collapse.plots import plot_compare

        plot_compare({f"A: {runs_a[0]['loss']['spec']}": runs_a, f"B: {runs_b[0]['loss']['spec']}": runs_b},
                     Path(plot), runs_a[0]["failure_threshold"])
    return {
        "task": dict(runs_a[0]["task"]), "score_name": runs_a[0]["score_name"],
        "a": _label(runs_a), "b": _label(runs_b),
        "mcnemar": mcnemar_final(runs_a, runs_b) if both_have_items else None,
        "time_to_failure": ttf_difference(runs_a, runs_b, n_boot=n_boot, seed=seed),
    }


def format_report(res: dict) -> str:
    lines = [f"{res['task']['name']} v{res['task']['version']}", f"A: {res['a']}", f"B: {res['b']}", ""]
    t = res["time_to_failure"]
    lines += ["Time to failure (stages from M_0; a seed that never fails is censored at the last stage):",
              f"  A {t['a']['text']}", f"  B {t['b']['text']}"]
    v = t["seeds"]
    if v["diff"] is None:
        lines.append(f"  {v['test']}: not possible, a side has no seed that learned (M_0 below the threshold)")
    else:
        test = (f"p = {v['p_value']:.3g} ({v['test']}, {v['n_a']} vs {v['n_b']} seeds)" if v["p_value"] is not None
                else f"no seed-level test ({v['test']} needs 2 learned seeds a side)")
        lines.append(f"  restricted mean A - B = {v['diff']:+.2f}, A / B = {_ratio(v['ratio'])}; {test}")
    q = t["questions"]
    if q is not None:
        lines.append(f"  {q['level']:.0%} bootstrap CI of A - B over questions [{q['ci'][0]:+.2f}, {q['ci'][1]:+.2f}] "
                     f"({q['n_boot']} resamples; {q['note']})")
    m = res["mcnemar"]
    lines.append("")
    if m is None:
        lines.append("McNemar: not available (runs keep no per-question results)")
    else:
        lines.append(f"McNemar (exact) on the final stage ({m['stage']}) {res['score_name']} items, per seed pair:")
        for p in m["pairs"]:
            lines.append(f"  seed {p['seed_a']} vs {p['seed_b']}: {p['n']} questions, only A right {p['only_a']}, "
                         f"only B right {p['only_b']}, p = {p['p_value']:.4g}")
    return "\n".join(lines) + "\n"


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


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
    res = compare_runs(a, b, n_boot=args.n_boot, seed=args.seed, plot=args.plot)
    print(json.dumps(res, indent=2) if args.json else format_report(res), end="\n" if args.json else "")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare", help="time to failure over seeds (Welch's t-test) and McNemar on final-stage KR items",
        description="Compare two runs (or two sets of seeds) of the same collapse task.")
    p.add_argument("sides", nargs="*", metavar="RUN", help="RUN_A RUN_B; several seeds as A1,A2,A3 B1,B2,B3")
    p.add_argument("-a", action="append", metavar="RUN_A", help="a run of side A (repeatable)")
    p.add_argument("-b", action="append", metavar="RUN_B", help="a run of side B (repeatable)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (default: a report)")
    p.add_argument("--plot", default=None, metavar="STEM",
                   help="also write STEM.png and STEM.svg: both sides' KR-split-0 and KL per stage (default: none)")
    p.set_defaults(func=_run)
