"""Where the KR scorer's time goes on WikiText items, and the two choices made from it (issue 14):

    python benchmarks/bench_scorer_parts.py [--set wikitext|facts] [--items 1000] [--reps 3]

1. `score` by CPU seconds for several `_CE_CHUNK` sizes (scored positions projected and scored at a time),
   alternating, `--reps` rounds;
2. the fused cross-entropy against `gather - logsumexp` on a [4480, 4096] logits matrix (the size of one
   batch's scored positions here);
3. the share of padded positions in the scorer's rows (one item per row, rows of a batch padded to its longest);
4. a cProfile of one `score` call, the 12 functions with the most time of their own.
One torch thread; the same tiny GPT-2 and items as `bench_scorer.py --set wikitext` (or `--set facts`).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--set", choices=("facts", "wikitext"), default="wikitext")
    ap.add_argument("--chunks", default="512,1024,2048,4096")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "wikitext-2-raw-v1"))
    args = ap.parse_args()

    import torch
    from bench_scorer import load_set

    from fortifai_bench.kr import scoring, tree
    from fortifai_bench.kr.encode import encode_items, model_window

    torch.set_num_threads(1)
    model, tokenizer, questions = load_set(args.set, args.items, args.data_dir)
    scoring.score(model, tokenizer, questions)  # warm-up

    chunks, cpu = [int(c) for c in args.chunks.split(",")], {}
    default = tree._CE_CHUNK
    for _ in range(args.reps):
        for c in chunks:
            tree._CE_CHUNK = c
            t0 = time.process_time()
            scoring.score(model, tokenizer, questions)
            cpu.setdefault(c, []).append(time.process_time() - t0)
    tree._CE_CHUNK = default
    print("score, CPU seconds per call by _CE_CHUNK:", {c: [round(x, 2) for x in v] for c, v in cpu.items()})

    logits, targets = torch.randn(4480, 4096), torch.randint(0, 4096, (4480,))
    forms = {"cross_entropy": lambda: -torch.nn.functional.cross_entropy(logits, targets, reduction="none"),
             "gather - logsumexp": lambda: logits.gather(-1, targets[:, None]).squeeze(-1)
             - torch.logsumexp(logits, -1)}
    for name, fn in list(forms.items()) * 2:
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        print(f"{name}: {(time.perf_counter() - t0) * 100:.1f} ms per call ([4480, 4096])")

    items = encode_items(questions, tokenizer, model_window(model, tokenizer))
    order = scoring._order(items, 64, True, tree=True)
    padded = total = 0
    for s in range(0, len(order), 64):
        batch = [items[i] for i in order[s : s + 64]]
        width = max(tree.tree_len(it) for it in batch)
        total += width * len(batch)
        padded += sum(width - tree.tree_len(it) for it in batch)
    print(f"padded positions: {padded / total:.1%} of {total:,} (batch 64)")

    profile = cProfile.Profile()
    profile.enable()
    scoring.score(model, tokenizer, questions)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
