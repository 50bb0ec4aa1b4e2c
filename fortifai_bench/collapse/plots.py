"""Plots of collapse runs (matplotlib; every figure as a 200-dpi PNG and an SVG, written atomically).

One run (`plot_run`, into RUN/plots/):
* `kr`: KR-split-0 and KR-total per stage, the failure threshold, chance, the time to failure marked (Fig. 6).
* `kl`: KL(original || generated) of split 0's unigrams per stage beside the floor two real samples give (Fig. 7).
* `gradient`: the share of regenerated training tokens that are corrupted, and the share of the loss's
  gradient-bearing tokens that are (`collapse.corruption`).
* `confidence`: next-token probability on the model's own generations vs unseen real text, per stage (Fig. 1).

Several losses over seeds (`plot_compare`, the experiment summary and `fortifai-bench compare --plot`):
KR-split-0 and KL of split 0 per stage, the mean over seeds with a shaded 95% t-band (seeds faint), the clean
control dashed, the threshold and each loss's time to failure marked.
"""

from __future__ import annotations

import os
from pathlib import Path

from fortifai_bench.io import atomic_write
from fortifai_bench.metrics import DEFAULT_THRESHOLD

FORMATS = (("png", {"dpi": 200}), ("svg", {}))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: Path) -> list[Path]:
    """`stem`.png and `stem`.svg (its text kept as text, so it stays editable); returns both paths."""
    import matplotlib

    out = []
    for ext, kwargs in FORMATS:
        path = stem.with_name(f"{stem.name}.{ext}")
        with atomic_write(path, "wb") as f, matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(f, format=ext, bbox_inches="tight", **kwargs)
        out.append(path)
    _plt().close(fig)
    return out


def _reference_lines(ax, threshold: float) -> None:
    ax.axhline(threshold, color="tab:red", lw=1, ls=":", label=f"failure threshold ({threshold:g})")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance (0.5)")


def plot_run(results: dict, out_dir: str | os.PathLike) -> list[Path]:
    plt = _plt()
    out = Path(out_dir)
    stages = results["stages"]
    if not stages or any(s["score"] is None for s in stages):
        return []
    x = [s["stage"] for s in stages]
    title = f"{results['task']['name']} | {results['loss']['spec']} | seed {results['seed']}"
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [s["score"] for s in stages], "o-", label="KR split 0")
    ax.plot(x, [s["kr_total"] for s in stages], "s--", label="KR total")
    _reference_lines(ax, results["failure_threshold"])
    t = results["failure"]["time"]
    if t is not None:
        ax.axvline(t, color="tab:red", lw=0.8, alpha=0.6, label=f"time to failure ({t:.2f})")
    ax.set(xlabel="stage $i$ (model $M_i$)", ylabel="KR accuracy", ylim=(0.4, 1.02), title=title, xticks=x)
    ax.legend(loc="lower left", fontsize=8)
    written += save(fig, out / "kr")

    fig, ax = plt.subplots(figsize=(6, 4))
    if all(s.get("kl_split0") is not None for s in stages):
        ax.plot(x, [s["kl_split0"] for s in stages], "o-", label="split 0, regenerated vs original")
    _floor_lines(ax, stages[0].get("kl_floor") or {}, [s.get("kl_split0") for s in stages])
    ax.set(xlabel="stage $i$", ylabel=r"$\mathrm{KL}(p_\mathrm{original}\,\|\,p_\mathrm{generated})$, nats",
           title=title, xticks=x)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    written += save(fig, out / "kl")

    grad = [(s["stage"], s.get("gradient") or {}) for s in stages]
    grad = [(i, g.get("start")) for i, g in grad if g.get("start")]
    if grad:
        fig, ax = plt.subplots(figsize=(6, 4))
        gx = [i for i, _ in grad]
        ax.plot(gx, [g["corrupted_share"] for _, g in grad], "o-", label="corrupted share of regenerated tokens")
        if all(g.get("kept_corrupted_share") is not None for _, g in grad):
            ax.plot(gx, [g["kept_corrupted_share"] for _, g in grad], "s--",
                    label=f"corrupted share of {results['loss']['spec']}'s gradient-bearing tokens")
        ax.set(xlabel="stage $i$ (mask of $M_{i-1}$ at the start of the stage)", ylabel="share of tokens",
               ylim=(0, 1), title=title, xticks=gx)
        ax.legend(fontsize=8)
        written += save(fig, out / "gradient")

    n = len(stages)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], stages):
        for key, label in (("own_generated", "own generations"), ("unseen_real", "unseen real text")):
            h = s["confidence"][key]["hist"]
            total = max(1, sum(h["counts"]))
            ax.stairs([c / total for c in h["counts"]], h["edges"], label=label, fill=key == "own_generated",
                      alpha=0.5 if key == "own_generated" else 1.0)
        ax.set(title=f"stage {s['stage']}", xlabel=r"$p(x_t \mid x_{<t})$")
    axes[0][0].set_ylabel("share of tokens")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    written += save(fig, out / "confidence")
    return written


