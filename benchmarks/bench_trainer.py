"""Training throughput: our trainer vs `transformers.Trainer`, and TCE vs CE in our trainer.

    python benchmarks/bench_trainer.py [--text-file ../shared/data/wikitext-2-raw-v1/wiki.valid.raw]
        [--texts 600] [--epochs 1] [--rounds 3] [--threads 1]

All three variants train the same tiny GPT-2 (the `tiny` preset, same initial weights) on the same
packed blocks (block 64, batch 16, AdamW, cosine schedule with 10% warmup, clipping at 1.0, no
validation), in this one process:

* ``ours-ce``:  `fortifai_bench.train.train(..., "ce")`
* ``hf-ce``:    `transformers.Trainer` with the model's own (default) causal-LM cross-entropy
* ``ours-tce``: `fortifai_bench.train.train(..., "tce:0.9")`

tokens/s = real tokens trained / time of the whole training call, by wall clock and by this
process's CPU time (see `Clock`). A warm-up round on a tenth of the texts comes first; then rounds
interleave the variants so that load on a shared machine hits all of them alike; the table shows
medians.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw-v1" / "wiki.valid.raw"


class Clock:
    """Wall time and this process's CPU time of a block. With one thread and a busy shared machine,
    CPU time is the steadier measure of the work done; wall time includes waiting for a core."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def load_texts(path: Path, n: int) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [line for line in lines if line and not line.startswith("=")]  # paragraphs, not headings
    return texts[:n]


def run_ours(model, tokenizer, texts, loss, args) -> tuple[float, int]:
    from fortifai_bench.train import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, lr=3e-4, batch_size=16, block_size=64, warmup=0.1,
                         schedule="cosine", max_grad_norm=1.0, val_fraction=0.0, seed=0)
    with Clock() as clock:
        result = train(model, tokenizer, texts, loss, config, progress=False)
    return clock, sum(row["tokens"] for row in result.history)


def run_hf(model, tokenizer, texts, args, tmp: Path) -> tuple[float, int]:
    from transformers import Trainer, TrainingArguments

    from fortifai_bench.train import pack, tokenize

    blocks = pack(tokenize(tokenizer, texts), 64, tokenizer.pad_token_id or 0)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
            for ids, mask in zip(blocks.ids, blocks.mask)]
    steps = -(-len(rows) // 16) * args.epochs
    targs = TrainingArguments(
        output_dir=str(tmp), per_device_train_batch_size=16, num_train_epochs=args.epochs, learning_rate=3e-4,
        lr_scheduler_type="cosine", warmup_steps=int(0.1 * steps), max_grad_norm=1.0, weight_decay=0.0,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        use_cpu=True, dataloader_num_workers=0, seed=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=rows)
    with Clock() as clock:
        trainer.train()
    return clock, int(blocks.mask.sum()) * args.epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text-file", type=Path, default=DEFAULT_TEXT)
    p.add_argument("--texts", type=int, default=600, help="paragraphs to train on")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import tempfile

    import transformers

    from fortifai_bench.models import build_tiny, count_parameters

    transformers.logging.set_verbosity_error()
    texts = load_texts(args.text_file, args.texts)
    base, tokenizer = build_tiny(texts, seed=0)
    variants = ("ours-ce", "hf-ce", "ours-tce")
    rates: dict[str, dict[str, list[float]]] = {v: {"wall": [], "cpu": []} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms up (first-call costs), not counted
            for v in variants:
                model = copy.deepcopy(base)
                data = texts if r else texts[: max(20, len(texts) // 10)]
                if v == "hf-ce":
                    clock, tokens = run_hf(model, tokenizer, data, args, Path(tmp))
                else:
                    clock, tokens = run_ours(model, tokenizer, data, "ce" if v == "ours-ce" else "tce:0.9", args)
                if r:
                    rates[v]["wall"].append(tokens / clock.wall)
                    rates[v]["cpu"].append(tokens / clock.cpu)
                print(f"round {r}: {v:9s} {tokens:,} tokens: wall {clock.wall:6.2f} s = {tokens / clock.wall:8,.0f} tok/s; "
                      f"cpu {clock.cpu:6.2f} s = {tokens / clock.cpu:8,.0f} tok/cpu-s", file=sys.stderr)
    med = {v: {k: statistics.median(x) for k, x in d.items()} for v, d in rates.items()}
    print(f"# tiny GPT-2 ({count_parameters(base):,} parameters, vocab {len(tokenizer)}), {len(texts)} paragraphs of "
          f"{args.text_file.name}, block 64, batch 16, {args.epochs} epoch(s), {args.threads} thread(s), "
          f"torch {torch.__version__}, transformers {transformers.__version__}, {args.rounds} rounds, medians")
    print("| variant | tokens/s (wall) | tokens per CPU-second | wall, all rounds |")
    print("| --- | ---: | ---: | --- |")
    for v in variants:
        print(f"| {v} | {med[v]['wall']:,.0f} | {med[v]['cpu']:,.0f} | "
              f"{', '.join(f'{x:,.0f}' for x in rates[v]['wall'])} |")
    for kind in ("wall", "cpu"):
        ours_vs_hf = med["ours-ce"][kind] / med["hf-ce"][kind]
        tce_vs_ce = med["ours-tce"][kind] / med["ours-ce"][kind]
        print(f"\n[{kind}] ours-ce / hf-ce throughput: {ours_vs_hf:.3f} (target >= 1.0: "
              f"{'met' if ours_vs_hf >= 1 else 'MISSED'})")
        print(f"[{kind}] ours-tce / ours-ce throughput: {tce_vs_ce:.3f} (target >= 0.9, i.e. at most 10% slower: "
              f"{'met' if tce_vs_ce >= 0.9 else 'MISSED'})")

if __name__ == "__main__":
    main()
