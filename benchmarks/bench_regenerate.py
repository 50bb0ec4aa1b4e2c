"""Regeneration speed: the collapse protocol's batched KV-cache loop vs `generate` once per block.

    python benchmarks/bench_regenerate.py [--paragraphs 60] [--model DIR] [--run RUN_DIR]

Both rewrite the same facts paragraphs with the same tiny GPT-2 (the cached base M_0 when --model
is given, else a freshly initialized one of the same shape: speed does not depend on the weights),
by sampling at temperature 1.0, 32-token blocks, the first 4 text tokens kept:

* batched: `fortifai_bench.collapse.regenerate.regenerate` (sequential mode, batch 64, Gumbel-max);
* per block: for every paragraph and every block, `model.generate(do_sample=True)` on that block's
  context (batch 1), i.e. what a straightforward loop over blocks does.

Prints new tokens/s of each and their ratio, plus Gumbel-max vs `torch.multinomial` per sampling
step at batch 64. With --run, also prints each stage's time split (train / regenerate / evaluate)
from a finished run directory.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def per_block_generate(model, tok, texts, block: int, prompt: int) -> tuple[int, float]:
    start, new = time.perf_counter(), 0
    for text in texts:
        ids = tok(text)["input_ids"]
        first = 1 + min(prompt, (len(ids) - 1) // 2)
        out = ids[:first]
        while len(out) < len(ids):
            n = min(block, len(ids) - len(out))
            ctx = torch.tensor([out])
            with torch.no_grad():
                res = model.generate(ctx, attention_mask=torch.ones_like(ctx), do_sample=True, top_k=0,
                                     max_new_tokens=n, min_new_tokens=n, suppress_tokens=[tok.eos_token_id],
                                     pad_token_id=tok.pad_token_id)
            out = res[0].tolist()
            new += n
    return new, time.perf_counter() - start


def sampling_step(batch: int = 64, vocab: int = 4096, reps: int = 200) -> tuple[float, float]:
    logits = torch.randn(batch, vocab)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
    multi = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        (logits - torch.empty_like(logits).exponential_(1.0, generator=g).log()).argmax(-1)
    gumbel = (time.perf_counter() - t0) / reps
    return multi, gumbel


def main() -> None:
    from transformers.utils import logging as hf_logging

    from fortifai_bench.collapse.config import RegenerateSettings
    from fortifai_bench.collapse.regenerate import regenerate
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import TinyConfig, build_tiny, load_model

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    ap = argparse.ArgumentParser()
    ap.add_argument("--paragraphs", type=int, default=60)
    ap.add_argument("--model", default=None, help="an HF model directory (default: a fresh tiny GPT-2)")
    ap.add_argument("--run", default=None, help="a finished collapse run: print its per-stage time split")
    args = ap.parse_args()

    texts = get_corpus("facts").texts()[: args.paragraphs]
    if args.model:
        model, tok = load_model(args.model)
    else:
        model, tok = build_tiny(get_corpus("facts", part="pretrain").texts(), TinyConfig(), seed=0)
    model.eval()
    print(f"torch threads {torch.get_num_threads()}, {args.paragraphs} paragraphs, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    settings = RegenerateSettings(mode="sequential", block=32, context=512, prompt=4, temperature=1.0, batch_size=64)
    regenerate(model, tok, texts[:8], settings, seed=0)  # warm-up
    res = regenerate(model, tok, texts, settings, seed=0)
    fast = res.new_tokens / res.seconds
    settings_o = RegenerateSettings(mode="original", block=32, context=512, prompt=4, temperature=1.0, batch_size=64)
    res_o = regenerate(model, tok, texts, settings_o, seed=0)
    new, seconds = per_block_generate(model, tok, texts, 32, 4)
    slow = new / seconds
    print(f"batched sequential : {res.new_tokens} new tokens in {res.seconds:.2f} s = {fast:,.0f} tok/s")
    print(f"batched original   : {res_o.new_tokens} new tokens in {res_o.seconds:.2f} s = "
          f"{res_o.new_tokens / res_o.seconds:,.0f} tok/s")
    print(f"generate per block : {new} new tokens in {seconds:.2f} s = {slow:,.0f} tok/s")
    print(f"speed-up (batched sequential / per block): {fast / slow:.1f}x")
    multi, gumbel = sampling_step()
    print(f"sampling step at batch 64, vocab 4096: multinomial {multi * 1e3:.3f} ms, Gumbel-max {gumbel * 1e3:.3f} ms "
          f"({multi / gumbel:.2f}x)")
    if args.run:
        print(f"\nper-stage time split of {args.run}:")
        results = json.loads((Path(args.run) / "results.json").read_text())
        for s in results["stages"]:
            t = s["seconds"]
            print(f"stage {s['stage']}: train {t['train']:6.1f} s  regenerate {t['regenerate']:6.1f} s  "
                  f"evaluate {t['evaluate']:6.1f} s")


if __name__ == "__main__":
    main()
