"""The thread policy (`fortifai_bench.threads`) against fixed thread counts, alone and beside a busy process.

    python benchmarks/bench_threads.py [--rounds 1] [--settings 1,2,2-passive,policy] [--epochs 2]

One script, one machine, side by side: every (setting, condition) pair is a fresh worker process (this
script with --worker) that times three library calls on the tiny GPT-2 built on the `facts` corpus:

* train:      `fortifai_bench.train.train(..., "ce", TrainConfig(epochs, packing=False))` on the facts
              corpus (180 paragraphs), what `fortifai-bench train --model tiny --corpus facts --no-packing`
              runs; tokens/s = trained tokens / wall time;
* regenerate: `fortifai_bench.collapse.regenerate.regenerate` of 128 facts paragraphs (sequential, block 32,
              batch 64, 4 prompt tokens, temperature 1.0: the embedded default's settings); new tokens/s;
* score:      `fortifai_bench.kr.scoring.score` of 1,000 facts questions, batch 64; items/s.

Each call runs once small to warm up, then once timed. Settings: ``1``/``2`` = OMP_NUM_THREADS fixed (as
a user would set it), ``policy`` = what every `fortifai-bench` command does by default (`threads.start()`
then `threads.apply_default()` before torch loads, exactly as `cli.main`); a suffix ``-passive`` adds
OMP_WAIT_POLICY=PASSIVE (waiting OpenMP threads sleep at once instead of spinning), ``-spinN``
GOMP_SPINCOUNT=N (libgomp spins N times before it sleeps; its default is 300000).
Conditions: ``alone``, and ``beside`` one busy CPU process (a pure-Python ``while True: pass`` loop,
one thread, started 0.3 s before the worker and stopped after it). Rounds interleave settings and
conditions so that drifting background load hits all of them alike; medians are shown.

The load of other processes (in cores, at most the number of cores; our own busy process included when
beside) is measured over 0.3 s before each worker and over the worker's own run (its CPU time removed),
and reported with the 1-minute load average: on a shared machine an "alone" figure is only alone when
both are ~0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORKLOADS = ("train", "regenerate", "score")
UNITS = {"train": "tok/s", "regenerate": "new tok/s", "score": "items/s"}


# ----------------------------------------------------------------------------------------------- worker

def _set_threads(setting: str) -> str:
    """Apply a setting before torch is imported; returns how the count was decided."""
    from fortifai_bench import threads

    count, _, wait = setting.partition("-")
    how = []
    if wait == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        how.append("OMP_WAIT_POLICY=PASSIVE")
    elif wait.startswith("spin"):  # libgomp spins this many times before it sleeps (default 300000)
        os.environ["GOMP_SPINCOUNT"] = wait[4:]
        how.append(f"GOMP_SPINCOUNT={wait[4:]}")
    if count == "policy":
        threads.start()
        return " ".join([str(threads.apply_default())] + how)
    os.environ["OMP_NUM_THREADS"] = count
    return " ".join([f"OMP_NUM_THREADS={count}"] + how)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def worker(setting: str, epochs: int) -> dict:
    how = _set_threads(setting)
    import copy

    import torch
    from transformers.utils import logging as hf_logging

    from fortifai_bench.collapse.config import RegenerateSettings
    from fortifai_bench.collapse.regenerate import regenerate
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.facts_gen import generate_facts
    from fortifai_bench.kr.scoring import score
    from fortifai_bench.models import build_tiny
    from fortifai_bench.train import TrainConfig, train

    from fortifai_bench import threads

    hf_logging.set_verbosity_error()
    before = threads.snapshot()  # the load of other processes while this worker runs (its own CPU removed)
    texts = get_corpus("facts").texts()
    pretrain = get_corpus("facts", part="pretrain")
    questions = generate_facts(pretrain, 6)[:1000]
    base, tok = build_tiny(texts + pretrain.texts(), seed=0)
    cfg = TrainConfig(epochs=epochs, packing=False)
    regen = RegenerateSettings(prompt=4, temperature=1.0)
    paragraphs = pretrain.texts()[:128]
    rates = {}

    def run_train(data, epochs_):
        out = train(copy.deepcopy(base), tok, data, "ce", TrainConfig(epochs=epochs_, packing=False), progress=False)
        return sum(row["tokens"] for row in out.history)

    run_train(texts[:32], 1)  # warm-up
    t0 = time.perf_counter()
    tokens = run_train(texts, cfg.epochs)
    rates["train"] = tokens / (time.perf_counter() - t0)

    model = base.eval()
    regenerate(model, tok, paragraphs[:16], regen, seed=0)
    res = regenerate(model, tok, paragraphs, regen, seed=0)
    rates["regenerate"] = res.new_tokens / res.seconds

    score(model, tok, questions[:64])
    rates["score"] = len(questions) / _timed(lambda: score(model, tok, questions, batch_size=64))
    during = threads.busy_between(before, threads.snapshot(), threads.usable_cores())
    return {"setting": setting, "how": how, "torch_threads": torch.get_num_threads(), "rates": rates, "during": during}


# ----------------------------------------------------------------------------------------------- driver

def other_load(seconds: float = 0.3) -> float:
    """Cores busy with other processes over `seconds` (this driver sleeps meanwhile)."""
    from fortifai_bench import threads

    a = threads.snapshot()
    time.sleep(seconds)
    b = threads.snapshot()
    return threads.busy_between(a, b, threads.usable_cores()) if a and b else float("nan")


def run_worker(setting: str, beside: bool, epochs: int) -> dict:
    drop = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TOKENIZERS_PARALLELISM"] = "false"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside else None
    try:
        load = other_load()
        out = subprocess.run([sys.executable, __file__, "--worker", setting, "--epochs", str(epochs)],
                             env=env, capture_output=True, text=True, check=False)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if out.returncode:
        raise SystemExit(f"worker {setting} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(condition="beside" if beside else "alone", load=load, loadavg=os.getloadavg()[0])
    return row


def report(rows: list[dict], settings: list[str]) -> None:
    def med(setting, cond, w):
        got = [r["rates"][w] for r in rows if r["setting"] == setting and r["condition"] == cond]
        return statistics.median(got) if got else float("nan")

    for cond in ("alone", "beside"):
        loads = [f"{r['load']:.2f}/{r['during']:.2f}" for r in rows if r["condition"] == cond]
        print(f"# {cond}: cores busy with other processes before/during each worker: {', '.join(loads)}")
    print("| setting | threads alone / beside | " + " | ".join(
        f"{w} alone | {w} beside | slowdown" for w in WORKLOADS) + " |")
    print("| --- | --- | " + " | ".join("---: | ---: | ---:" for _ in WORKLOADS) + " |")
    for s in settings:
        th = [sorted({r["torch_threads"] for r in rows if r["setting"] == s and r["condition"] == c}) for c in
              ("alone", "beside")]
        cells = []
        for w in WORKLOADS:
            a, b = med(s, "alone", w), med(s, "beside", w)
            cells.append(f"{a:,.0f} | {b:,.0f} | {a / b:.2f}x")
        print(f"| {s} | {','.join(map(str, th[0]))} / {','.join(map(str, th[1]))} | " + " | ".join(cells) + " |")
    if "policy" not in settings:
        return
    fixed = [s for s in settings if s != "policy"]
    print()
    for w in WORKLOADS:
        best_alone = max(fixed, key=lambda s: med(s, "alone", w))
        best_beside = max(fixed, key=lambda s: med(s, "beside", w))
        pa, pb = med("policy", "alone", w), med("policy", "beside", w)
        print(f"{w:10s}: policy alone = {pa / med(best_alone, 'alone', w):.3f} of the best fixed ({best_alone}) "
              f"[target >= 0.9]; beside = {pb / med(best_beside, 'beside', w):.3f} of the best fixed "
              f"({best_beside}); slowdown beside/alone {pa / pb:.2f}x [target <= 1.3]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settings", default="1,2,2-passive,policy")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs over the facts corpus per worker")
    ap.add_argument("--conditions", default="alone,beside", help="alone, beside or both")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write every row here")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs)))
        return
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for r in range(args.rounds):
        for i, s in enumerate(settings):
            for beside in ((False, True) if (r + i) % 2 == 0 else (True, False)):
                if ("beside" if beside else "alone") not in args.conditions:
                    continue
                row = run_worker(s, beside, args.epochs)
                rows.append(row)
                print(f"round {r} {s:10s} {row['condition']:6s} load {row['load']:.2f} before, {row['during']:.2f} during "
                      f"(load average {row['loadavg']:.2f}) "
                      f"threads {row['torch_threads']} "
                      + " ".join(f"{w} {row['rates'][w]:,.0f}" for w in WORKLOADS) + f"  [{row['how']}]",
                      file=sys.stderr, flush=True)
    print(f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report(rows, settings)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
