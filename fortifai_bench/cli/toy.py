"""`fortifai-bench toy gaussian|gmm|vae`: thin layers over the toy modules (`toys.TOYS`, imported only when run)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from fortifai_bench.cli import args as cli_args
from fortifai_bench.toys import TOYS, common
from fortifai_bench.toys.configs import (CONFIDENCES, ESTIMATORS, SAMPLERS, SAMPLINGS, VARIANTS, GaussianConfig,
                                        GMMConfig, VAEConfig)


@dataclass(frozen=True)
class ToyCommand:
    """What `toy NAME --help` says of a toy: its config (the defaults), default methods and help texts."""

    config: type
    methods: str
    help: str
    methods_help: str


COMMANDS = {
    "gaussian": ToyCommand(GaussianConfig, "mle,tce:0.85,tce:0.8",
                           "1-D Gaussian self-consuming loop (Sec. 2.3, Fig. 2; Appendix C, Fig. C4)",
                           "tce:G drops the samples TCE with threshold G masks (see --confidence); truncated:A fits "
                           "only the tails |x - mean| >= A sd; truncated:auto picks the A with lambda*eta(A) = 1"),
    "gmm": ToyCommand(GMMConfig, "mle,truncated:80,truncated:90", "Gaussian mixture, Algorithm 2 (Sec. 4.7, Fig. 8)",
                      "truncated:P keeps the samples at or below the P-th percentile of log-likelihood (Algorithm 2)"),
    "vae": ToyCommand(VAEConfig, "mle,truncated:0.9",
                      "conditional VAE on scikit-learn's 8x8 digits (a CPU-sized analogue of Sec. 4.8, Fig. 9)",
                      "mle is the ELBO; truncated:G masks reconstruction terms whose likelihood exceeds G"),
}

CHOICES = {"sampler": SAMPLERS, "confidence": CONFIDENCES, "estimator": ESTIMATORS, "variant": tuple(VARIANTS),
           "sampling": SAMPLINGS}


def _default(name: str, field: str):
    """The default --help names: the config dataclass's own (toys/configs.py, no numpy needed)."""
    return {f.name: f.default for f in dataclasses.fields(COMMANDS[name].config)}[field]


def register(subparsers) -> None:
    toy = subparsers.add_parser("toy", help="collapse beyond language models: gaussian | gmm | vae")
    sub = toy.add_subparsers(dest="toy", metavar="<toy>", required=True)
    for name in TOYS.names():
        command = COMMANDS[name]
        p = sub.add_parser(name, help=command.help, description=command.help)
        seeds = p.add_mutually_exclusive_group()
        seeds.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
        cli_args.add_seeds(seeds, default_text="0")
        p.add_argument("--out", type=Path, default=None, help=f"run folder (default runs/toy_{name}-<timestamp>)")
        p.add_argument("--methods", default=command.methods,
                       help=f"comma-separated methods (default {command.methods}); {command.methods_help}")
        p.add_argument("--generations", type=int, default=None,
                       help=f"recursive generations (default {_default(name, 'generations')})")
        p.add_argument("--samples", type=int, default=None,
                       help=f"samples drawn per generation (default {_default(name, 'samples')})")
        cli_args.add_quiet(p)
        _add_toy_options(name, p)
        p.set_defaults(func=_run, toy=name)


def _add_toy_options(name: str, p: argparse.ArgumentParser) -> None:
    if name == "gaussian":
        p.add_argument("--sampling-bias", type=float, default=None,
                       help="gamma_s: how much the generator favours its confident region "
                            f"(default {_default(name, 'sampling_bias')})")
        p.add_argument("--sampler", choices=CHOICES["sampler"], default=None,
                       help="reading of gamma_s: scale-sd draws N(mu, (gamma_s sigma)^2) (default, Fig. 2), "
                            "scale-variance N(mu, gamma_s sigma^2), nucleus the central mass gamma_s")
        p.add_argument("--confidence", choices=CHOICES["confidence"], default=None,
                       help="reading of TCE's G in tce:G: tail drops the central mass 1-G (default, Fig. 2), "
                            "density drops exp(-z^2/2) > G, mass drops the central mass G")
        p.add_argument("--estimator", choices=CHOICES["estimator"], default=None,
                       help="Appendix C: perfect = sample MLE (default); noisy = MLE with mean and sd times "
                            "N(1, noise^2); exact = the population recurrence")
        p.add_argument("--noise", type=float, default=None,
                       help=f"relative noise of --estimator noisy (default {_default(name, 'noise')})")
    if name == "gmm":
        p.add_argument("--variant", choices=CHOICES["variant"], default=None,
                       help="algorithm2: Algorithm 2 as written, no sampling bias (default; does not show "
                            "Fig. 8); biased: the sampler scales covariances by --sampling-bias (shows Fig. 8)")
        p.add_argument("--sampling-bias", type=float, default=None,
                       help=f"lambda of --variant biased (default {VARIANTS['biased']:g})")
        p.add_argument("--kl-samples", type=int, default=None,
                       help=f"Monte Carlo samples for the KL (default {_default(name, 'kl_samples')})")
    if name == "vae":
        p.add_argument("--epochs", type=int, default=None,
                       help=f"training epochs per generation (default {_default(name, 'epochs')})")
        p.add_argument("--sampling", choices=CHOICES["sampling"], default=None,
                       help="pixels of generated digits: most likely value (default) or Bernoulli draws")
        p.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                       help="clipped ELBO without rescaling the kept reconstruction terms (default: rescaled)")


def _run(args: argparse.Namespace) -> int:
    module, config_class = TOYS.get(args.toy), COMMANDS[args.toy].config
    # The options given (an option left out is None); every other field keeps its dataclass default.
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(config_class)}
    config = config_class(**{k: v for k, v in given.items() if v is not None})
    methods = common.split_methods(args.methods)
    for m in methods:  # fail on a bad spec before any run starts
        module.parse_method(m, config)
    seeds = common.parse_seeds(args.seed, args.seeds)
    out = args.out or common.default_out(module.TASK)
    summary = common.run_grid(module.TASK, module.run, config, methods, seeds, out, progress=not args.quiet,
                              extra_plot=getattr(module, "plot_comparison", None),
                              score_plot=getattr(module, "plot_scores", None))
    common.print_summary(summary, out)
    return 0
