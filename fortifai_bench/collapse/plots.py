"""Plots of collapse runs (matplotlib; every figure as a 200-dpi PNG and an SVG, written atomically).

One run (`plot_run`, into RUN/plots/):
* `kr`: KR-split-0 and KR-total per stage, the failure threshold, chance, the base model's own KR where the runs
  share one base (a pretrained LM), the time to failure marked (Fig. 6).
* `kl`: KL(original || generated) of split 0's unigrams per stage, in nats, beside the floor two real samples
  give (Fig. 7).
* `gradient`: per token class (corrupted and faithful regenerated tokens, fresh real ones), the share above gamma
  in training, what TCE(gamma) masks (`gradient.trained`); and the share of regenerated training tokens that are
  corrupted, and of the loss's gradient-bearing tokens that are (`collapse.corruption`).
* `confidence`: next-token probability on the model's own generations vs unseen real text, per stage (Fig. 1).

Several losses over seeds (`plot_compare`, the experiment summary and `fortifai-bench compare --plot`):
KR-split-0 and KL of split 0 per stage, the mean over seeds with a shaded 95% t-band (seeds faint), the clean
control dashed, the threshold (and the base model's own KR where every run shares one base) and each loss's
time to failure marked. `plot_mechanism` beside it: the paper's mechanism over seeds, Fig. 1's contrast per loss
(mean confidence of M_i on its own rewrite and on unseen real text) and, per loss, each token class's share above
gamma in training (the `gradient` figure's left panel).

For a paper: stage ticks are the integer stages, every axis says its unit, the shaded band says what it is, every
reference line is drawn inside the axes (a KL floor far above the curves is named in a caption under the
figure instead), and legends sit under the axes, where they hide no point.
"""

from __future__ import annotations

import os
from pathlib import Path

from fortifai_bench.io import atomic_write
from fortifai_bench.metrics import DEFAULT_THRESHOLD, mean_ci
from fortifai_bench.results import stage_mechanism, summarize_runs

FORMATS = (("png", {"dpi": 200}), ("svg", {}))
STAGE = "stage $i$ (model $M_i$)"
KL = r"$\mathrm{KL}(p_\mathrm{original}\,\|\,p_\mathrm{generated})$ of split 0 (nats)"
BAND = "shaded: 95% t-interval of the mean over seeds"
FLOOR_IN_AXES = 2.0  # a KL floor up to this many times the highest curve is drawn; above, it squashes the curves


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


def _stage_ticks(ax, stages) -> None:
    """Integer stage ticks: every stage when they fit, else integers only."""
    from matplotlib.ticker import MaxNLocator

    stages = sorted(set(stages))
    if len(stages) <= 12:
        ax.set_xticks(stages)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_below(ax, ncol: int = 2, extra: list = ()):
    """The legend (plus `extra` handles) under the axes, below the x label: it covers no point."""
    handles = ax.get_legend_handles_labels()[0] + list(extra)
    return ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=ncol, fontsize=7,
                     frameon=False)


def _caption(fig, lines: list[str]) -> None:
    """Text under everything the figure holds (legends included): what the axes do not show."""
    if not lines:
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes] + [leg.get_window_extent(renderer) for leg in fig.legends]
    bottom = min(box.y0 for box in boxes) / fig.bbox.height
    fig.text(0.5, bottom - 0.02, "\n".join(lines), ha="center", va="top", fontsize=7)


def _reference_lines(ax, threshold: float, base: float | None = None) -> None:
    ax.axhline(threshold, color="tab:red", lw=1, ls=":", label=f"failure threshold ({threshold:g})")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance (0.5)")
    if base is not None:  # a pretrained LM knows much before any stage: where "no knowledge kept" lies
        ax.axhline(base, color="tab:purple", lw=0.9, ls="-.", label=f"base model, before any stage ({base:.3f})")


