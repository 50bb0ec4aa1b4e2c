"""Peak memory and time of a loss's forward + backward at Llama 3 scale, on CPU, fp32.

    python benchmarks/bench_losses.py [--tokens 4096] [--vocab 128256] [--rounds 3] [--threads 1]

Variants (all on the same logits ``[1, tokens, vocab]`` with ``requires_grad``):

* ``baseline``: only the logits and a gradient-sized tensor, both written to. Every other
  variant's peak minus this one is the memory the loss itself needs beyond the logits and their
  gradient.
* ``ce``: ``torch.nn.functional.cross_entropy`` on the (already shifted) targets.
* ``authors``: the ForTIFAI authors' formulation of TCE: full ``log_softmax``, ``gather``, ``exp``,
  ``where``, mean.
* ``tce``: ours, ``load_loss("tce:0.9")`` (chunked custom autograd function).

Each (variant, round) runs in a fresh subprocess, which reports its peak resident set size
(``resource.getrusage(...).ru_maxrss``) and the fastest of ``--reps`` timed forward + backward
calls after one warm-up call. Rounds interleave the variants so that load on a shared machine hits
all of them alike; the table shows the median time and the median peak over rounds. Large frees go back to the OS (glibc serves
such allocations with mmap), so RSS follows the tensors that are alive.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

VARIANTS = ("baseline", "ce", "authors", "tce")


def child(variant: str, tokens: int, vocab: int, threads: int, reps: int) -> dict:
    import resource

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, tokens, vocab, generator=gen).requires_grad_()
    labels = torch.randint(0, vocab, (1, tokens), generator=gen)
    # What F.cross_entropy and the authors' code need: targets already shifted (no logits copy).
    targets = torch.cat([labels[0, 1:], torch.tensor([-100])])
    valid = targets != -100

    if variant == "baseline":
        grad = torch.empty_like(logits).fill_(0.0)
        seconds = cpu_seconds = 0.0
        del grad
    else:
        if variant == "ce":
            def step():
                F.cross_entropy(logits[0], targets).backward()
        elif variant == "authors":
            def step():
                logp_all = F.log_softmax(logits[0], dim=-1)
                logp = logp_all.gather(-1, targets.clamp_min(0)[:, None]).squeeze(-1)
                mask = torch.where((logp.exp() <= 0.9) & valid, 1.0, 0.0)
                (-(logp * mask).sum() / valid.sum()).backward()  # the mean over real tokens
        else:
            from fortifai_bench.losses import load_loss

            loss = load_loss("tce:0.9")

            def step():
                loss(logits, labels).loss.backward()
        times, cpu_times = [], []
        for _ in range(1 + reps):  # the first call warms up (allocator, page faults of the first touch)
            logits.grad = None
            start, cpu = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
        seconds, cpu_seconds = min(times[1:]), min(cpu_times[1:])  # least disturbed by other processes
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"variant": variant, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_gib": peak_kib / 2**20}


def run(variant: str, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--tokens", str(args.tokens), "--vocab", str(args.vocab),
         "--threads", str(args.threads), "--reps", str(args.reps)],
        capture_output=True, text=True, check=False,
    )
    if out.returncode:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads in each subprocess")
    p.add_argument("--reps", type=int, default=2, help="timed forward+backward calls per subprocess (min taken)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens, args.vocab, args.threads, args.reps)))
        return

    import torch

    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            res = run(v, args)
            results[v].append(res)
            print(f"round {r + 1}: {v:8s} {res['seconds']:7.3f} s (cpu {res['cpu_seconds']:7.3f} s)  peak {res['peak_gib']:6.2f} GiB", file=sys.stderr)
    med = {v: {"seconds": statistics.median(x["seconds"] for x in rs),
               "cpu": statistics.median(x["cpu_seconds"] for x in rs),
               "peak": statistics.median(x["peak_gib"] for x in rs)} for v, rs in results.items()}
    base = med["baseline"]["peak"]
    logits_gib = args.tokens * args.vocab * 4 / 2**30
    print(f"# {args.tokens} tokens x vocab {args.vocab}, fp32, CPU ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds x {args.reps} reps")
    print(f"# logits: {logits_gib:.2f} GiB; baseline (logits + gradient) peak RSS: {base:.2f} GiB")
    print("| variant | fwd+bwd wall (s) | fwd+bwd CPU (s) | peak RSS (GiB) | extra beyond logits+grad (GiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in VARIANTS[1:]:
        print(f"| {v} | {med[v]['seconds']:.3f} | {med[v]['cpu']:.3f} | {med[v]['peak']:.2f} | "
              f"{med[v]['peak'] - base:.2f} |")
    extra = {v: med[v]["peak"] - base for v in VARIANTS[1:]}
    mem_ratio = extra["tce"] / extra["authors"]
    time_ratio = med["tce"]["seconds"] / med["ce"]["seconds"]
    cpu_ratio = med["tce"]["cpu"] / med["ce"]["cpu"]
    print(f"\nTCE extra memory / authors' extra memory: {mem_ratio:.3f} (target <= 0.25: "
          f"{'met' if mem_ratio <= 0.25 else 'MISSED'})")
    print(f"TCE time / F.cross_entropy time: {time_ratio:.3f} (target <= 1.2: "
          f"{'met' if time_ratio <= 1.2 else 'MISSED'})")
    print(f"TCE CPU time / F.cross_entropy CPU time: {cpu_ratio:.3f} (target <= 1.2: "
          f"{'met' if cpu_ratio <= 1.2 else 'MISSED'})")
    print(f"TCE time / authors' time: {med['tce']['seconds'] / med['authors']['seconds']:.3f}")


if __name__ == "__main__":
    main()
