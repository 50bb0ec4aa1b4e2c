"""A conditional VAE trained on its own samples: scikit-learn's 8x8 digits, a CPU-sized analogue of
Sec. 4.8 / Fig. 9.

Not the paper's setup: the authors' notebook (github.com/pedramaghazadeh/ForTIFAI,
`src/vae/VAE_experiments.ipynb`, cells 1-4 and 11) trains
an unconditional convolutional VAE on MNIST (latent 20, 30 epochs, batch 256, Adam 1e-3), and each later
generation on the previous decoder's mean images for z ~ N(0, I); that public notebook holds only the
plain ELBO, not the clipped one. Here, in minutes on a CPU:

Data: `sklearn.datasets.load_digits` (1,797 images shipped with scikit-learn, no download), pixels
binarised at half intensity (so the Bernoulli decoder's likelihood is a true probability), split once
(seeded) into a training part and a held-out part. Generation 0 trains a conditional VAE on the real
training images; every later generation trains a fresh VAE on the previous one's samples: for each
label, z ~ N(0, I) is decoded and, by default (`sampling="mode"`), each pixel set to its most likely
value: the generator emits its confident output, as greedy/beam decoding does in the text protocol.
`sampling="bernoulli"` draws every pixel instead. The VAE is conditional so that each generated
digit has an intended label, which the accuracy below is measured against.

Objectives (per image, pixels i with Bernoulli likelihood p_i(x_i | z) = exp(-BCE_i)):
* `mle`: the standard ELBO, sum_i BCE_i + KL(q(z|x) || N(0, I));
* `truncated:G` (clipped ELBO): reconstruction terms whose likelihood exceeds G are masked, the TCE
  rule applied to pixels: (64 / n_kept) * sum_i 1[exp(-BCE_i) <= G] * BCE_i + KL. The factor
  64 / n_kept (`normalize`, default on) keeps the reconstruction's weight against the KL term; without
  it, masking most pixels lets the KL term win, the latent stops carrying information and the samples
  collapse to one prototype per digit even faster than with the plain ELBO (measured; BENCHMARKS.md).

Per generation, on `eval_samples` generated images (balanced over labels):
* a logistic-regression classifier trained on the real training images: its accuracy against the
  intended labels and the entropy of its predicted-label histogram (nats; ln 10 = 2.303 = all digits
  equally often);
* pixel KL: per label and pixel position, KL(Bernoulli(real on-rate) || Bernoulli(generated on-rate)),
  averaged (rates clipped to [0.01, 0.99]);
* diversity: the per-pixel standard deviation across images of the same label, averaged, divided by
  the same quantity on the real training images. This is the score (`diversity_retention`): with the
  confident (mode) sampler the digits stay legible, accuracy even rises towards 1, while the variety
  within each digit collapses to a prototype, which is the collapse this toy measures.
* a grid of samples (Fig. 9) at the first, middle and last generation: 10 samples of every digit,
  the same z throughout.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import write_json
from fortifai_bench.toys import common
from fortifai_bench.toys.configs import N_CLASSES, VAEConfig

TASK = "toy_vae"
SCORE_NAME = "diversity_retention"  # within-label pixel std of generated digits / of real digits
N_PIXELS = 64  # 8x8 digits


@dataclasses.dataclass(frozen=True)
class Method:
    spec: str                # mle | truncated:<gamma>
    gamma: float | None      # mask reconstruction terms whose likelihood exceeds gamma; None = standard ELBO


def parse_method(spec: str, config: VAEConfig | None = None) -> Method:
    spec = spec.strip()
    if spec == "mle":
        return Method("mle", None)
    name, _, value = spec.partition(":")
    if name != "truncated" or not value:
        raise FortifaiError(f"toy vae: method '{spec}' not understood; use mle or truncated:G (G in (0, 1], e.g. 0.9)")
    g = common.parse_number(value, f"method '{spec}'", 0.0, 1.0, closed_hi=True)
    return Method(f"truncated:{g:g}", g)


def load_data(seed: int, samples: int):
    """Real digits in [0, 1]: (x_train, y_train) of `samples` images and the held-out rest."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data >= 8).astype(np.float32), d.target.astype(np.int64)  # intensities 0..16
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:samples], perm[samples:]
    return x[tr], y[tr], x[te], y[te]