def _base_score(runs: list[dict]) -> float | None:
    """The base model's own headline KR before any stage (RUN/chance.json), where every run has the same one
    (a pretrained LM; the tiny regimes' bases differ per seed, and then none is drawn)."""
    values = {((r.get("chance") or {}).get("base_model") or {}).get("kr_split0") for r in runs}
    return values.pop() if len(values) == 1 and None not in values else None


def _kr_limits(ax, values) -> None:
    """KR from 0.4 (or below the lowest value) to 1: a collapsed model's scores stay on the axes."""
    low = min([v for v in values if v is not None] + [0.45])
    ax.set_ylim(min(0.4, low - 0.05), 1.02)


def plot_run(results: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Every figure of one run into `out_dir` (see module doc); [] for a run without KR scores."""
    stages = results["stages"]
    if not stages or any(s["score"] is None for s in stages):
        return []
    out, written = Path(out_dir), []
    for name, make in (("kr", kr_figure), ("kl", kl_figure), ("gradient", gradient_figure),
                       ("confidence", confidence_figure)):
        fig = make(results)
        if fig is not None:
            written += save(fig, out / name)
    return written


def _title(results: dict) -> str:
    return f"{results['task']['name']} | {results['loss']['spec']} | seed {results['seed']}"


def kr_figure(results: dict):
    plt, stages = _plt(), results["stages"]
    x = [s["stage"] for s in stages]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [s["score"] for s in stages], "o-", label="KR split 0")
    totals = [s["kr_total"] for s in stages if s["kr_total"] is not None]  # none under eval.kr_splits: first
    if len(totals) == len(stages):
        ax.plot(x, totals, "s--", label="KR total")
    _reference_lines(ax, results["failure_threshold"], _base_score([results]))
    t = results["failure"]["time"]
    if t is not None:
        ax.axvline(t, color="tab:red", lw=0.8, alpha=0.6, label=f"time to failure ({t:.2f} stages)")
    ax.set(xlabel=STAGE, ylabel="KR accuracy (share of questions)", title=_title(results))
    _kr_limits(ax, [s["score"] for s in stages] + totals + [_base_score([results])])
    _stage_ticks(ax, x)
    _legend_below(ax, ncol=3)
    return fig


def kl_figure(results: dict):
    plt, stages = _plt(), results["stages"]
    x = [s["stage"] for s in stages]
    fig, ax = plt.subplots(figsize=(6, 4))
    values = [s.get("kl_split0") for s in stages]
    if all(v is not None for v in values):
        ax.plot(x, values, "o-", label="split 0, regenerated vs original")
    caption = _floor_lines(ax, stages[0].get("kl_floor") or {}, values)
    ax.set(xlabel=STAGE, ylabel=KL, title=_title(results))
    ax.set_ylim(bottom=0)
    _stage_ticks(ax, x)
    if ax.get_legend_handles_labels()[0]:
        _legend_below(ax)
    _caption(fig, caption)
    return fig


def gradient_figure(results: dict):
    """Where the loss puts its gradient (`collapse.corruption`), left: each token class's share above gamma in
    training (`gradient.trained`, every step's own model state): what TCE(gamma) masks, so for a TCE run at that
    gamma the share it masked; right: the corrupted share of the regenerated tokens and of the loss's
    gradient-bearing ones, in eval mode with the model that starts each stage (`gradient.start`). A panel a run
    did not record is left out; None when it recorded neither."""
    stages = results["stages"]
    trained = [(s["stage"], (s.get("gradient") or {}).get("trained")) for s in stages]
    start = [(s["stage"], (s.get("gradient") or {}).get("start")) for s in stages]
    panels = [(draw, points) for draw, points in ((_trained_panel, [(i, t) for i, t in trained if t]),
                                                  (_start_panel, [(i, g) for i, g in start if g])) if points]
    if not panels:
        return None
    fig, axes = _plt().subplots(1, len(panels), figsize=(5.4 * len(panels), 4.2), squeeze=False,
                                layout="constrained")
    for ax, (draw, points) in zip(axes[0], panels):
        draw(ax, points, results)
        ax.set(ylim=(0, 1), xlim=(stages[0]["stage"] - 0.3, stages[-1]["stage"] + 0.3))
        _stage_ticks(ax, [s["stage"] for s in stages])
        _legend_below(ax, ncol=1)
    fig.suptitle(_title(results), fontsize=10)
    return fig


TOKEN_CLASSES = (("corrupted", "corrupted regenerated tokens", "o-", "tab:red"),
                 ("faithful", "faithful regenerated tokens", "s-", "tab:blue"),
                 ("fresh", "fresh real tokens", "^--", "tab:green"))


def _mask_axes(ax, gamma: float, title: str) -> None:
    ax.set(xlabel=STAGE + ", in training", ylabel=f"share with $p_t > {gamma:g}$ (what TCE({gamma:g}) masks)",
           title=title)


def _trained_panel(ax, points: list[tuple[int, dict]], results: dict) -> None:
    for name, label, style, color in TOKEN_CLASSES:
        cells = [(i, t[name]) for i, t in points if t.get(name)]
        if cells:
            ax.plot([i for i, _ in cells], [c["share_above_gamma"] for _, c in cells], style, label=label, color=color)
    _mask_axes(ax, points[0][1]["gamma"], "the mask as trained")


def _start_panel(ax, points: list[tuple[int, dict]], results: dict) -> None:
    x = [i for i, _ in points]
    ax.plot(x, [g["corrupted_share"] for _, g in points], "o-", label="corrupted share of regenerated tokens")
    if all(g.get("kept_corrupted_share") is not None for _, g in points):
        ax.plot(x, [g["kept_corrupted_share"] for _, g in points], "s--",
                label=f"corrupted share of {results['loss']['spec']}'s gradient-bearing tokens")
    ax.set(xlabel="stage $i$ (mask of $M_{i-1}$ at the start of the stage, eval mode)", ylabel="share of tokens",
           title="corrupted tokens and the loss's mask")


def confidence_figure(results: dict):
    stages = results["stages"]
    n = len(stages)
    # constrained layout: the title above the panels' own titles, the legend under the panels, nothing overlaps
    fig, axes = _plt().subplots(1, n, figsize=(2.6 * n, 3.2), sharey=True, squeeze=False, layout="constrained")
    for ax, s in zip(axes[0], stages):
        for key, label in (("own_generated", "the model's own generations"), ("unseen_real", "unseen real text")):
            h = s["confidence"][key]["hist"]
            total = max(1, sum(h["counts"]))
            ax.stairs([c / total for c in h["counts"]], h["edges"], label=label, fill=key == "own_generated",
                      alpha=0.5 if key == "own_generated" else 1.0)
        ax.set(title=f"stage {s['stage']} ($M_{{{s['stage']}}}$)", xlim=(0, 1),
               xlabel=r"next-token probability $p(x_t \mid x_{<t})$")
    axes[0][0].set_ylabel("share of tokens")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8,
               frameon=False)
    fig.suptitle(_title(results), fontsize=10)
    return fig


def plot_mechanism(groups: dict[str, list[dict]], stem: str | os.PathLike, control: str = "control") -> list[Path]:
    """The mechanism over seeds (see `mechanism_figure`), saved at `stem`; [] when no run recorded it."""
    fig = mechanism_figure(groups, control)
    return [] if fig is None else save(fig, Path(stem))


def mechanism_figure(groups: dict[str, list[dict]], control: str = "control"):
    """The paper's mechanism over seeds. Left, Fig. 1's contrast (Sec. 2.1.1) for every loss: the mean
    confidence of M_i on its own rewrite of its pool (solid) and on unseen real text (dashed). Then one panel per
    loss other than the control whose runs recorded the mask as trained (`gradient.trained`): each token class's
    share above gamma in training, what TCE(gamma) masks. None when no run has confidence records."""
    groups = {k: [r for r in runs if r["stages"]] for k, runs in groups.items()}
    groups = {k: runs for k, runs in groups.items()
              if runs and all(s.get("confidence") for r in runs for s in r["stages"])}
    if not groups:
        return None
    masked = {k: runs for k, runs in groups.items() if k != control and _mask_gamma(runs) is not None}
    n = 1 + len(masked)
    fig, axes = _plt().subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False, sharey=True, layout="constrained")
    _confidence_panel(axes[0][0], groups, control)
    for ax, (label, runs) in zip(axes[0][1:], masked.items()):
        _mask_panel(ax, label, runs)
    stages = {s["stage"] for runs in groups.values() for r in runs for s in r["stages"]}
    seeds = max(len(runs) for runs in groups.values())
    for ax in axes[0]:
        _stage_ticks(ax, stages)
        _legend_below(ax, ncol=1, extra=_band_key() if seeds > 1 and ax is axes[0][-1] else ())
    return fig


def _confidence_panel(ax, groups: dict[str, list[dict]], control: str) -> None:
    for label, runs in groups.items():
        name = "clean control" if label == control else label
        own = _band(ax, runs, lambda s: _confidence(s, "own_generated"), f"{name}: own rewrite")
        _band(ax, runs, lambda s: _confidence(s, "unseen_real"), f"{name}: unseen real text",
              color=own.get_color(), ls="--", marker="^")
    ax.set(xlabel=STAGE, ylabel=r"mean next-token probability $p(x_t \mid x_{<t})$",
           title="Fig. 1: confidence of $M_i$", ylim=(0, 1))


def _mask_panel(ax, label: str, runs: list[dict]) -> None:
    for name, text, style, color in TOKEN_CLASSES:
        if any(_share(s, name) is not None for r in runs for s in r["stages"]):
            _band(ax, runs, lambda s, name=name: _share(s, name), text, color=color, ls=style[1:], marker=style[0])
    _mask_axes(ax, _mask_gamma(runs), f"{label}: the mask as trained")
    ax.yaxis.set_tick_params(labelleft=True)  # shared y, but each panel reads alone


def _mask_gamma(runs: list[dict]) -> float | None:
    """The gamma of the mask as trained, from the first stage of these runs that trained on a regenerated token
    class (corrupted or faithful); None when none did."""
    for stage in (s for r in runs for s in r["stages"]):
        m = stage_mechanism(stage)
        if "corrupted" in m["mask_trained"] or "faithful" in m["mask_trained"]:
            return m["gamma"]
    return None


def _confidence(stage: dict, text: str) -> float | None:
    return stage_mechanism(stage)["confidence"].get(text)


def _share(stage: dict, name: str) -> float | None:
    return stage_mechanism(stage)["mask_trained"].get(name)


def _floor_lines(ax, floor: dict, values: list) -> list[str]:
    """The KL two real samples give, as reference lines inside the axes (the y range grows to hold them); a floor
    far above the curves (on `facts` two real samples name different entities, so their unigram KL is large)
    would squash them against the axis, so it is returned as a caption line instead."""
    top = max([v for v in values if v is not None] or [0.0])
    caption = []
    for key, style, label in (("split1", "--", "real split 0 vs real split 1"),
                              ("halves", "-.", "two real halves of split 0")):
        f = floor.get(key)
        if f is None:
            continue
        if top and f > FLOOR_IN_AXES * top:
            caption.append(f"KL floor, {label}: {f:.2f} nats (above the plotted range)")
        else:
            ax.axhline(f, color="black", ls=style, lw=0.8, label=f"KL floor, {label} ({f:.2f})")
    return caption


def _band(ax, runs: list[dict], key, label: str, **style):
    """Mean over seeds with a 95% t-band, each seed faint; returns the mean line. `key`: a stage record's field,
    or a function of the stage record (None where it has no value)."""
    get = key if callable(key) else (lambda s: s.get(key))
    curves = [[get(s) for s in r["stages"]] for r in runs if r["stages"]]
    width = min(len(c) for c in curves)
    x = [i for i in range(width) if any(c[i] is not None for c in curves)]
    stats = [mean_ci([c[i] for c in curves if c[i] is not None]) for i in x]
    mean = [st["mean"] for st in stats]
    style = {"marker": "o", **style}
    line, = ax.plot(x, mean, label=f"{label} (mean of {len(curves)})", **style)
    if len(curves) > 1:
        ax.fill_between(x, [st["ci"][0] for st in stats], [st["ci"][1] for st in stats],
                        color=line.get_color(), alpha=0.18, lw=0)
        for c in curves:
            ax.plot(x, [c[i] for i in x], color=line.get_color(), alpha=0.3, lw=0.7, ls=line.get_linestyle())
    return line


def _band_key() -> list:
    """Legend entries that say what a band and a faint line are (each loss's band has its loss's colour)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [Patch(color="grey", alpha=0.25, lw=0, label=BAND),
            Line2D([], [], color="grey", alpha=0.5, lw=0.7, label="faint lines: each seed")]


def plot_compare(groups: dict[str, list[dict]], stem: str | os.PathLike, threshold: float = DEFAULT_THRESHOLD,
                 control: str = "control") -> list[Path]:
    """KR-split-0 and KL of split 0 per stage for several losses (see module doc), saved at `stem`."""
    return save(compare_figure(groups, threshold, control), Path(stem))


def compare_figure(groups: dict[str, list[dict]], threshold: float = DEFAULT_THRESHOLD, control: str = "control"):
    fig, (ax, ax_kl) = _plt().subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    stages, scores, kl_values, seeds = set(), [], [], 1
    for label, runs in groups.items():
        runs = [r for r in runs if r["stages"]]
        if not runs:
            continue
        seeds = max(seeds, len(runs))
        stages |= {s["stage"] for r in runs for s in r["stages"]}
        scores += [s.get("score") for r in runs for s in r["stages"]]
        style = {"color": "dimgrey", "ls": "--"} if label == control else {}
        name = "clean control" if label == control else label
        line = _band(ax, runs, "score", name, **style)
        ttf = summarize_runs(runs)["time_to_failure"]
        t = ttf["mean"] if ttf["mean"] is not None else ttf["km_median"]
        if t is not None:  # the mean when every seed failed, else the Kaplan-Meier median
            where = "" if ttf["mean"] is not None else f"; marker: Kaplan-Meier median {t:.2f}"
            where += " stages, mean [95% t-interval]" if "[" in ttf["text"] else ""
            ax.plot([t], [threshold], marker="v", ms=9, color=line.get_color(), ls="none",
                    label=f"{name}: time to failure {ttf['text']}{where}")
        if all(s.get("kl_split0") is not None for r in runs for s in r["stages"]):
            _band(ax_kl, runs, "kl_split0", name, **style)
            kl_values += [s["kl_split0"] for r in runs for s in r["stages"]]
    base = _base_score([r for runs in groups.values() for r in runs])
    _reference_lines(ax, threshold, base)
    ax.set(xlabel=STAGE, ylabel="KR split 0 (share of questions)", title="knowledge retention")
    _kr_limits(ax, scores + [base])
    first = next((r for runs in groups.values() for r in runs if r["stages"]), None)
    caption = _floor_lines(ax_kl, first["stages"][0].get("kl_floor") or {}, kl_values) if first else []
    ax_kl.set(xlabel=STAGE, ylabel=KL, title="drift of the regenerated split 0")
    ax_kl.set_ylim(bottom=0)
    _stage_ticks(ax, stages or {0})
    _stage_ticks(ax_kl, stages or {0})
    # One legend for both panels, under them (each loss has one colour in both): it hides no point.
    entries = {}
    for a in (ax, ax_kl):
        for handle, label in zip(*a.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    handles = list(entries.values()) + (_band_key() if seeds > 1 else [])
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    _caption(fig, caption)
    return fig
