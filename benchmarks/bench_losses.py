"""TCE against the cross-entropy users run: time and peak memory of forward + backward, fp32, on CPU.

    python benchmarks/bench_losses.py [--tokens 2048] [--vocab 128256] [--rounds 3] [--reps 2]

Every variant takes the same logits ``[1, tokens, vocab]`` (``requires_grad``) and unshifted labels:

* ``baseline``: only the logits and a gradient-sized tensor, both written to. A variant's peak minus this
  one is the memory the loss needs beyond the logits and their gradient.
* ``ce (transformers)``: ``transformers.loss.loss_utils.ForCausalLMLoss``, what a Hugging Face causal LM
  computes from ``labels=``: the labels padded and shifted, the logits viewed (no copy), ``F.cross_entropy``.
  The baseline the ratios are against.
* ``ce (sliced logits)``: ``F.cross_entropy(logits[..., :-1, :].contiguous().view(-1, V), labels[..., 1:])``,
  the older shift that copies the whole tokens x vocab tensor.
* ``ce (chunked, torchtune)``: torchtune's ``CEWithChunkedOutputLoss`` computation (8 chunks of tokens,
  ``F.cross_entropy(chunk.float(), ..., reduction="sum")`` each, divided by the real tokens), on logits that
  come as 8 separate tensors as torchtune's chunked output layer gives them; labels padded and shifted.
* ``ce (ours)``: ``load_loss("ce")``, the package's chunked kernel.
* ``tce (authors)``: the ForTIFAI authors' ``clipped_loss`` (src/losses.py of
  github.com/pedramaghazadeh/ForTIFAI) at gamma 0.9: the logits sliced and made contiguous, ``log_softmax``,
  ``gather``, ``exp``, a detached ``where(p > gamma, 0, 1)`` mask, ``mean``.
* ``tce M%``: ours, ``load_loss("tce:0.9")``, on logits where M% of the tokens, chosen at random, are masked
  (their correct token's logit raised by 30, so p > 0.9); the other variants' work does not depend on it.

Each (variant, round) runs in a fresh subprocess with one torch thread (``OMP_NUM_THREADS=1`` too), which
reports its peak resident set size (``ru_maxrss``) and the fastest of ``--reps`` timed forward + backward
calls after one warm-up call, by wall clock and by its own CPU time (user + system: page faults of a new
gradient count). Rounds interleave the variants, so load on a shared machine hits them alike; the table
shows the median over rounds, and every ratio is against ``ce (transformers)`` of the same run. Large frees
go back to the OS (glibc serves such allocations with mmap), so RSS follows the tensors that are alive.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MASKED = (0, 50, 90)
VARIANTS = ("baseline", "ce (transformers)", "ce (sliced logits)", "ce (chunked, torchtune)", "ce (ours)",
            "tce (authors)", *(f"tce {m}%" for m in MASKED))
REFERENCE = "ce (transformers)"
GAMMA = 0.9


def make_step(variant: str, logits, labels):
    """The forward + backward call of one variant (a closure over the leaf logits; a list of 8 for torchtune's)."""
    import torch
    import torch.nn.functional as F

    vocab = logits[0].shape[-1] if isinstance(logits, list) else logits.shape[-1]
    if variant == "ce (transformers)":
        from transformers.loss.loss_utils import ForCausalLMLoss

        return lambda: ForCausalLMLoss(logits, labels, vocab_size=vocab).backward()
    if variant == "ce (sliced logits)":
        return lambda: F.cross_entropy(logits[..., :-1, :].contiguous().view(-1, vocab),
                                       labels[..., 1:].reshape(-1)).backward()
    if variant == "ce (chunked, torchtune)":
        chunks = logits  # the 8 tensors of torchtune's chunked output layer
        shifted = F.pad(labels, (0, 1), value=-100)[..., 1:]

        def step():
            total = sum(F.cross_entropy(c.float().reshape(-1, vocab), t.reshape(-1), reduction="sum")
                        for c, t in zip(chunks, shifted.chunk(len(chunks), dim=1)))
            (total / (shifted != -100).sum()).backward()
        return step
    if variant == "tce (authors)":
        def step():
            shift_logits = logits[..., :-1, :].contiguous()
            log_p_t = F.log_softmax(shift_logits, dim=-1).gather(-1, labels[..., 1:, None]).squeeze(-1)
            p_t = log_p_t.exp()
            keep = torch.where(p_t > GAMMA, torch.tensor(0.0), torch.tensor(1.0)).detach()
            (-keep * log_p_t).mean().backward()
        return step
    from fortifai_bench.losses import load_loss

    loss = load_loss("ce" if variant == "ce (ours)" else f"tce:{GAMMA}")
    return lambda: loss(logits, labels).loss.backward()


def child(variant: str, tokens: int, vocab: int, reps: int) -> dict:
    import resource

    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    if variant == "ce (chunked, torchtune)":  # 8 leaf tensors, made one by one (a copy would raise the peak)
        leaves = [torch.randn(1, n, vocab, generator=gen) for n in _split(tokens, 8)]
    else:
        leaves = [torch.randn(1, tokens, vocab, generator=gen)]
    labels = torch.randint(0, vocab, (1, tokens), generator=gen)
    masked = variant.startswith("tce ") and variant.endswith("%")
    if masked:
        rows = torch.randperm(tokens - 1, generator=gen)[: round(int(variant[4:-1]) / 100 * (tokens - 1))]
        leaves[0][0, rows, labels[0, rows + 1]] += 30.0  # position t predicts token t+1: p_t > 0.9 there
    for leaf in leaves:
        leaf.requires_grad_()
    out = {"variant": variant, "seconds": 0.0, "cpu_seconds": 0.0}
    if variant == "baseline":
        grad = torch.empty_like(leaves[0]).fill_(0.0)
        del grad
    else:
        step = make_step(variant, leaves if len(leaves) > 1 else leaves[0], labels)
        times, cpu_times = [], []
        for _ in range(1 + reps):  # the first call warms up (allocator, libraries' first calls)
            for leaf in leaves:
                leaf.grad = None
            start, cpu = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
        out["seconds"], out["cpu_seconds"] = min(times[1:]), min(cpu_times[1:])  # least disturbed by others
        if masked:
            from fortifai_bench.losses import TCE

            out["masked"] = TCE(GAMMA)(leaves[0].detach(), labels).stats["masked_fraction"].item()
    out["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return out


def _split(n: int, parts: int) -> list[int]:
    """Sizes of ``torch.chunk``'s pieces of n."""
    size = -(-n // parts)
    return [min(size, n - s) for s in range(0, n, size)]


def run(variant: str, args) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--tokens", str(args.tokens), "--vocab", str(args.vocab),
         "--reps", str(args.reps)],
        capture_output=True, text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    if out.returncode:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=2, help="timed forward+backward calls per subprocess (min taken)")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.tokens, args.vocab, args.reps)))
        return

    import torch
    import transformers

    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    loads = []
    for r in range(args.rounds):
        for v in VARIANTS:
            loads.append(os.getloadavg()[0])
            res = run(v, args)
            results[v].append(res)
            print(f"round {r + 1}: {v:24s} {res['seconds']:7.3f} s (cpu {res['cpu_seconds']:7.3f} s)  "
                  f"peak {res['peak_gib']:6.2f} GiB", file=sys.stderr, flush=True)
    med = {v: {k: statistics.median(x[k] for x in rs) for k in ("seconds", "cpu_seconds", "peak_gib")}
           for v, rs in results.items()}
    base, ref = med["baseline"]["peak_gib"], med[REFERENCE]
    print(f"# logits [1, {args.tokens}, {args.vocab}] fp32 ({args.tokens * args.vocab * 4 / 2**30:.2f} GiB), CPU "
          f"({platform.processor() or platform.machine()}), torch {torch.__version__}, transformers "
          f"{transformers.__version__}, 1 thread, {args.rounds} rounds x fastest of {args.reps} after a warm-up, "
          f"load average {min(loads):.1f}-{max(loads):.1f}; baseline (logits + gradient) peak RSS {base:.2f} GiB")
    print(f"| variant | fwd+bwd wall (s) | vs {REFERENCE} | fwd+bwd CPU (s) | vs {REFERENCE} | "
          "extra memory beyond logits+grad (GiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for v in VARIANTS[1:]:
        m = med[v]
        masked = results[v][0].get("masked")
        name = v if masked is None else f"{v} (masked {masked:.1%})"
        print(f"| {name} | {m['seconds']:.3f} | {m['seconds'] / ref['seconds']:.2f}x | {m['cpu_seconds']:.3f} | "
              f"{m['cpu_seconds'] / ref['cpu_seconds']:.2f}x | {m['peak_gib'] - base:.2f} |")
    print(json.dumps({"tokens": args.tokens, "vocab": args.vocab, "rounds": args.rounds, "reps": args.reps,
                      "results": results}))


if __name__ == "__main__":
    main()
