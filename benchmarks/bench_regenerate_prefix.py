"""The shared prefix of `original` regeneration (issue 27 item 5): one forward pass per paragraph vs every
block reading its own context.

Rewrites split 0 of `collapse_wikitext_smol` (40 WikiText paragraphs) with SmolLM2-135M-Instruct as the task
regenerates it (greedy, 32-token blocks continuing the original text, context 512, batch 32), with the shared
prefix (`regenerate(..., shared_prefix=True)`, the run's path) and without it (every block's context prefilled
anew, the path before), alternated `--repeats` times in one process and one thread. Reports the wall seconds of
each, their ratio, and how many regenerated tokens the two paths give differently: they compute the same
greedy continuations up to float rounding (different matrix shapes), so a token can flip where two logits
tie to the last bits, and the rest of its block then follows the flip.

    FORTIFAI_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_regenerate_prefix.py --repeats 2

With `--run RUN --stage I`, instead: M_i as the run saved it rewrites every split of stage I's pool again, with
this checkout's code and the run's own seeds, and the tokens are compared with those the run wrote (`RUN/stage_I/
data`): whether a run made before the shared prefix regenerates to the same tokens with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fortifai_bench.collapse import load_task
from fortifai_bench.collapse.plan import plan
from fortifai_bench.collapse.protocol import load_data
from fortifai_bench.collapse.regenerate import regenerate
from fortifai_bench.collapse.rundir import read_run_config
from fortifai_bench.models import load_model
from fortifai_bench.results import cpu


def check_run(run: Path, stage: int) -> None:
    """Rewrite stage `stage`'s pool again with its saved model; count the tokens that differ from the run's."""
    task, _ = read_run_config(run)
    data = load_data(task)
    p = plan(task, [len(s) for s in data.splits])[stage]
    model, tokenizer = load_model(str(run / p.folder / "model"))

    def written(stage_folder: str, k: int) -> list[dict]:
        return [json.loads(line) for line in (run / stage_folder / "data" / f"split_{k}.jsonl").read_text().splitlines()]

    total = differ = 0
    for k, g in p.pool:  # D_k^(g): the real split, or what stage k + g - 1 wrote
        source = ([{"id": q.id, "text": q.text} for q in data.splits[k]] if g == 0
                  else written(f"stage_{k + g - 1}", k))
        start = time.perf_counter()
        res = regenerate(model, tokenizer, [r["text"] for r in source], task.regenerate, seed=p.regenerate_seed(k),
                         keys=[r["id"] for r in source])
        theirs = written(p.folder, k)
        d = sum(a != b for mine, row in zip(res.ids, theirs) for a, b in zip(mine, row["ids"]))
        total, differ = total + res.new_tokens, differ + d
        print(f"split {k} (generation {g} -> {g + 1}): {d:,} of {res.new_tokens:,} regenerated tokens differ, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print(f"{run.name} stage {stage}: {differ:,} of {total:,} tokens differ")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="collapse_wikitext_smol")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--paragraphs", type=int, default=None, help="the first N paragraphs of split 0 (default: all)")
    p.add_argument("--run", type=Path, help="a run folder: regenerate one of its stages again and compare")
    p.add_argument("--stage", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.run is not None:
        return check_run(args.run, args.stage)
    task = load_task(args.task)
    texts = [q.text for q in load_data(task).splits[0]][: args.paragraphs]
    model, tokenizer = load_model(task.model.name)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    ids: dict[bool, list[list[int]]] = {}
    for _ in range(args.repeats):
        for shared in (True, False):
            start = time.perf_counter()
            res = regenerate(model, tokenizer, texts, task.regenerate, seed=0, shared_prefix=shared)
            seconds[shared].append(time.perf_counter() - start)
            ids[shared] = res.ids
            new = res.new_tokens
    differ = sum(a != b for x, y in zip(ids[True], ids[False]) for a, b in zip(x, y))
    rows_differ = sum(x != y for x, y in zip(ids[True], ids[False]))
    c = cpu()
    print(f"CPU: {c.get('model')} ({c.get('torch_capability')}); torch {torch.__version__}; 1 thread; "
          f"{args.repeats} repeats, alternated; {len(texts)} paragraphs of {args.task} split 0, {new:,} new tokens")
    old, shared = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"every block reads its context: {old:.1f} s (median; {', '.join(f'{s:.1f}' for s in seconds[False])})")
    print(f"shared prefix:                 {shared:.1f} s (median; {', '.join(f'{s:.1f}' for s in seconds[True])})")
    print(f"speed-up: {old / shared:.2f}x")
    print(f"tokens that differ: {differ:,} of {new:,} regenerated ({rows_differ} of {len(texts)} paragraphs)")


if __name__ == "__main__":
    main()
