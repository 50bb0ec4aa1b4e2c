"""Gaussian mixtures trained on their own samples: Algorithm 2 (Sec. 4.7, Fig. 8).

Generation 0 fits scikit-learn's `GaussianMixture` to N samples of a fixed 3-component 2-D mixture.
Each later generation fits a fresh mixture to the previous model's samples: draw N points, and keep
all of them (spec `mle`, the baseline) or only those whose log-likelihood under the generating model is
at or below its P-th percentile (spec `truncated:P`; P = 80 in Algorithm 2: the 20% most confident
samples are dropped).

Two variants (`variant`):

* ``algorithm2`` (default): Algorithm 2 as written: the sampler is plain `GaussianMixture.sample`
  (no sampling bias). Only finite-sample noise drives the baseline's collapse, and dropping 20% per
  generation *over-corrects*: the spread grows and `truncated:80` fails **sooner** than the baseline.
  This variant does **not** reproduce Fig. 8 (BENCHMARKS.md has it measured).
* ``biased``: the sampler carries a sampling bias lambda (`sampling_bias`, default 0.9: each
  component's covariance scaled by lambda when sampling), the Gaussian toy's stand-in for decoding
  that favours confident outputs. Not in Algorithm 2. With it the baseline collapses quickly and
  truncation delays the failure, Fig. 8's ordering.

The authors' GMM notebook (github.com/pedramaghazadeh/ForTIFAI, `src/gmm/Normals_GMM_experiments.ipynb`)
was absent from the snapshot read for this module, so whether their Fig. 8 run sampled with a bias is
not known here; the default follows Algorithm 2's text.

Measured per generation: KL(original || fitted) by Monte Carlo over `kl_samples` (default 20,000)
draws from the original mixture, fixed per seed; each original component's matched fitted variance
(matching by Hungarian assignment on the means); a scatter of the training data. Score:
``exp(-KL)`` (1 = the original, 0 = nothing left); failure when it falls below 0.5, i.e. KL > ln 2 nats.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import write_json
from fortifai_bench.toys import common
from fortifai_bench.toys.configs import VARIANTS, GMMConfig  # noqa: F401

TASK = "toy_gmm"
SCORE_NAME = "exp_neg_kl"  # exp(-KL(original || generation t)), KL by Monte Carlo

# The original mixture (fixed: part of task version 1).
WEIGHTS = np.array([0.40, 0.35, 0.25])
MEANS = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
COVS = np.array([[[1.0, 0.5], [0.5, 1.0]], [[1.0, -0.3], [-0.3, 0.6]], [[0.5, 0.0], [0.0, 1.5]]])


@dataclasses.dataclass(frozen=True)
class Method:
    spec: str                  # mle | truncated:<percentile>
    percentile: float | None   # keep samples with log-likelihood <= this percentile; None keeps all


def parse_method(spec: str, config: GMMConfig | None = None) -> Method:
    spec = spec.strip()
    if spec == "mle":
        return Method("mle", None)
    name, _, value = spec.partition(":")
    if name != "truncated" or not value:
        raise FortifaiError(f"toy gmm: method '{spec}' not understood; use mle or truncated:P (P a percentile, e.g. 80)")
    p = common.parse_number(value, f"method '{spec}'", 0.0, 100.0)
    return Method(f"truncated:{p:g}", p)


def _mixture(weights, means, covs):
    from sklearn.mixture import GaussianMixture

    g = GaussianMixture(len(weights), covariance_type="full")
    g.weights_, g.means_, g.covariances_ = np.asarray(weights), np.asarray(means), np.asarray(covs)
    g.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(g.covariances_))
    return g


def original_mixture():
    return _mixture(WEIGHTS, MEANS, COVS)


def sample(g, n: int, rng: np.random.Generator, sampling_bias: float = 1.0) -> np.ndarray:
    """n draws from mixture g with each covariance scaled by sampling_bias (our rng, not sklearn's)."""
    comp = rng.choice(len(g.weights_), size=n, p=g.weights_ / g.weights_.sum())
    chol = np.linalg.cholesky(g.covariances_)[comp]
    z = rng.standard_normal((n, g.means_.shape[1], 1))
    return g.means_[comp] + math.sqrt(sampling_bias) * (chol @ z)[..., 0]


def truncate(g, x: np.ndarray, percentile: float | None) -> np.ndarray:
    """Algorithm 2's filter: keep the samples at or below the percentile of their log-likelihood under g."""
    if percentile is None:
        return x
    ll = g.score_samples(x)
    return x[ll <= np.percentile(ll, percentile)]


def match_components(g) -> np.ndarray:
    """For each original component, the index of the fitted component whose mean is closest (one-to-one)."""
    cost = ((MEANS[:, None, :] - g.means_[None, :, :]) ** 2).sum(-1)
    _, cols = linear_sum_assignment(cost)
    return cols


def generation_metrics(g, reference: np.ndarray, ref_logp: np.ndarray) -> dict:
    kl = float(np.mean(ref_logp - g.score_samples(reference)))
    cols = match_components(g)
    var = [float(np.trace(g.covariances_[j]) / 2) for j in cols]
    ratio = [v / float(np.trace(COVS[k]) / 2) for k, v in enumerate(var)]
    return {"score": math.exp(-kl), "kr_total": None, "kl": kl, "component_variances": var,
            "component_variance_ratio": float(np.exp(np.mean(np.log(ratio)))),
            "weights": [float(g.weights_[j]) for j in cols], "means": g.means_[cols].round(4).tolist()}


def run(config: GMMConfig, method: str, seed: int, *, out_dir: Path | None = None, progress: bool = True,
        keep_data_at: tuple[int, ...] | None = None) -> dict:
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    m = parse_method(method, config)
    rng = np.random.default_rng(seed)
    orig = original_mixture()
    reference = sample(orig, config.kl_samples, rng)
    ref_logp = orig.score_samples(reference)
    data = sample(orig, config.samples, rng)
    G = config.generations
    snap_at = keep_data_at if keep_data_at is not None else sorted({0, G // 4, G // 2, 3 * G // 4, G})
    snapshots, stages = {}, []
    # One BLAS thread: the matrices are 2x2, and on a shared 2-core machine extra threads only spin
    # (measured 3-5x slower with the default thread pool under load).
    with threadpool_limits(1):
        for t in tqdm(range(G + 1), desc=f"gmm {m.spec} seed {seed}", disable=not progress, leave=False):
            if t in snap_at:
                snapshots[t] = data
            g = GaussianMixture(3, covariance_type="full", random_state=seed * 100_003 + t).fit(data)
            stages.append({"stage": t, **generation_metrics(g, reference, ref_logp), "train_size": int(len(data))})
            data = truncate(g, sample(g, config.samples, rng, config.sampling_bias), m.percentile)
    results = common.build_results(
        task=TASK, loss={"spec": m.spec, "target": "2-D mixture of 3 Gaussians (sklearn GaussianMixture)",
                         "args": {} if m.percentile is None else {"percentile": m.percentile}},
        model="gmm-3x2d", seed=seed, config={**dataclasses.asdict(config), "seed": seed}, score_name=SCORE_NAME,
        failure_threshold=config.failure_threshold, stages=stages)
    if out_dir is not None:
        write_json(Path(out_dir) / "results.json", results)
        plot_scatter(snapshots, Path(out_dir) / "scatter.png", f"{m.spec}, seed {seed}")
    return results


def plot_scatter(snapshots: dict[int, np.ndarray], path: Path, title: str):
    """Fig. 8: each snapshot generation's training data, on the original mixture's axes."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(snapshots), figsize=(2.6 * len(snapshots), 2.8), sharex=True, sharey=True)
    for i, (ax, (t, x)) in enumerate(zip(np.atleast_1d(axes), snapshots.items())):
        ax.scatter(x[:, 0], x[:, 1], s=3, alpha=0.5, label="training data")
        ax.scatter(MEANS[:, 0], MEANS[:, 1], marker="x", color="k", s=40, label="original means")
        ax.set_title(f"generation {t} ({len(x)} points)", fontsize=9)
        ax.set_xlim(-9, 9)
        ax.set_ylim(-5, 10)
        if i == 0:
            ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(f"Gaussian mixture training data: {title}", fontsize=10, y=1.04)
    return common.save_figure(fig, path)


def plot_comparison(runs: list[dict], out: Path):
    """`<out>/gmm.png` (+ .svg): KL from the original and the component-variance ratio per generation:
    per method the mean over seeds (geometric, log axes) with its 95% band, single seeds faint."""
    plt = common.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.9))
    groups = common.group_by_spec(runs)
    kl_fail = -math.log(runs[0]["failure_threshold"])
    for i, (spec, group) in enumerate(groups.items()):
        x = [s["stage"] for s in group[0]["stages"]]
        kl = [[max(s["kl"], 1e-4) for s in r["stages"]] for r in group]
        common.plot_band(ax1, x, kl, color=f"C{i}", label=spec, log=True)
        common.plot_band(ax2, x, [[s["component_variance_ratio"] for s in r["stages"]] for r in group],
                         color=f"C{i}", label=spec, log=True)
        ttf = [r["time_to_failure"] for r in group if r["time_to_failure"] is not None]
        if ttf:
            ax1.plot([sum(ttf) / len(ttf)], [kl_fail], marker="v", ms=8, color=f"C{i}", ls="none",
                     label=f"{spec}: time to failure {sum(ttf) / len(ttf):.1f} ({len(ttf)}/{len(group)} seeds)")
    ax1.axhline(kl_fail, color="k", ls="--", lw=1, label=r"failure: KL = $\ln 2$")
    ax1.set(yscale="log", xlabel="generation $t$", ylabel=r"KL(original $\|$ model) [nats]")
    ax2.axhline(1.0, color="k", ls=":", lw=1, label="original (ratio 1)")
    ax2.set(yscale="log", xlabel="generation $t$",
            ylabel="component variance / original\n(geometric mean; up = spread grows)")
    n_seeds = max(len(g) for g in groups.values())
    for ax in (ax1, ax2):
        common.seeds_legend_note(ax, n_seeds)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    cfg = runs[0]["config"]
    what = ("Algorithm 2 as written (no sampling bias)" if cfg.get("variant", "algorithm2") == "algorithm2"
            else fr"biased sampler, $\lambda$ = {cfg['sampling_bias']:g} (not in Algorithm 2)")
    fig.suptitle(f"GMM, {what}: $N$ = {cfg['samples']:,}, KL from {cfg['kl_samples']:,} Monte Carlo samples",
                 fontsize=10, y=1.0)
    fig.tight_layout()
    return common.save_figure(fig, Path(out) / "gmm.png")
