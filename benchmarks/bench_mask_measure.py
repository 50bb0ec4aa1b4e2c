"""The mask measure around training (`corruption.gradient_split`) on a finished stage of a run (issue 27 item 5).

Around each stage's training a run measures, in eval mode, which regenerated and fresh tokens its loss would
keep, with the model that starts the stage (M_{i-1}: `gradient.start`) and the one that ends it (M_i:
`gradient.end`). This reads stage I's pool as RUN wrote it and
1. times the masking loss's pass over it with M_{i-1}, rows in the run's order (the loop before batching
   longest with longest) against `corruption._kept` (longest with longest), alternated in one process and one
   thread, and counts the tokens whose kept bit differs between the two (float rounding of other matrix
   shapes could flip a token whose p lies at gamma to the last bits);
2. computes `gradient_split` with this checkout's code for M_{i-1} and M_i and compares every number with the
   run's train.json;
3. times the same measure for CE, which keeps every token (`Loss.keeps_every_token`) and now runs no model.

    FORTIFAI_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_mask_measure.py --run RUN --stage 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fortifai_bench.collapse.corruption import _kept, gradient_split
from fortifai_bench.collapse.plan import plan
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.rundir import read_run_config
from fortifai_bench.losses import load_loss, token_logprobs
from fortifai_bench.models import load_model
from fortifai_bench.results import cpu


@torch.no_grad()
def kept_in_order(model, loss, rows: list[list[int]], batch_size: int) -> list[list[bool]]:
    """`corruption._kept` as it was before 2026-12-05: batches in the rows' own order."""
    out = []
    for s in range(0, len(rows), batch_size):
        batch = rows[s : s + batch_size]
        width = max(len(r) for r in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for j, r in enumerate(batch):
            ids[j, : len(r)] = torch.tensor(r)
            labels[j, : len(r)] = torch.tensor(r)
        logits = model(input_ids=ids, attention_mask=(labels != -100).long()).logits.float()
        logp, valid = token_logprobs(logits, labels)
        _, kept = loss.reduce(logp, valid)
        kept = (kept.bool() & valid).view(len(batch), width)
        out += [kept[j, : len(r) - 1].tolist() for j, r in enumerate(batch)]
    return out


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a run folder whose stage I has finished")
    p.add_argument("--stage", type=int, default=2, help="a stage >= 1 (stage 0 trains on no regenerated text)")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = args.run
    task, recorded = read_run_config(run)
    loss = load_loss(recorded["spec"]).loss
    data = load_data(task)
    stage = plan(task, [len(s) for s in data.splits])[args.stage]

    def written(stage_folder: str, k: int) -> list[str]:
        lines = (run / stage_folder / "data" / f"split_{k}.jsonl").read_text().splitlines()
        return [json.loads(line)["text"] for line in lines]

    pairs = [(q.text, new) for k, g in stage.pool if g > 0
             for q, new in zip(data.splits[k], written(f"stage_{k + g - 1}", k))]
    fresh = [(q.text, q.text) for q in data.splits[args.stage]]
    before, tokenizer = load_model(str(run / f"stage_{args.stage - 1}" / "model"))
    before.eval()
    eb = task.eval.batch_size
    rows = [tokenizer(new)["input_ids"] for _, new in pairs + fresh]
    print(f"{run.name} stage {args.stage}: {recorded['spec']}, {len(pairs)} regenerated + {len(fresh)} fresh "
          f"paragraphs, {sum(map(len, rows)):,} tokens; CPU {cpu().get('model')}, torch {torch.__version__}")
    old, old_s = timed(kept_in_order, before, loss, rows, eb)
    new, new_s = timed(_kept, before, loss, rows, eb)
    flips = sum(a != b for x, y in zip(old, new) for a, b in zip(x, y))
    print(f"pass with M_{args.stage - 1}: in the rows' order {old_s:.1f} s, longest with longest {new_s:.1f} s "
          f"({old_s / new_s:.2f}x); {flips} of {sum(map(len, new)):,} kept bits differ")
    logged = json.loads((run / f"stage_{args.stage}" / "train.json").read_text())["gradient"]
    after, _ = load_model(str(run / f"stage_{args.stage}" / "model"))
    for name, model in (("start", before), ("end", after)):
        got, seconds = timed(gradient_split, model, tokenizer, load_loss(recorded["spec"]), pairs, eb, fresh)
        differ = {k: (logged[name].get(k), v) for k, v in got.items() if logged[name].get(k) != v}
        print(f"gradient.{name}: {seconds:.1f} s with this checkout; "
              f"{'every number as recorded' if not differ else f'differs: {differ}'}")
    _, ce_s = timed(gradient_split, before, tokenizer, load_loss("ce"), pairs, eb, fresh)
    print(f"the same measure for ce (keeps every token, no model run): {ce_s:.2f} s")


if __name__ == "__main__":
    main()