def _floor_lines(ax, floor: dict, values: list) -> None:
    """The KL two real samples give, as reference lines; when it is far above the curves (on `facts` two
    real samples name different entities, so their unigram KL is large) it is stated in the legend
    instead of squashing the curves against the axis."""
    top = max([v for v in values if v is not None] or [0.0])
    for key, style, label in (("split1", "--", "real split 0 vs real split 1"),
                              ("halves", ":", "two real halves of split 0")):
        f = floor.get(key)
        if f is None:
            continue
        if top and f > 1.5 * top:
            ax.plot([], [], color="grey", ls=style, lw=1, label=f"floor, {label}: {f:.2f} (off the axis)")
        else:
            ax.axhline(f, color="grey", ls=style, lw=1, label=f"floor, {label}")


def _band(ax, runs: list[dict], key: str, label: str, **style):
    """Mean over seeds with a 95% t-band, each seed faint; returns the mean line."""
    from fortifai_bench.metrics import mean_ci

    curves = [[s.get(key) for s in r["stages"]] for r in runs if r["stages"]]
    width = min(len(c) for c in curves)
    x = list(range(width))
    stats = [mean_ci([c[i] for c in curves if c[i] is not None]) for i in x]
    mean = [st["mean"] for st in stats]
    line, = ax.plot(x, mean, marker="o", label=f"{label} (mean of {len(curves)})", **style)
    if len(curves) > 1:
        ax.fill_between(x, [st["ci"][0] for st in stats], [st["ci"][1] for st in stats],
                        color=line.get_color(), alpha=0.18, lw=0)
        for c in curves:
            ax.plot(x, c[:width], color=line.get_color(), alpha=0.3, lw=0.7)
    return line


def plot_compare(groups: dict[str, list[dict]], stem: str | os.PathLike, threshold: float = DEFAULT_THRESHOLD,
                 control: str = "control") -> list[Path]:
    """KR-split-0 and KL of split 0 per stage for several losses (see module doc)."""
    from fortifai_bench.results import summarize_runs

    plt = _plt()
    fig, (ax, ax_kl) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, runs in groups.items():
        runs = [r for r in runs if r["stages"]]
        if not runs:
            continue
        style = {"color": "dimgrey", "ls": "--"} if label == control else {}
        name = "clean control" if label == control else label
        line = _band(ax, runs, "score", name, **style)
        ttf = summarize_runs(runs)["time_to_failure"]
        t = ttf["mean"] if ttf["mean"] is not None else ttf["km_median"]
        if t is not None:  # the mean when every seed failed, else the Kaplan-Meier median
            where = "" if ttf["mean"] is not None else f"; marker: Kaplan-Meier median {t:.2f}"
            ax.plot([t], [threshold], marker="v", ms=9, color=line.get_color(), ls="none",
                    label=f"{name}: time to failure {ttf['text']}{where}")
        if all(s.get("kl_split0") is not None for r in runs for s in r["stages"]):
            _band(ax_kl, runs, "kl_split0", name, **style)
    _reference_lines(ax, threshold)
    ax.set(xlabel="stage $i$ (model $M_i$)", ylabel="KR split 0", ylim=(0.4, 1.02), title="knowledge retention")
    ax.legend(loc="lower left", fontsize=7)
    first = next((r for runs in groups.values() for r in runs if r["stages"]), None)
    if first is not None:
        values = [s.get("kl_split0") for runs in groups.values() for r in runs for s in r["stages"]]
        _floor_lines(ax_kl, first["stages"][0].get("kl_floor") or {}, values)
    ax_kl.set(xlabel="stage $i$", ylabel=r"$\mathrm{KL}(p_\mathrm{original}\,\|\,p_\mathrm{generated})$ of split 0",
              title="drift of the regenerated split 0")
    ax_kl.set_ylim(bottom=0)
    if ax_kl.get_legend_handles_labels()[0]:
        ax_kl.legend(fontsize=7)
    return save(fig, Path(stem))
