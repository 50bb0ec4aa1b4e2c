"""The toys' configs: the fields, defaults and checks of each toy, importable without numpy or scipy.

`fortifai-bench --help` reads its defaults and choices from these dataclasses (cli/toy.py), so building the
parser imports none of the toys' numerics; each toy module (`gaussian`, `gmm`, `vae`) re-exports its config
and derives what follows from it (the Gaussian's lambda: `gaussian.sampler_lambda`).
"""

from __future__ import annotations

import dataclasses

from fortifai_bench.errors import FortifaiError

SAMPLERS = ("scale-sd", "scale-variance", "nucleus")
CONFIDENCES = ("tail", "density", "mass")
ESTIMATORS = ("perfect", "noisy", "exact")
VARIANTS = {"algorithm2": 1.0, "biased": 0.9}  # gmm: variant -> its default sampling bias
SAMPLINGS = ("mode", "bernoulli")  # vae: how generated pixels are drawn
N_CLASSES = 10  # vae: scikit-learn's digits 0-9


@dataclasses.dataclass
class GaussianConfig:
    samples: int = 10_000
    generations: int = 100
    sampling_bias: float = 0.9        # gamma_s: how much the generator favours its confident region
    sampler: str = "scale-sd"         # reading of gamma_s: scale-sd | scale-variance | nucleus
    confidence: str = "tail"          # reading of TCE's gamma for tce:G: tail | density | mass
    estimator: str = "perfect"        # Appendix C: perfect (sample MLE) | noisy (MLE x N(1, noise^2)) | exact
    noise: float = 0.1                # relative noise of the noisy estimator
    failure_threshold: float = 0.5    # variance halved or doubled
    mu0: float = 0.0
    sigma0: float = 1.0

    def __post_init__(self):
        if self.samples < 10:
            raise FortifaiError(f"toy gaussian: --samples must be >= 10, got {self.samples}")
        if self.generations < 1:
            raise FortifaiError(f"toy gaussian: --generations must be >= 1, got {self.generations}")
        if not 0 < self.sampling_bias <= 1:
            raise FortifaiError(f"toy gaussian: --sampling-bias must lie in (0, 1], got {self.sampling_bias:g}")
        for name, allowed in (("sampler", SAMPLERS), ("confidence", CONFIDENCES), ("estimator", ESTIMATORS)):
            if getattr(self, name) not in allowed:
                raise FortifaiError(f"toy gaussian: --{name} must be one of {', '.join(allowed)}, "
                                    f"got '{getattr(self, name)}'")
        if not 0 <= self.noise < 1:
            raise FortifaiError(f"toy gaussian: --noise must lie in [0, 1), got {self.noise:g}")
        if not 0 < self.failure_threshold < 1 or self.sigma0 <= 0:
            raise FortifaiError("toy gaussian: failure threshold must lie in (0, 1) and sigma0 be > 0")


@dataclasses.dataclass
class GMMConfig:
    samples: int = 1000
    generations: int = 50
    variant: str = "algorithm2"          # algorithm2: Algorithm 2 as written | biased: the sampler scales covariances
    sampling_bias: float | None = None   # lambda; resolved from the variant (1 for algorithm2, 0.9 for biased)
    kl_samples: int = 20_000
    failure_threshold: float = 0.5

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise FortifaiError(f"toy gmm: --variant must be one of {', '.join(VARIANTS)}, got '{self.variant}'")
        if self.sampling_bias is None:
            self.sampling_bias = VARIANTS[self.variant]
        if self.variant == "algorithm2" and self.sampling_bias != 1.0:
            raise FortifaiError(f"toy gmm: Algorithm 2 has no sampling bias (got --sampling-bias "
                                f"{self.sampling_bias:g}); use --variant biased for a biased sampler")
        if not 0 < self.sampling_bias <= 1:
            raise FortifaiError(f"toy gmm: --sampling-bias must lie in (0, 1], got {self.sampling_bias:g}")
        if self.samples < 50:
            raise FortifaiError(f"toy gmm: --samples must be >= 50 (3 components in 2-D), got {self.samples}")
        if self.generations < 1:
            raise FortifaiError(f"toy gmm: --generations must be >= 1, got {self.generations}")
        if self.kl_samples < 100:
            raise FortifaiError(f"toy gmm: --kl-samples must be >= 100, got {self.kl_samples}")
        if not 0 < self.failure_threshold < 1:
            raise FortifaiError(f"toy gmm: failure threshold must lie in (0, 1), got {self.failure_threshold:g}")


@dataclasses.dataclass
class VAEConfig:
    samples: int = 1200            # training images per generation (generation 0: this many real ones)
    generations: int = 10
    sampling: str = "mode"         # mode: most likely pixel values (confident generator) | bernoulli
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    latent: int = 8
    hidden: int = 256
    eval_samples: int = 1000
    normalize: bool = True         # clipped ELBO: rescale the kept reconstruction terms to all 64 pixels
    failure_threshold: float = 0.5

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise FortifaiError(f"toy vae: --sampling must be {' or '.join(SAMPLINGS)}, got '{self.sampling}'")
        if not 100 <= self.samples <= 1500:
            raise FortifaiError(f"toy vae: --samples must lie in [100, 1500] (1797 real digits, some held out), got {self.samples}")
        for name in ("generations", "epochs", "batch_size", "latent", "hidden"):
            if getattr(self, name) < 1:
                raise FortifaiError(f"toy vae: {name} must be >= 1, got {getattr(self, name)}")
        if self.eval_samples < N_CLASSES or not 0 < self.lr or not 0 < self.failure_threshold < 1:
            raise FortifaiError("toy vae: eval_samples >= 10, lr > 0 and failure threshold in (0, 1) required")
