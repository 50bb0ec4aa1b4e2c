"""The 1-D Gaussian self-consuming loop (Sec. 2.3, Fig. 2; Appendix C, Fig. C4).

The model is N(mu_t, sigma_t^2). Each generation draws N samples from it with a *sampling bias*
gamma_s (`sampling_bias`): the generator favours its confident region. Three readings of "sampling
bias gamma_s" (`sampler`):

* ``scale-sd`` (default): draw from N(mu_t, (gamma_s sigma_t)^2): the variance factor lambda = gamma_s^2;
* ``scale-variance``: draw from N(mu_t, gamma_s sigma_t^2): lambda = gamma_s (this package's reading
  before issue 15);
* ``nucleus``: draw only from the central region of mass gamma_s (top-p sampling with p = gamma_s):
  lambda = 1 - 2 b phi(b) / gamma_s with b = Phi^-1((1 + gamma_s) / 2).

The next model is fitted to those samples by maximum likelihood on all of them (spec `mle`) or, for
the truncated specs, only on the tails |x - m| >= a s (m, s: mean and standard deviation of the
samples being fitted): the confident samples are dropped, as TCE masks confident tokens.

Which truncation eta(a) describes
---------------------------------
With Z = (X - mu)/s ~ N(0, 1) and ``z^2 phi(z) = phi(z) - (z phi(z))'``:

    int_a^inf z^2 phi(z) dz = a phi(a) + (1 - Phi(a)),   so   E[Z^2 | |Z| >= a] = 1 + a phi(a) / (1 - Phi(a)).

By symmetry the kept samples still have mean mu, so the fitted variance is eta(a) * s^2 with
``eta(a) = 1 + a phi(a)/(1 - Phi(a))`` (eta(0) = 1: no truncation). One generation therefore maps
E[sigma^2_{t+1}] = lambda * eta(a) * E[sigma^2_t] (plain MLE: eta = 1, up to its (N-1)/N bias). For the
nucleus sampler the kept samples lie in a band a s <= |x - mu| < b sigma and the factor is the band's
second moment, 1 + (a' phi(a') - b phi(b)) / (Phi(b) - Phi(a')) with a' = a s / sigma (`generation_factor`).

TCE's gamma -> a (`tce:G`, `confidence`)
---------------------------------------
TCE masks a token when the model's probability of it exceeds gamma; lowering gamma masks more. A
Gaussian sample has no probability, so "confidence" needs a reading (`confidence`):

* ``tail`` (default): the two-sided tail probability P(|Z| >= |z|) (1 at the mode, like the top
  token). Masking it above gamma drops the central mass 1 - gamma: ``a = Phi^-1(1 - gamma/2)``, and
  eta(a) = 1 + 2 a phi(a) / gamma;
* ``density``: the density relative to the mode, exp(-z^2/2): ``a = sqrt(-2 ln gamma)``;
* ``mass``: a sample is confident when it lies inside the central region of mass gamma:
  ``a = Phi^-1((1 + gamma)/2)``, the package's reading before issue 15. Lowering gamma here masks
  *less*, the opposite of TCE's direction.

Which reading reproduces Fig. 2 (baseline collapses, gamma = 0.85 delays the collapse, gamma = 0.80
misbehaves) is worked out in `fortifai_bench/toys/__init__.py`, with the numbers; the default
(``scale-sd`` + ``tail``) is one that does: lambda * eta = 0.81 / 0.951 / 1.008.

Appendix C's estimators (`estimator`)
-------------------------------------
* ``perfect`` (default): the sample maximum-likelihood estimate (mean, and variance with 1/N);
* ``noisy``: the same estimate plus noise proportional to it: mean and standard deviation are each
  multiplied by an independent draw of N(1, noise^2), noise = 0.1, as the authors' notebook does
  (github.com/pedramaghazadeh/ForTIFAI, `src/gaussian_test.ipynb`, cell 2:
  ``noisy_estimator = np.random.normal(1, 0.1)`` times ``np.mean`` and ``np.std``; that cell also
  bootstraps the samples once more before each fit, which this module does not). Appendix C words it
  as the MLE plus N(0, 1) noise (as issue 15 quotes it); added as is to an sd near 1 it would make the
  sd negative in 16% of generations, so this follows the notebook: the MLE plus 0.1 * MLE * e,
  e ~ N(0, 1) (`--noise` sets the 0.1). Fig. C4: over 1,000 generations of N = 10,000 samples the noisy
  estimator collapses, the perfect one drifts much less (BENCHMARKS.md has it measured);
* ``exact``: no sampling at all, the population recurrence sigma^2_{t+1} = lambda eta sigma^2_t.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from scipy import optimize, special, stats
from tqdm.auto import tqdm

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import write_json
from fortifai_bench.toys import common
from fortifai_bench.toys.configs import CONFIDENCES, ESTIMATORS, SAMPLERS, GaussianConfig  # noqa: F401

TASK = "toy_gaussian"
# min(r, 1/r), r = sigma_t^2 / sigma_0^2: 1 = kept, falls on collapse *and* on divergence (so the plots draw r)
SCORE_NAME = "variance_retention"

def eta(a):
    """Variance amplification of fitting only the tails |z| >= a of a standard normal (vectorised)."""
    a = np.asarray(a, dtype=float)
    # norm.sf is 1 - Phi computed without cancellation, so large a stays accurate.
    return 1.0 + a * stats.norm.pdf(a) / stats.norm.sf(a)


def band_second_moment(a: float, b: float) -> float:
    """E[Z^2 | a <= |Z| < b] for Z ~ N(0, 1) (b may be inf)."""
    bphi = 0.0 if math.isinf(b) else b * stats.norm.pdf(b)
    mass = stats.norm.cdf(b) - stats.norm.cdf(a)
    return float(1.0 + (a * stats.norm.pdf(a) - bphi) / mass)


def a_from_gamma(gamma: float, confidence: str = "tail") -> float:
    """The half-width a (in standard deviations) below which TCE with threshold gamma drops a sample."""
    if confidence == "tail":      # drop where P(|Z| >= |z|) > gamma: the central mass 1 - gamma
        return float(stats.norm.isf(gamma / 2.0))
    if confidence == "density":   # drop where exp(-z^2 / 2) > gamma
        return float(math.sqrt(-2.0 * math.log(gamma)))
    if confidence == "mass":      # drop the central region of mass gamma
        return float(stats.norm.ppf((1.0 + gamma) / 2.0))
    raise FortifaiError(f"toy gaussian: confidence must be one of {', '.join(CONFIDENCES)}, got '{confidence}'")


def gamma_from_a(a: float, confidence: str = "tail") -> float:
    if confidence == "tail":
        return float(2.0 * stats.norm.sf(a))
    if confidence == "density":
        return float(math.exp(-a * a / 2.0))
    return float(2.0 * stats.norm.cdf(a) - 1.0)


def nucleus_b(config: GaussianConfig) -> float:
    """Half-width (in sigma_t) of the region the nucleus sampler draws from; inf for the other samplers."""
    if config.sampler != "nucleus" or config.sampling_bias == 1:
        return math.inf
    return float(stats.norm.ppf((1.0 + config.sampling_bias) / 2.0))


def sampler_lambda(config: GaussianConfig) -> float:
    """lambda: the variance of one generation's samples over sigma_t^2."""
    if config.sampler == "scale-sd":
        return config.sampling_bias ** 2
    if config.sampler == "scale-variance":
        return config.sampling_bias
    return band_second_moment(0.0, nucleus_b(config))