def build_vae(config: VAEConfig):
    import torch
    from torch import nn

    class CVAE(nn.Module):
        def __init__(self):
            super().__init__()
            h, k = config.hidden, config.latent
            self.enc = nn.Sequential(nn.Linear(N_PIXELS + N_CLASSES, h), nn.ReLU(), nn.Linear(h, 2 * k))
            self.dec = nn.Sequential(nn.Linear(k + N_CLASSES, h), nn.ReLU(), nn.Linear(h, N_PIXELS))

        def forward(self, x, onehot):
            mu, logvar = self.enc(torch.cat([x, onehot], 1)).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return self.dec(torch.cat([z, onehot], 1)), mu, logvar

        def decode_mean(self, z, onehot):
            return torch.sigmoid(self.dec(torch.cat([z, onehot], 1)))

    return CVAE()


def elbo_loss(logits, x, mu, logvar, gamma: float | None, normalize: bool = True):
    """Negative (clipped) ELBO per image, averaged; also the fraction of masked reconstruction terms."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if gamma is None:
        mask = torch.ones_like(bce)
    else:
        mask = (torch.exp(-bce.detach()) <= gamma).float()  # the TCE rule: confident terms carry no gradient
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    recon = (bce * mask).sum(1)
    if gamma is not None and normalize:
        recon = recon * bce.shape[1] / mask.sum(1).clamp(min=1.0)
    return (recon + kl).mean(), float(1 - mask.mean())


def train_vae(config: VAEConfig, x: np.ndarray, y: np.ndarray, gamma: float | None, seed: int):
    import torch

    torch.manual_seed(seed)
    model = build_vae(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    xt, onehot = torch.from_numpy(x), torch.nn.functional.one_hot(torch.from_numpy(y), N_CLASSES).float()
    masked = []
    for _ in range(config.epochs):
        for idx in torch.randperm(len(xt)).split(config.batch_size):
            logits, mu, logvar = model(xt[idx], onehot[idx])
            loss, frac = elbo_loss(logits, xt[idx], mu, logvar, gamma, config.normalize)
            opt.zero_grad()
            loss.backward()
            opt.step()
            masked.append(frac)
    return model, float(np.mean(masked[-len(masked) // config.epochs:]))  # masked fraction, last epoch


def generate(model, n: int, config: VAEConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n binary images, labels cycling 0..9 (balanced), from z ~ N(0, I) and the configured pixel sampler."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    with torch.no_grad():
        p = model.decode_mean(torch.randn(n, config.latent, generator=g),
                              torch.nn.functional.one_hot(y, N_CLASSES).float())
        x = (p >= 0.5) if config.sampling == "mode" else torch.bernoulli(p, generator=g)
    return x.float().numpy(), y.numpy()


def class_stats(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per label: on-rate of every pixel (10 x 64) and the mean within-label pixel std (10,)."""
    rates = np.stack([x[y == k].mean(0) for k in range(N_CLASSES)])
    stds = np.array([x[y == k].std(0).mean() for k in range(N_CLASSES)])
    return rates, stds


def generation_metrics(clf, x_gen, y_gen, real: tuple[np.ndarray, np.ndarray]) -> dict:
    pred = clf.predict(x_gen)
    counts = np.bincount(pred, minlength=N_CLASSES) / len(pred)
    entropy = float(-(counts[counts > 0] * np.log(counts[counts > 0])).sum())
    (p, real_std), (q, gen_std) = real, class_stats(x_gen, y_gen)
    p, q = np.clip(p, 0.01, 0.99), np.clip(q, 0.01, 0.99)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return {"score": float(gen_std.mean() / real_std.mean()), "kr_total": None,
            "accuracy": float((pred == y_gen).mean()), "label_entropy": entropy, "pixel_kl": float(kl.mean()),
            "within_label_std": float(gen_std.mean()), "on_rate": float(x_gen.mean())}


