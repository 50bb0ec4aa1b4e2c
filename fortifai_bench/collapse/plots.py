"""Plots of a collapse run (matplotlib, PNG, written atomically).

* `kr.png`: KR-split-0 and KR-total per stage with the failure threshold (the paper's Fig. 6).
* `kl.png`: KL(original || generated) of unigrams (split 0; all splits) and bigrams per stage (Fig. 7).
* `confidence.png`: histograms of next-token probability on the model's own generations versus on
  unseen real text, one panel per stage (Fig. 1).
* `compare_kr.png` (`plot_compare`): KR-split-0 per stage of several losses (mean over seeds).
"""

from __future__ import annotations

import os
from pathlib import Path

from fortifai_bench.io import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def plot_run(results: dict, out_dir: str | os.PathLike) -> list[Path]:
    plt = _plt()
    out = Path(out_dir)
    stages = results["stages"]
    if not stages:
        return []
    x = [s["stage"] for s in stages]
    title = f"{results['task']['name']} | {results['loss']['spec']} | seed {results['seed']}"
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    if all(s["score"] is not None for s in stages):
        ax.plot(x, [s["score"] for s in stages], "o-", label="KR split 0")
        ax.plot(x, [s["kr_total"] for s in stages], "s--", label="KR total")
        ax.axhline(results["failure_threshold"], color="red", lw=1, ls=":", label="failure threshold")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance")
    ax.set(xlabel="stage", ylabel="KR accuracy", ylim=(0.4, 1.02), title=title)
    ax.set_xticks(x)
    ax.legend(loc="lower left")
    _save(fig, out / "kr.png")
    written.append(out / "kr.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    # split 0 alone is the same amount of text at every stage, so its KL is comparable across stages;
    # the all-splits figures cover more text each stage (less sampling noise in the estimate).
    if all(s.get("kl_split0") is not None for s in stages):
        ax.plot(x, [s["kl_split0"] for s in stages], "o-", label="unigram, split 0")
    ax.plot(x, [s["kl"] for s in stages], "^:", label="unigram, all regenerated splits")
    ax.plot(x, [s["kl_bigram"] for s in stages], "s--", label="bigram, all regenerated splits")
    ax.set(xlabel="stage", ylabel="KL(original || generated), nats", title=title)
    ax.set_xticks(x)
    ax.legend()
    _save(fig, out / "kl.png")
    written.append(out / "kl.png")

    n = len(stages)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], stages):
        for key, label in (("own_generated", "own generations"), ("unseen_real", "unseen real text")):
            h = s["confidence"][key]["hist"]
            total = max(1, sum(h["counts"]))
            edges = h["edges"]
            ax.stairs([c / total for c in h["counts"]], edges, label=label, fill=key == "own_generated",
                      alpha=0.5 if key == "own_generated" else 1.0)
        ax.set(title=f"stage {s['stage']}", xlabel="p(next token)")
    axes[0][0].set_ylabel("share of tokens")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, out / "confidence.png")
    written.append(out / "confidence.png")
    return written


def plot_compare(groups: dict[str, list[dict]], path: str | os.PathLike, threshold: float = 0.75) -> Path:
    """KR-split-0 per stage for several losses: the mean over each loss's seeds, every seed faint."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in groups.items():
        curves = [[s["score"] for s in r["stages"]] for r in runs if r["stages"]]
        if not curves:
            continue
        width = min(len(c) for c in curves)
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(width)]
        line, = ax.plot(range(width), mean, "o-", label=f"{label} (n={len(curves)})")
        for c in curves if len(curves) > 1 else []:
            ax.plot(range(len(c)), c, color=line.get_color(), alpha=0.25, lw=0.8)
    ax.axhline(threshold, color="red", lw=1, ls=":", label="failure threshold")
    ax.set(xlabel="stage", ylabel="KR split 0", ylim=(0.4, 1.02))
    ax.legend(loc="lower left")
    _save(fig, Path(path))
    return Path(path)
