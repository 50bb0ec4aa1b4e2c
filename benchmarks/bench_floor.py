"""Training against its floor: our trainer's tokens/s vs the forward+backward rate of the model alone.

    python benchmarks/bench_floor.py [--epochs 2] [--reps 3] [--threads 1] [--packing]

The `tiny` GPT-2 on the `facts` corpus (180 paragraphs; one paragraph per row unless --packing), the
trainer's defaults otherwise (batch 16, block 64, 10% of the texts held out), what
`fortifai-bench train --model tiny --corpus facts --no-packing --epochs N` runs, in this one process:

* trainer: `fortifai_bench.train.train(model, tok, texts, "ce", config)`; tokens/s = trained tokens /
  wall time of the whole call (tokenizing, AdamW steps, clipping, the per-epoch validation pass and the
  best-epoch copy included), and the loop's own per-epoch figure (`history[i]["tokens_per_s"]`);
* floor: the same blocks (`fortifai_bench.train.prepare`, same seed), the same batches (a random order of
  `batch_size` rows per epoch, as many epochs, cut to the longest row by `Blocks.batch` as the trainer
  does), and for each batch only the model's forward pass with
  its own causal-LM cross-entropy (``labels=``) and ``backward()``: no optimizer, no clipping, no
  validation, no loss statistics. The fraction of the floor = trainer tokens/s / floor tokens/s.

Each is run once small to warm up, then `--reps` times alternating; medians of wall and of this
process's CPU time (steadier on a shared machine at one thread) are shown, with the load average.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch


def floor(model, blocks, config, epochs: int) -> int:
    """Forward + backward of every batch the trainer would form; returns the real tokens trained."""
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    tokens = 0
    for _ in range(epochs):
        for index in torch.randperm(len(blocks), generator=generator).split(config.batch_size):
            ids, mask, labels = blocks.batch(index)  # the trainer's batch: columns past the longest row cut
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            model.zero_grad(set_to_none=True)
            tokens += int(mask.sum())  # real tokens, as the trainer counts them
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--packing", action="store_true", help="packed blocks instead of one paragraph per row")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import build_tiny, count_parameters
    from fortifai_bench.train import TrainConfig, prepare, train

    hf_logging.set_verbosity_error()
    texts = get_corpus("facts").texts()
    base, tok = build_tiny(texts, seed=0)
    config = TrainConfig(epochs=args.epochs, packing=args.packing)
    blocks, _ = prepare(tok, texts, None, config, torch.Generator().manual_seed(config.seed))

    def run_trainer(data=texts, epochs=args.epochs):
        result = train(copy.deepcopy(base), tok, data, "ce", TrainConfig(epochs=epochs, packing=args.packing),
                       progress=False)
        loop_rate = statistics.median(row["tokens_per_s"] for row in result.history)
        return sum(row["tokens"] for row in result.history), loop_rate

    def run_floor(epochs=args.epochs):
        return floor(copy.deepcopy(base), blocks, config, epochs), None

    run_trainer(texts[:32], 1), run_floor(1)  # warm-up
    rates = {"trainer": {"wall": [], "cpu": [], "loop": []}, "floor": {"wall": [], "cpu": []}}
    tokens = {}
    for _ in range(args.reps):
        for name, fn in (("trainer", run_trainer), ("floor", run_floor)):
            t0, c0 = time.perf_counter(), time.process_time()
            n, loop_rate = fn()
            rates[name]["wall"].append(n / (time.perf_counter() - t0))
            rates[name]["cpu"].append(n / (time.process_time() - c0))
            if loop_rate is not None:
                rates[name]["loop"].append(loop_rate)
            tokens[name] = n
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in rates.items()}
    print(f"# tiny GPT-2 ({count_parameters(base):,} parameters, vocabulary {len(tok)}), facts corpus "
          f"({len(texts)} paragraphs, {'packed' if args.packing else 'one per row'}), batch {config.batch_size}, "
          f"block {config.block_size}, {args.epochs} epoch(s), {args.threads} thread(s), torch {torch.__version__}, "
          f"{args.reps} reps, medians; load average {os.getloadavg()[0]:.2f}; tokens trained: "
          f"trainer {tokens['trainer']:,}, floor {tokens['floor']:,}")
    print("| | tokens/s (wall) | tokens per CPU-second | of the floor (wall) | of the floor (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    f = med["floor"]
    for name in ("floor", "trainer"):
        m = med[name]
        print(f"| {name} | {m['wall']:,.0f} | {m['cpu']:,.0f} | {m['wall'] / f['wall']:.2f} | {m['cpu'] / f['cpu']:.2f} |")
    print(f"| trainer, per-epoch loop figure | {med['trainer']['loop']:,.0f} | | {med['trainer']['loop'] / f['wall']:.2f} | |")


if __name__ == "__main__":
    main()