def run(config: VAEConfig, method: str, seed: int, *, out_dir: Path | None = None, progress: bool = True) -> dict:
    import torch
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    m = parse_method(method, config)
    x, y, x_test, y_test = load_data(seed, config.samples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: one thread is faster than two contending ones on a shared machine
    try:
        with threadpool_limits(1):
            clf = LogisticRegression(max_iter=2000).fit(x, y)
            real = class_stats(x, y)
            stages, grids = [], {}
            snap_at = sorted({0, config.generations // 2, config.generations})
            for t in tqdm(range(config.generations + 1), desc=f"vae {m.spec} seed {seed}", disable=not progress,
                          leave=False):
                model, masked = train_vae(config, x, y, m.gamma, seed * 1000 + t)
                x_eval, y_eval = generate(model, config.eval_samples, config, seed * 1000 + 500 + t)
                stages.append({"stage": t, **generation_metrics(clf, x_eval, y_eval, real),
                               "masked_fraction": masked})
                if t in snap_at:
                    grids[t] = generate(model, 10 * N_CLASSES, config, seed)[0]  # same z every generation
                x, y = generate(model, config.samples, config, seed * 1000 + 700 + t)
            classifier_acc = float(clf.score(x_test, y_test))
    finally:
        torch.set_num_threads(threads)
    results = common.build_results(
        task=TASK, loss={"spec": m.spec, "target": "conditional VAE, 8x8 digits (Bernoulli decoder)",
                         "args": {} if m.gamma is None else {"gamma": m.gamma, "normalize": config.normalize}},
        model="cvae-digits", seed=seed,
        config={**dataclasses.asdict(config), "seed": seed, "classifier": "LogisticRegression"},
        score_name=SCORE_NAME, failure_threshold=config.failure_threshold, stages=stages,
        packages=("numpy", "scikit-learn", "torch", "matplotlib"),
        extra={"classifier_real_test_accuracy": classifier_acc})
    if out_dir is not None:
        write_json(Path(out_dir) / "results.json", results)
        plot_grid(grids, Path(out_dir) / "samples.png", f"{m.spec}, seed {seed}")
    return results


def plot_grid(grids: dict[int, np.ndarray], path: Path, title: str):
    """Fig. 9: for a few generations, 10 samples (rows) of every digit (columns), the same z throughout."""
    plt = common.pyplot()

    def tile(x):  # 100 images, labels cycling 0..9 -> a 10 x 10 mosaic with a 1-pixel grey seam
        pad = np.full((10, 10, 9, 9), 0.2)
        pad[:, :, :8, :8] = x.reshape(10, 10, 8, 8)
        return pad.transpose(0, 2, 1, 3).reshape(90, 90)[:-1, :-1]

    fig, axes = plt.subplots(1, len(grids), figsize=(3.0 * len(grids), 3.3))
    for ax, (t, x) in zip(np.atleast_1d(axes), grids.items()):
        ax.imshow(tile(x), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"generation {t}", fontsize=9)
        ax.set_xticks([9 * i + 3.5 for i in range(N_CLASSES)], range(N_CLASSES), fontsize=7)
        ax.set_yticks([])
    fig.suptitle(f"VAE samples (columns: intended digit): {title}", fontsize=10, y=0.98)
    return common.save_figure(fig, path)


def plot_comparison(runs: list[dict], out: Path):
    """`<out>/vae.png` (+ .svg): diversity, classifier accuracy, label entropy and pixel KL per generation:
    per method the mean over seeds with its 95% band, single seeds faint."""
    plt = common.pyplot()
    keys = [("score", "diversity retention"), ("accuracy", "classifier accuracy"),
            ("label_entropy", "label entropy [nats]"), ("pixel_kl", "pixel KL [nats]")]
    bounds = {"score": (0, np.inf), "accuracy": (0, 1), "label_entropy": (0, math.log(N_CLASSES)),
              "pixel_kl": (0, np.inf)}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    groups = common.group_by_spec(runs)
    for i, (spec, group) in enumerate(groups.items()):
        x = [s["stage"] for s in group[0]["stages"]]
        for ax, (key, _) in zip(axes, keys):
            common.plot_band(ax, x, [[s[key] for s in r["stages"]] for r in group], color=f"C{i}", label=spec,
                             marker=".", bounds=bounds[key])
    th = runs[0]["failure_threshold"]
    axes[0].axhline(th, color="k", ls="--", lw=1, label=f"failure threshold ({th:g})")
    axes[2].axhline(math.log(N_CLASSES), color="k", ls=":", lw=1, label=r"all digits equally often ($\ln 10$)")
    n_seeds = max(len(g) for g in groups.values())
    for ax, (_, name) in zip(axes, keys):
        ax.set(xlabel="generation $t$", ylabel=name)
        common.seeds_legend_note(ax, n_seeds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, Path(out) / "vae.png")
