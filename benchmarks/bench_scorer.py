"""Items/s of `fortifai_bench.kr.scoring` against lm-eval's own scoring of the same items, same model.

    python benchmarks/bench_scorer.py [--set facts|wikitext] [--items 1000] [--batch-size 64] [--reps 3]

Both run in this one process on the same tiny GPT-2 and the same questions:
- `--set facts` (default; the collapse protocol's kind of items): 1,000 `facts`-generator questions
  on the facts corpus's `pretrain` part (kr_facts itself has 769), tokenizer trained on the facts text;
- `--set wikitext`: the first 1,000 `rules` questions of WikiText-2's local valid part (the offline
  kr_wikitext set), tokenizer trained on that text (long continuations: less context to share).
- lm-eval: `lm_eval.simple_evaluate` with an `HFLM` wrapping the loaded model, an inline task with the
  settings of our kr_* YAMLs (multiple_choice, acc + acc_norm), same batch size, bootstrap off.
- ours: `score(model, tokenizer, questions)` (shared context + KV cache), and for reference the same
  scorer with `shared_context=False` (lm-eval's per-sequence computation without lm-eval's harness).
Each is called once to warm up (start-up not counted), then `--reps` times, alternating; the median
wall time is reported. The machine may be shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("facts", "wikitext"), default="facts")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "wikitext-2-raw-v1"))
    args = ap.parse_args()

    import datasets
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM

    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.lm_eval_tasks import to_docs, wikitext_questions
    from fortifai_bench.kr.scoring import score
    from fortifai_bench.models import build_tiny

    torch.set_num_threads(args.threads)
    if args.set == "facts":
        from fortifai_bench.kr.facts_gen import generate_facts

        corpus = get_corpus("facts", part="pretrain")
        questions = generate_facts(corpus, 6)[: args.items]
        texts = get_corpus("facts").texts() + corpus.texts()
    else:
        questions = wikitext_questions(args.data_dir, part="valid")[: args.items]
        texts = get_corpus("wikitext-2-raw-v1", data_dir=args.data_dir, part="valid").texts()
    if len(questions) < args.items:
        raise SystemExit(f"only {len(questions)} questions available")
    model, tokenizer = build_tiny(texts, seed=0)
    model.eval()
    docs = to_docs(questions)
    task = {
        "task": "kr_bench", "custom_dataset": lambda **_: {"test": datasets.Dataset.from_list(docs)},
        "output_type": "multiple_choice", "test_split": "test", "doc_to_text": "context",
        "doc_to_choice": "choices", "doc_to_target": 0, "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size, device="cpu")

    def run_lm_eval():
        out = lm_eval.simple_evaluate(model=hflm, tasks=[task], bootstrap_iters=0, verbosity="ERROR")
        return out["results"]["kr_bench"]["acc,none"]

    runners = {
        "lm_eval.simple_evaluate": run_lm_eval,
        "score (shared context)": lambda: score(model, tokenizer, questions, batch_size=args.batch_size).acc,
        "score (shared_context=False)": lambda: score(model, tokenizer, questions, batch_size=args.batch_size,
                                                      shared_context=False).acc,
    }
    accs = {name: fn() for name, fn in runners.items()}  # warm-up (start-up, dataset building) not timed
    times = {name: [] for name in runners}
    for _ in range(args.reps):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    base = statistics.median(times["lm_eval.simple_evaluate"])
    print(f"{args.items} KR items ({args.set}), tiny GPT-2 ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}, lm-eval {lm_eval.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"{'scorer':32s} {'median s':>9s} {'items/s':>9s} {'vs lm-eval':>10s}  acc")
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        rows[name] = {"median_s": med, "items_per_s": args.items / med, "speedup": base / med, "acc": accs[name]}
        print(f"{name:32s} {med:9.3f} {args.items / med:9.1f} {base / med:9.2f}x  {accs[name]:.4f}")
    print(json.dumps({"set": args.set, "items": args.items, "batch_size": args.batch_size, "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
