"""What the three toys share: method specs, seeds, run folders, `results.json`, provenance, plots.

Every toy run is one (method, seed) pair and writes `<out>/<method>/seed_<s>/results.json` in the
same shape as the text collapse runs (contract 5, `kind: "toy"`), so the leaderboard can publish it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from fortifai_bench import results
from fortifai_bench import seeds as seed_syntax
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_write, write_json
from fortifai_bench.metrics import NEVER_LEARNED, failure, mean_ci, summarize_failures
from fortifai_bench.results import make_results, run_failure

from fortifai_bench.results import RESULTS_FORMAT  # noqa: E402,F401  (one contract: results.py)


# ---------------------------------------------------------------- argument parsing
def parse_seeds(seed: int | None, seeds: str | None) -> list[int]:
    """`--seed 3` or `--seeds 0,1,2` / `0-4` (the package-wide syntax of `seeds.parse_seeds`); default seed 0."""
    return seed_syntax.parse_seeds(seeds, default=0 if seed is None else int(seed))


def split_methods(text: str) -> list[str]:
    items = [m.strip() for m in text.split(",") if m.strip()]
    if not items:
        raise FortifaiError("--methods: give at least one method, e.g. mle,truncated:auto")
    return items


def parse_number(value: str, what: str, lo: float, hi: float, *, closed_hi: bool = False) -> float:
    """A float in (lo, hi) (or (lo, hi] when closed_hi); the error names the method spec."""
    try:
        x = float(value)
    except ValueError:
        raise FortifaiError(f"{what}: '{value}' is not a number") from None
    if not (lo < x < hi or (closed_hi and x == hi)):
        raise FortifaiError(f"{what}: {x:g} must lie in ({lo:g}, {hi:g}{']' if closed_hi else ')'}")
    return x


def safe_name(spec: str) -> str:
    """A method spec as a folder name (`truncated:0.125` -> `truncated-0.125`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", spec)


def default_out(task: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task}-{stamp}"


# ---------------------------------------------------------------- results.json
# The results contract, its writer and provenance live in fortifai_bench.results (one for text and toys).
TOY_PACKAGES = ("fortifai-bench", "numpy", "scipy", "scikit-learn", "matplotlib")


def provenance(packages: Sequence[str] = TOY_PACKAGES) -> dict:
    return results.provenance(" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), packages)


def config_hash(config: dict) -> str:
    """sha256 of the resolved config without seed and output folder (runs that differ only there compare)."""
    return results.config_hash(config, ignore=("seed", "out"))


def build_results(*, task: str, loss: dict, model: str, seed: int, config: dict, score_name: str,
                  failure_threshold: float, stages: list[dict], packages: Sequence[str] | None = None,
                  extra: dict | None = None) -> dict:
    """A toy run's results (`results.make_results`, kind "toy"). `config` must be the same for every seed
    apart from `seed` (it is hashed); per-seed facts go in `extra`. No `items` block: toys have no KR."""

    for s in stages:
        s.setdefault("kr_total", None)
    return make_results(kind="toy", task={"name": task, "version": 1}, loss=loss, model=model, seed=seed,
                        config=config, score_name=score_name, failure_threshold=failure_threshold, stages=stages,
                        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                        packages=tuple(packages) if packages else TOY_PACKAGES, **(extra or {}))


# ---------------------------------------------------------------- plots
PNG_DPI = 200


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display on the machines that run this)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # SVG text stays text (editable in a paper's figure, searchable), not glyph outlines.
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def save_figure(fig, path: str | os.PathLike):
    """`path` as a 200-dpi PNG and, beside it, the same figure as SVG (each written atomically).
    Returns the figure (closed: its artists stay inspectable, as the tests do)."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=PNG_DPI, bbox_inches="tight")
    with atomic_write(path.with_suffix(".svg"), "wb") as f:
        fig.savefig(f, format="svg", bbox_inches="tight")
    pyplot().close(fig)
    return fig


def group_by_spec(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by method spec, in first-seen order."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["loss"]["spec"], []).append(r)
    return groups


def mean_band(values, *, log: bool = False, level: float = 0.95):
    """Per column of `values` (seeds x stages): mean and the t-interval over seeds (no band for one seed).
    With `log`, both are taken on log10 and mapped back (a geometric mean), for quantities on a log axis."""
    import numpy as np
    from scipy import stats

    y = np.asarray(values, dtype=float)
    if log:
        y = np.log10(np.clip(y, 1e-300, None))
    m = y.mean(axis=0)
    n = y.shape[0]
    half = stats.t.ppf(0.5 + level / 2, n - 1) * y.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else 0 * m
    lo, hi = m - half, m + half
    return (10 ** m, 10 ** lo, 10 ** hi) if log else (m, lo, hi)


def plot_band(ax, x, values, *, color: str, label: str, log: bool = False, marker: str | None = None,
              bounds: tuple[float, float] | None = None) -> None:
    """Every seed as a faint line, the mean over seeds as a solid one (labelled) and its 95% band shaded
    (clipped to `bounds` where the quantity has them: a t-interval over 3 seeds can leave [0, 1])."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if values.shape[0] > 1:
        for row in values:
            ax.plot(x, row, color=color, alpha=0.25, lw=0.7)
    m, lo, hi = mean_band(values, log=log)
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    ax.plot(x, m, color=color, lw=1.8, label=label, marker=marker, ms=4)
    if values.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def seeds_legend_note(ax, n_seeds: int) -> None:
    """Legend entries for the faint per-seed lines and the band (proxy artists: they draw nothing)."""
    if n_seeds > 1:
        ax.plot([], [], color="0.5", alpha=0.35, lw=0.7, label=f"single seeds ({n_seeds})")
        ax.fill_between([], [], color="0.5", alpha=0.2, lw=0, label="95% CI of the mean")


SCORE_LABELS = {  # axis labels of the toys' scores
    "exp_neg_kl": r"$\exp(-\mathrm{KL}(\mathrm{original}\,\|\,\mathrm{model}))$",
    "diversity_retention": "diversity retention\n(within-digit pixel sd, generated / real)",
    "variance_retention": r"variance retention $\min(r, 1/r)$, $r = \sigma_t^2/\sigma_0^2$",
}


def plot_scores(runs: list[dict], path: Path, title: str, *, ylabel: str | None = None):
    """Score per generation: mean over seeds with a 95% band per method, the failure threshold, and each
    method's mean time to failure (over the seeds that failed) marked on the threshold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    groups = group_by_spec(runs)
    threshold = runs[0]["failure_threshold"]
    for i, (spec, group) in enumerate(groups.items()):
        x = [s["stage"] for s in group[0]["stages"]]
        scores = [[s["score"] for s in r["stages"]] for r in group]
        top = max(1.0, max(max(row) for row in scores))  # scores are >= 0; exp(-KL) and retention <= 1
        plot_band(ax, x, scores, color=f"C{i}", label=spec, bounds=(0.0, top))
        ttf = summarize_failures([run_failure(r) for r in group])  # the one summary over seeds
        t = ttf["mean"] if ttf["mean"] is not None else ttf["km_median"]
        if t is not None:
            ax.plot([t], [threshold], marker="v", ms=8, color=f"C{i}", ls="none",
                    label=f"{spec}: time to failure {ttf['text']}")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"failure threshold ({threshold:g})")
    seeds_legend_note(ax, max(len(g) for g in groups.values()))
    ax.set_xlabel("generation $t$")
    ax.set_ylabel(ylabel or SCORE_LABELS.get(runs[0]["score_name"], runs[0]["score_name"]))
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------- driver shared by the three CLIs
def run_grid(task: str, run_one: Callable[..., dict], config, methods: Sequence[str], seeds: Sequence[int],
             out: Path, *, progress: bool = True, extra_plot: Callable[[list[dict], Path], object] | None = None,
             score_plot: Callable[[list[dict], Path], object] | None = None) -> dict:
    """Run every (method, seed), write each `results.json`, `summary.json`, `scores.png` (the toy's own
    `score_plot(runs, path)` where it has one) and the toy's comparison plot (`extra_plot(runs, out)`)."""
    out = Path(out)
    runs = []
    for method in methods:
        for seed in seeds:
            run_dir = out / safe_name(method) / f"seed_{seed}"
            runs.append(run_one(config, method, seed, out_dir=run_dir, progress=progress))
    summary = {"task": task, "runs": []}
    for spec in dict.fromkeys(r["loss"]["spec"] for r in runs):
        group = [r for r in runs if r["loss"]["spec"] == spec]
        ttf = [r["time_to_failure"] for r in group]
        status = [failure([s["score"] for s in r["stages"]], r["failure_threshold"]).status for r in group]
        summary["runs"].append({
            "spec": spec, "seeds": [r["seed"] for r in group], "time_to_failure": ttf, "status": status,
            "failed": sum(t is not None for t in ttf), "final_score": mean_ci([r["final_score"] for r in group]),
            "summary": summarize_failures([run_failure(r) for r in group]),
            "score_name": group[0]["score_name"], "failure_threshold": group[0]["failure_threshold"]})
    write_json(out / "summary.json", summary)
    if score_plot is not None:
        score_plot(runs, out / "scores.png")
    else:
        plot_scores(runs, out / "scores.png", f"{task}: score `{runs[0]['score_name']}` per generation")
    if extra_plot is not None:
        extra_plot(runs, out)
    return summary


def print_summary(summary: dict, out: Path) -> None:
    for row in summary["runs"]:
        statuses = row.get("status", [None] * len(row["time_to_failure"]))
        ttf = ", ".join(f"{t:.1f}" if t is not None else "never learned (below threshold at 0)"
                        if st == NEVER_LEARNED else "never" for t, st in zip(row["time_to_failure"], statuses))
        print(f"{summary['task']} {row['spec']:<22} final {row['score_name']} {row['final_score']['mean']:.3f}"
              f"  time to failure (seeds {row['seeds']}): {ttf}")
    print(f"results in {out}")