def generation_factor(config: GaussianConfig, a: float | None) -> float:
    """E[sigma^2_{t+1}] / sigma^2_t in the population limit: lambda * eta(a) (the nucleus sampler: its band)."""
    lam = sampler_lambda(config)
    if a is None or a == 0:
        return lam
    b = nucleus_b(config)
    if math.isinf(b):
        return lam * float(eta(a))
    a_model = a * math.sqrt(lam)  # the threshold a s in units of sigma_t
    return band_second_moment(a_model, b) if a_model < b else math.inf


def balanced_a(config: GaussianConfig) -> float:
    """The a with generation_factor = 1: truncation that exactly offsets the sampling bias."""
    lam, b = sampler_lambda(config), nucleus_b(config)
    if lam >= 1:
        raise FortifaiError(f"truncated:auto needs a sampling bias below 1, got {config.sampling_bias:g}")
    hi = 10.0 if math.isinf(b) else b / math.sqrt(lam) * (1 - 1e-9)
    if generation_factor(config, hi) < 1.0:  # nucleus with b < 1: even the outermost band has variance < sigma^2
        raise FortifaiError(f"truncated:auto: no truncation offsets the nucleus sampler at sampling bias "
                            f"{config.sampling_bias:g} (it keeps |z| < {b:.3f} only)")
    return float(optimize.brentq(lambda a: generation_factor(config, a) - 1.0, 0.0, hi, xtol=1e-12))


@dataclasses.dataclass(frozen=True)
class Method:
    spec: str               # canonical: mle | tce:<gamma> | truncated:<a, 4 significant digits>
    a: float | None         # None = plain maximum likelihood
    gamma: float | None = None

    def args(self, config: GaussianConfig) -> dict:
        if self.a is None:
            return {}
        out = {"a": self.a, "eta": float(eta(self.a)), "lambda": sampler_lambda(config),
               "factor": generation_factor(config, self.a)}
        if self.gamma is not None:
            out.update(gamma=self.gamma, confidence=config.confidence)
        return out


