"""Items/s of `fortifai_bench.kr.scoring` against lm-eval's scoring of the same items and against the floor.

    python benchmarks/bench_scorer.py [--set facts|wikitext] [--items 1000] [--batch-size 64] [--reps 3]

Both run in this one process on the same tiny GPT-2 and the same questions:
- `--set facts` (default; the collapse protocol's kind of items): 1,000 `facts`-generator questions
  on the facts corpus's `pretrain` part (kr_facts itself has 769), tokenizer trained on the facts text;
- `--set wikitext`: the first 1,000 `rules` questions of WikiText-2's local valid part (the offline
  kr_wikitext set), tokenizer trained on that text (long continuations: less context to share).
- lm-eval: `lm_eval.simple_evaluate` with an `HFLM` wrapping the loaded model, an inline task with the
  settings of our kr_* YAMLs (multiple_choice, acc + acc_norm), same batch size, bootstrap off.
- ours: `score(model, tokenizer, questions)` (one row per question, shared context), and for reference the same
  scorer with `shared_context=False` (lm-eval's per-sequence computation without lm-eval's harness).
- floor: the time the model itself needs for the tokens the items need (issue 14): for each batch the
  scorer forms (same items, same order), ONE forward pass over exactly that batch's unique tokens
  (context + true[:-1] + false[:-1] of every item, packed into `batch` dense rows: no padding, no
  mask, no cache), projecting onto the vocabulary only as many positions per row as the batch scores
  ("floor"), or every position ("plain forward"). `score`'s fraction of the floor = floor time / its time.
Each is called once to warm up (start-up not counted), then `--reps` times, alternating; the median
time is reported, by wall clock and by this process's CPU time (`--threads 1`: CPU time is the work done,
whatever else the machine runs). The machine may be shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_set(name: str, items: int, data_dir: str):
    """(model, tokenizer, questions) of `--set`: the tiny GPT-2 (seed 0) with a tokenizer trained on the set's
    text, and its first `items` questions."""
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.lm_eval_tasks import wikitext_questions
    from fortifai_bench.models import build_tiny

    if name == "facts":
        from fortifai_bench.kr.facts_gen import generate_facts

        corpus = get_corpus("facts", part="pretrain")
        questions = generate_facts(corpus, 6)[:items]
        texts = get_corpus("facts").texts() + corpus.texts()
    else:
        questions = wikitext_questions(data_dir, part="valid")[:items]
        texts = get_corpus("wikitext-2-raw-v1", data_dir=data_dir, part="valid").texts()
    if len(questions) < items:
        raise SystemExit(f"only {len(questions)} questions available")
    model, tokenizer = build_tiny(texts, seed=0)
    model.eval()
    return model, tokenizer, questions


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

    from fortifai_bench.kr.lm_eval_tasks import to_docs
    from fortifai_bench.kr.scoring import score

    torch.set_num_threads(args.threads)
    model, tokenizer, questions = load_set(args.set, args.items, args.data_dir)
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

    from fortifai_bench.kr.encode import encode_items, model_window
    from fortifai_bench.kr.scoring import _order
    from fortifai_bench.kr.tree import tree_len

    items = encode_items(questions, tokenizer, model_window(model, tokenizer))
    order = _order(items, args.batch_size, True, tree=True)
    floor_batches = []  # (dense ids, positions to project) per scorer batch
    for s in range(0, len(order), args.batch_size):
        batch = [items[i] for i in order[s : s + args.batch_size]]
        flat = [t for it in batch for t in it.ctx + it.conts[0][:-1] + it.conts[1][:-1]]
        n = len(batch)
        width = -(-len(flat) // n)
        flat += [tokenizer.pad_token_id] * (n * width - len(flat))
        scored = sum(len(it.conts[0]) + len(it.conts[1]) - 1 for it in batch)
        floor_batches.append((torch.tensor(flat).view(n, width), -(-scored // n)))
    unique = sum(tree_len(it) for it in items)

    @torch.inference_mode()
    def run_floor(project_all: bool):
        for ids, keep in floor_batches:
            model(input_ids=ids, use_cache=False, logits_to_keep=0 if project_all else keep)

    runners = {
        "floor": lambda: run_floor(False),
        "plain forward": lambda: run_floor(True),
        "lm_eval.simple_evaluate": run_lm_eval,
        "score": lambda: score(model, tokenizer, questions, batch_size=args.batch_size).acc,
        "score (shared_context=False)": lambda: score(model, tokenizer, questions, batch_size=args.batch_size,
                                                      shared_context=False).acc,
    }
    accs = {name: fn() for name, fn in runners.items()}  # warm-up (start-up, dataset building) not timed
    times = {name: {"wall": [], "cpu": []} for name in runners}
    for _ in range(args.reps):
        for name, fn in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name]["wall"].append(time.perf_counter() - t0)
            times[name]["cpu"].append(time.process_time() - c0)

    med = {name: {k: statistics.median(v) for k, v in ts.items()} for name, ts in times.items()}
    print(f"{args.items} KR items ({args.set}), {unique / args.items:.1f} unique tokens per item, tiny GPT-2 "
          f"({sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(tokenizer)}), batch "
          f"{args.batch_size}, {args.threads} threads, torch {torch.__version__}, lm-eval {lm_eval.__version__}, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'':30s} {'wall s':>8s} {'items/s':>9s} {'vs lm-eval':>10s} {'of floor':>9s} | {'cpu s':>7s} "
          f"{'vs lm-eval':>10s} {'of floor':>9s}  acc")
    rows = {}
    for name, m in med.items():
        w, c = m["wall"], m["cpu"]
        rows[name] = {"wall_s": w, "cpu_s": c, "items_per_s": args.items / w,
                      "vs_lm_eval": med["lm_eval.simple_evaluate"]["wall"] / w,
                      "vs_lm_eval_cpu": med["lm_eval.simple_evaluate"]["cpu"] / c,
                      "of_floor": med["floor"]["wall"] / w, "of_floor_cpu": med["floor"]["cpu"] / c,
                      "acc": accs[name] if isinstance(accs[name], float) else None}
        r = rows[name]
        acc = f"{r['acc']:.4f}" if r["acc"] is not None else ""
        print(f"{name:30s} {w:8.3f} {r['items_per_s']:9.1f} {r['vs_lm_eval']:9.2f}x {r['of_floor']:9.2f} | {c:7.3f} "
              f"{r['vs_lm_eval_cpu']:9.2f}x {r['of_floor_cpu']:9.2f}  {acc}")
    print(f"floor: {unique / med['floor']['wall']:,.0f} unique tokens/s by wall clock, "
          f"{unique / med['floor']['cpu']:,.0f} per CPU-second")
    print(json.dumps({"set": args.set, "items": args.items, "batch_size": args.batch_size, "threads": args.threads,
                      "unique_tokens": unique, "rows": rows}))


if __name__ == "__main__":
    main()
