"""Is the `facts` corpus learnable by the `tiny` GPT-2? (A measurement, not a test: it takes minutes.)

One run, two ways of feeding the same text, same model seed, epochs, learning rate and optimizer:
- `packed`: the project's trainer (`fortifai_bench.train.train`), which packs the token stream into
  fixed blocks, so a paragraph may start anywhere in a block;
- `rows`: one paragraph per row (BOS + paragraph, padded), the way KR questions present the text.
Each: the tiny model (tokenizer trained on both parts) is pretrained on part "pretrain", then trained
on part "main"; KR accuracy on the shipped `data/facts/kr.jsonl` is measured with the project's scorer
after pretraining and every few epochs of "main".

    python benchmarks/facts_learnability.py [--main-epochs 20] [--every 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import torch


def rows_train(model, tok, texts, epochs, lr, batch_size, seed):
    """Plain AdamW, one paragraph per row, loss on every real token after BOS."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    texts = list(texts)
    for epoch in range(epochs):
        random.Random(seed * 1000 + epoch).shuffle(texts)
        for i in range(0, len(texts), batch_size):
            b = tok(texts[i:i + batch_size], return_tensors="pt", padding=True)
            labels = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
            loss = model(**b, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--main-epochs", type=int, default=20)
    ap.add_argument("--every", type=int, default=5, help="score after every N epochs of main")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=4, help="rows per step; packed: blocks of 64 per step / 2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.schema import read_questions
    from fortifai_bench.kr.scoring import score
    from fortifai_bench.models import build_tiny
    from fortifai_bench.resources import data_dir
    from fortifai_bench.train import TrainConfig, train

    main_part, pre = get_corpus("facts"), get_corpus("facts", part="pretrain")
    questions = read_questions(data_dir() / "facts" / "kr.jsonl")

    for mode in ("rows", "packed"):
        model, tok = build_tiny(pre.texts() + main_part.texts(), seed=args.seed)
        torch.manual_seed(args.seed)
        start = time.perf_counter()

        def report(label):
            r = score(model, tok, questions)
            splits = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(r.by_split().items()))
            print(f"{mode:>6} {label:>22}: KR {r.acc:.3f}  ({splits})  [{time.perf_counter() - start:.0f} s]",
                  flush=True)

        def fit(model, texts, epochs, lr, batch_size):
            if mode == "rows":
                return rows_train(model, tok, texts, epochs, lr, batch_size, args.seed)
            # a 64-token block holds about two paragraphs: half as many blocks per step
            cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=max(1, batch_size // 2), block_size=64,
                              val_fraction=0.0, warmup=0, schedule="constant", seed=args.seed, device="cpu",
                              max_grad_norm=None)
            return train(model, tok, texts, "ce", cfg, progress=False).model

        report("untrained")
        model = fit(model, pre.texts(), args.pretrain_epochs, 3e-3, 16)
        report(f"pretrained {args.pretrain_epochs} epochs")
        done = 0
        while done < args.main_epochs:
            n = min(args.every, args.main_epochs - done)
            model = fit(model, main_part.texts(), n, args.lr, args.batch_size)
            done += n
            report(f"main {done} epochs")


if __name__ == "__main__":
    main()