def parse_method(spec: str, config: GaussianConfig) -> Method:
    """`mle`, `tce:G` (TCE's gamma under `config.confidence`), `truncated:A` (A in sd) or `truncated:auto`."""
    spec = spec.strip()
    if spec == "mle":
        return Method("mle", None)
    name, _, value = spec.partition(":")
    if name == "tce" and value:
        gamma = common.parse_number(value, f"method '{spec}'", 0.0, 1.0, closed_hi=True)
        a = a_from_gamma(gamma, config.confidence)
        return Method(f"tce:{gamma:g}", a if a > 0 else None, gamma)
    if name != "truncated" or not value:
        raise FortifaiError(f"toy gaussian: method '{spec}' not understood; "
                            "use mle, tce:G, truncated:A or truncated:auto")
    if value.startswith("gamma="):
        raise FortifaiError(f"toy gaussian: method '{spec}': truncated:gamma=G (drop the central mass G) is now "
                            f"tce:G with --confidence mass; the paper's TCE reading is tce:G")
    if value == "auto":
        a = balanced_a(config)
    else:
        a = common.parse_number(value, f"method '{spec}'", 0.0, 10.0)
    a = float(f"{a:.4g}")  # the spec is the identity on a leaderboard: round once, use the rounded value
    return Method(f"truncated:{a:g}", a)


