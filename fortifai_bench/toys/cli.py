"""`fortifai-bench toy gaussian|gmm|vae`: thin layers over the toy modules (imported only when run)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from fortifai_bench.toys import common

TOYS = {
    # name: (module, config class, default methods, help, what truncated:X means)
    "gaussian": ("fortifai_bench.toys.gaussian", "GaussianConfig", "mle,truncated:auto,truncated:0.3",
                 "1-D Gaussian self-consuming loop (Sec. 2.3, Fig. 2; Appendix C)",
                 "truncated:A fits only the tails |x - mean| >= A sd; truncated:auto picks lambda*eta(A) = 1; "
                 "truncated:gamma=G drops the central mass G"),
    "gmm": ("fortifai_bench.toys.gmm", "GMMConfig", "mle,truncated:80,truncated:90",
            "Gaussian mixture, Algorithm 2 (Sec. 4.7, Fig. 8)",
            "truncated:P keeps the samples at or below the P-th percentile of log-likelihood"),
    "vae": ("fortifai_bench.toys.vae", "VAEConfig", "mle,truncated:0.9",
            "conditional VAE on scikit-learn's 8x8 digits (Sec. 4.8, Fig. 9)",
            "mle is the ELBO; truncated:G masks reconstruction terms whose likelihood exceeds G"),
}


def register(subparsers) -> None:
    toy = subparsers.add_parser("toy", help="collapse beyond language models: gaussian | gmm | vae")
    sub = toy.add_subparsers(dest="toy", metavar="<toy>", required=True)
    for name, (_, _, methods, help_, truncated_help) in TOYS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        seeds = p.add_mutually_exclusive_group()
        seeds.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
        seeds.add_argument("--seeds", default=None, help="several seeds: 0,1,2 or 0-4")
        p.add_argument("--out", type=Path, default=None, help="run folder (default runs/toy_<name>-<timestamp>)")
        p.add_argument("--methods", default=methods,
                       help=f"comma-separated methods (default {methods}); {truncated_help}")
        p.add_argument("--generations", type=int, default=None, help="recursive generations")
        p.add_argument("--samples", type=int, default=None, help="samples drawn per generation")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name in ("gaussian", "gmm"):
            p.add_argument("--sampling-bias", type=float, default=None,
                           help="lambda: the generator samples with its variance scaled by lambda (default 0.9)")
        if name == "gaussian":
            p.add_argument("--estimator", choices=["noisy", "perfect"], default=None,
                           help="noisy: fit N samples (default); perfect: exact recurrence (Appendix C)")
        if name == "gmm":
            p.add_argument("--kl-samples", type=int, default=None, help="Monte Carlo samples for the KL (default 20000)")
        if name == "vae":
            p.add_argument("--epochs", type=int, default=None, help="training epochs per generation (default 30)")
            p.add_argument("--sampling", choices=["mode", "bernoulli"], default=None,
                           help="pixels of generated digits: most likely value (default) or Bernoulli draws")
            p.add_argument("--no-normalize", dest="normalize", action="store_false", default=None,
                           help="clipped ELBO without rescaling the kept reconstruction terms")
        p.set_defaults(func=_run, toy=name)


def _run(args: argparse.Namespace) -> int:
    module_name, config_name, *_ = TOYS[args.toy]
    module = importlib.import_module(module_name)
    fields = {"generations": args.generations, "samples": args.samples,
              "sampling_bias": getattr(args, "sampling_bias", None), "estimator": getattr(args, "estimator", None),
              "kl_samples": getattr(args, "kl_samples", None), "epochs": getattr(args, "epochs", None),
              "sampling": getattr(args, "sampling", None), "normalize": getattr(args, "normalize", None)}
    config = getattr(module, config_name)(**{k: v for k, v in fields.items() if v is not None})
    methods = common.split_methods(args.methods)
    for m in methods:  # fail on a bad spec before any run starts
        module.parse_method(m, config)
    seeds = common.parse_seeds(args.seed, args.seeds)
    out = args.out or common.default_out(module.TASK)
    summary = common.run_grid(module.TASK, module.run, config, methods, seeds, out,
                              progress=not args.no_progress, extra_plot=getattr(module, "plot_comparison", None))
    common.print_summary(summary, out)
    return 0
