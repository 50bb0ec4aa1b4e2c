"""Runtime of each toy run (one method, one seed, default settings), for BENCHMARKS.md.

    python benchmarks/bench_toys.py            # every toy (GMM in both variants), its default methods, seed 0
    python benchmarks/bench_toys.py --threads  # also: GMM with the default BLAS thread pool vs one thread

Wall-clock and CPU seconds of this process per run; the load average before and after, since the
machine may be shared. Imports are done before the clock starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import threadpoolctl
import torch  # noqa: F401  (imported up front so that the VAE's first run does not pay for it)

from fortifai_bench.cli import toy as toy_cli
from fortifai_bench.toys import gaussian, gmm, vae

# name: (module, config factory, CLI toy whose default methods are run)
MODULES = {"gaussian": (gaussian, gaussian.GaussianConfig, "gaussian"), "gmm": (gmm, gmm.GMMConfig, "gmm"),
           "gmm-biased": (gmm, lambda: gmm.GMMConfig(variant="biased"), "gmm"),
           "vae": (vae, vae.VAEConfig, "vae")}


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toys", default=",".join(MODULES))
    ap.add_argument("--threads", action="store_true", help="GMM: default thread pool vs one thread")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}, cores: {os.cpu_count()}")
    print("| toy | method | generations | wall s | CPU s | time to failure |")
    print("|---|---|---|---|---|---|")
    for name in args.toys.split(","):
        module, make_config, cli_name = MODULES[name]
        config = make_config()
        for method in toy_cli.COMMANDS[cli_name].methods.split(","):  # the CLI's default methods
            r, wall, cpu = timed(lambda: module.run(config, method, 0, progress=False))
            ttf = "never" if r["time_to_failure"] is None else f"{r['time_to_failure']:.1f}"
            print(f"| {name} | {r['loss']['spec']} | {config.generations} | {wall:.1f} | {cpu:.1f} | {ttf} |")
    if args.threads:
        config = gmm.GMMConfig()
        _, w1, c1 = timed(lambda: gmm.run(config, "truncated:80", 0, progress=False))
        with _no_thread_limit():
            _, w2, c2 = timed(lambda: gmm.run(config, "truncated:80", 0, progress=False))
        print(f"\nGMM truncated:80, seed 0: one BLAS thread {w1:.1f} s wall / {c1:.1f} s CPU; "
              f"default pool ({threadpoolctl.threadpool_info()[0].get('num_threads')} threads) "
              f"{w2:.1f} s wall / {c2:.1f} s CPU; ratio {w2 / w1:.2f}x wall")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


@contextlib.contextmanager
def _no_thread_limit():
    """Make gmm.run's `threadpool_limits(1)` a no-op (it imports the name at call time)."""
    original = threadpoolctl.threadpool_limits
    threadpoolctl.threadpool_limits = lambda *a, **k: contextlib.nullcontext()
    try:
        yield
    finally:
        threadpoolctl.threadpool_limits = original


if __name__ == "__main__":
    main()