def fit(x: np.ndarray, a: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood mean and variance per row of x, on all samples or only the tails |x - m| >= a s."""
    if a is None:
        return x.mean(axis=1), x.var(axis=1)
    m, s = x.mean(axis=1, keepdims=True), x.std(axis=1, keepdims=True)
    keep = np.abs(x - m) >= a * s
    n = keep.sum(axis=1)
    if n.min() < 2:
        raise FortifaiError(f"toy gaussian: truncation at a={a:g} kept {n.min()} of {x.shape[1]} samples, too few "
                            "to fit a variance; use a smaller a or more --samples")
    mu = np.where(keep, x, 0.0).sum(axis=1) / n
    var = np.where(keep, (x - mu[:, None]) ** 2, 0.0).sum(axis=1) / n
    return mu, var


def draw(config: GaussianConfig, mu: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One generation's samples per chain (rows), under the configured sampler."""
    shape = (mu.size, config.samples)
    b = nucleus_b(config)
    if math.isinf(b):
        z = math.sqrt(sampler_lambda(config)) * rng.standard_normal(shape)
    else:  # inverse-CDF draws from N(0, 1) restricted to |z| < b
        lo = float(special.ndtr(-b))
        z = special.ndtri(rng.uniform(lo, 1.0 - lo, shape))
    return mu[:, None] + np.sqrt(var)[:, None] * z


def simulate(config: GaussianConfig, a: float | None, seed: int, chains: int = 1,
             progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run `chains` independent loops; returns (means, variances), each of shape (generations + 1, chains)."""
    rng = np.random.default_rng(seed)
    mu = np.full(chains, config.mu0, dtype=float)
    var = np.full(chains, config.sigma0 ** 2, dtype=float)
    factor = generation_factor(config, a)
    means, variances = [mu], [var]
    for _ in tqdm(range(config.generations), desc=f"gaussian a={a} seed {seed}", disable=not progress, leave=False):
        if config.estimator == "exact":
            var = factor * var
        else:
            mu, var = fit(draw(config, mu, var, rng), a)
            if config.estimator == "noisy":  # the authors' noisy estimator: mean and sd times N(1, noise^2)
                mu = mu * (1.0 + config.noise * rng.standard_normal(chains))
                var = var * (1.0 + config.noise * rng.standard_normal(chains)) ** 2
        # Keep far-gone chains inside float range (their score is 0 long before), so that every run
        # has generations + 1 stages and the seeds of one method can be merged stage by stage.
        var = np.clip(var, 1e-150, 1e150)
        means.append(mu)
        variances.append(var)
    return np.stack(means), np.stack(variances)


def gaussian_kl(mu_p: float, var_p: float, mu_q: float, var_q: float) -> float:
    """KL(N(mu_p, var_p) || N(mu_q, var_q)) in nats."""
    return 0.5 * (math.log(var_q / var_p) + (var_p + (mu_p - mu_q) ** 2) / var_q - 1.0)


def run(config: GaussianConfig, method: str, seed: int, *, out_dir: Path | None = None,
        progress: bool = True) -> dict:
    m = parse_method(method, config)
    means, variances = simulate(config, m.a, seed, progress=progress)
    var0 = config.sigma0 ** 2
    factor = generation_factor(config, m.a)
    stages = []
    for t, (mu, var) in enumerate(zip(means[:, 0], variances[:, 0])):
        r = float(var / var0)
        stages.append({"stage": t, "score": min(r, 1.0 / r), "kr_total": None,
                       "kl": gaussian_kl(config.mu0, var0, float(mu), float(var)),
                       "mean": float(mu), "variance": float(var), "variance_ratio": r,
                       "recurrence_ratio": min(factor ** t, 1e300)})
    cfg = {**dataclasses.asdict(config), "seed": seed}
    results = common.build_results(
        task=TASK, loss={"spec": m.spec, "target": "1-D Gaussian, mean and variance", "args": m.args(config)},
        model="gaussian-1d", seed=seed, config=cfg, score_name=SCORE_NAME,
        failure_threshold=config.failure_threshold, stages=stages)
    if out_dir is not None:
        write_json(Path(out_dir) / "results.json", results)
    return results


# ---------------------------------------------------------------- plots
def _variance_plot(runs: list[dict], path: Path, *, recurrence: bool):
    """sigma_t^2 / sigma_0^2 on a log axis (a blow-up rises, a collapse falls), mean over seeds with its
    95% band, both failure bounds, each method's mean time to failure; with `recurrence`, (lambda eta)^t dotted."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    groups = common.group_by_spec(runs)
    cfg = runs[0]["config"]
    lam = sampler_lambda(GaussianConfig(**{k: v for k, v in cfg.items() if k in GaussianConfig.__dataclass_fields__}))
    lo_all, hi_all = 0.4, 2.5
    for i, (spec, group) in enumerate(groups.items()):
        color = f"C{i}"
        x = [s["stage"] for s in group[0]["stages"]]
        ratios = [[s["variance_ratio"] for s in r["stages"]] for r in group]
        factor = group[0]["loss"]["args"].get("factor", lam)  # plain MLE: lambda
        common.plot_band(ax, x, ratios, color=color, log=True, label=fr"{spec} ($\lambda\eta$ = {factor:.3f})")
        mean = common.mean_band(ratios, log=True)[0]
        lo_all, hi_all = min(lo_all, float(mean.min())), max(hi_all, float(mean.max()))
        if recurrence:
            ax.plot(x, [s["recurrence_ratio"] for s in group[0]["stages"]], color=color, ls=":", lw=1.2,
                    label=fr"{spec}: recurrence $(\lambda\eta)^t$")
        ttf = [r["time_to_failure"] for r in group if r["time_to_failure"] is not None]
        if ttf:
            t_mean = sum(ttf) / len(ttf)
            y = np.interp(t_mean, x, mean)
            ax.plot([t_mean], [y], marker="o", mfc="white", color=color, ls="none", ms=7,
                    label=f"{spec}: time to failure {t_mean:.1f} ({len(ttf)}/{len(group)} seeds)")
    th = runs[0]["failure_threshold"]
    ax.axhline(1 / th, color="k", ls="--", lw=0.9, label=fr"failure: $\sigma_t^2 = {1 / th:g}\,\sigma_0^2$ (blow-up)")
    ax.axhline(th, color="k", ls="-.", lw=0.9, label=fr"failure: $\sigma_t^2 = {th:g}\,\sigma_0^2$ (collapse)")
    common.seeds_legend_note(ax, max(len(g) for g in groups.values()))
    ax.set_yscale("log")
    ax.set_ylim(max(lo_all / 2, 1e-6), min(hi_all * 2, 1e6))
    ax.set_xlabel("generation $t$")
    ax.set_ylabel(r"$\sigma_t^2 / \sigma_0^2$ (log scale; up = blow-up)")
    ax.set_title(fr"Gaussian loop: $N$ = {cfg['samples']:,}, sampler {cfg['sampler']}, "
                 fr"$\gamma_s$ = {cfg['sampling_bias']:g} ($\lambda$ = {lam:.3f}), estimator {cfg['estimator']}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3, which="both")
    return common.save_figure(fig, path)


def plot_scores(runs: list[dict], path: Path):
    """`scores.png` for this toy: the variance ratio itself, since min(r, 1/r) would draw a blow-up as a fall."""
    return _variance_plot(runs, path, recurrence=False)


def plot_comparison(runs: list[dict], out: Path):
    """Fig. 2 as `<out>/variance.png` (+ .svg): the variance ratio per method with its recurrence (dotted)."""
    return _variance_plot(runs, Path(out) / "variance.png", recurrence=True)
