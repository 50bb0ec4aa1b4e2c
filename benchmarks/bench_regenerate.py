"""Regeneration speed: the collapse protocol's batched KV-cache loop vs `generate` once per block.

    python benchmarks/bench_regenerate.py [--paragraphs 60] [--reps 3] [--model DIR] [--run RUN_DIR]

Both rewrite the same facts paragraphs with the same tiny GPT-2 (the cached base M_0 when --model
is given, else a freshly initialized one of the same shape: speed does not depend on the weights),
by sampling at temperature 1.0, 32-token blocks, the first 4 text tokens kept:

* batched: `fortifai_bench.collapse.regenerate.regenerate` (sequential mode, batch 64, Gumbel-max);
* per block: for every paragraph and every block, `model.generate(do_sample=True)` on that block's
  context (batch 1), i.e. what a straightforward loop over blocks does.

Prints new tokens/s of each and their ratio, the batched loop's fraction of its floor (`decode_floor`:
the same batches decoded by the model alone, one KV-cache step per token, no sampling), plus Gumbel-max
vs `torch.multinomial` per sampling step at batch 64. With --run, also prints each stage's time split (train / regenerate / evaluate)
from a finished run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


@torch.inference_mode()
def decode_floor(model, tok, texts, settings) -> tuple[float, int, float]:
    """The model's own decoding time for the batches the sequential regeneration forms: per batch, one
    forward over the (dense, unpadded) prompts, then as many one-token steps with the KV cache as the
    batch's longest remainder, nothing else (no sampling, no masks, no per-row noise). Returns (seconds,
    new tokens the regeneration makes in them, the single-step decode rate in tokens/s at the full batch)."""
    from fortifai_bench.models import cache_argument

    name = cache_argument(model)  # `cache` in transformers 5, `past_key_values` before
    special = set(tok.all_special_ids)
    plans = []
    for text in texts:  # the regeneration's own split: special prefix + `prompt` kept tokens, the rest new
        ids = tok(text)["input_ids"]
        n_special = next((i for i, t in enumerate(ids) if t not in special), len(ids))
        n_text = len(ids) - n_special
        first = n_special + (min(settings.prompt, n_text // 2) if n_text > 1 else n_text)
        plans.append((ids, first, len(ids) - first))
    plans.sort(key=lambda p: (p[2], p[1]))  # as `_regenerate_sequential` orders its rows
    seconds, new, step_rates = 0.0, 0, []
    for s in range(0, len(plans), settings.batch_size):
        rows = plans[s : s + settings.batch_size]
        need = max(p[2] for p in rows)
        if need == 0:
            continue
        width = max(p[1] for p in rows)
        ids = torch.tensor([(p[0][: p[1]] * width)[:width] for p in rows])  # dense prompts, content irrelevant
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, step = getattr(out, name), ids[:, -1:]
        t1 = time.perf_counter()
        for _ in range(need):
            cache = getattr(model(input_ids=step, use_cache=True, logits_to_keep=1, **{name: cache}), name)
        t2 = time.perf_counter()
        seconds += t2 - t0
        new += sum(p[2] for p in rows)
        if len(rows) == settings.batch_size:
            step_rates.append(len(rows) * need / (t2 - t1))
    return seconds, new, (max(step_rates) if step_rates else float("nan"))


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
    ap.add_argument("--reps", type=int, default=3, help="timed rounds of regeneration vs its floor")
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
    decode_floor(model, tok, texts[:8], settings)  # warm-up
    times = {"regenerate": {"wall": [], "cpu": []}, "floor": {"wall": [], "cpu": []}}
    steps = []
    for _ in range(args.reps):  # alternating, so that load on a shared machine hits both alike
        for name in times:
            t0, c0 = time.perf_counter(), time.process_time()
            if name == "floor":
                _, floor_new, step_rate = decode_floor(model, tok, texts, settings)
                steps.append(step_rate)
            else:
                regenerate(model, tok, texts, settings, seed=0)
            times[name]["wall"].append(time.perf_counter() - t0)
            times[name]["cpu"].append(time.process_time() - c0)
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in times.items()}
    print(f"decode floor       : {floor_new} new tokens in {med['floor']['wall']:.2f} s = "
          f"{floor_new / med['floor']['wall']:,.0f} tok/s (single-step decode at batch {settings.batch_size}: "
          f"{statistics.median(steps):,.0f} tok/s)")
    print(f"batched sequential : {res.new_tokens / med['regenerate']['wall']:,.0f} tok/s (median of the same rounds)")
    print(f"batched sequential = {med['floor']['wall'] / med['regenerate']['wall']:.2f} of the floor by wall clock, "
          f"{med['floor']['cpu'] / med['regenerate']['cpu']:.2f} by CPU time (medians of {args.reps}, alternating; "
          f"load average {os.getloadavg()[0]:.2f})")
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
