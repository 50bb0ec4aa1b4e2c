"""The collapse protocol in 1 process and in 2 (torchrun, gloo, CPU): wall time and each process's work.

    python benchmarks/bench_distributed.py [--stages 3] [--paragraphs 30] [--epochs 5] [--rounds 1]

Runs `fortifai-bench collapse` on a small version of the embedded default (`collapse_facts` with fewer
stages, epochs and pretraining paragraphs, dropout 0 so that both runs compute the same thing), once with
one process and once with `--nproc 2`, each with one torch thread per process, after building the tiny
base once (it is cached and shared by both). Prints the wall time of each command, the per-stage phase
times from each run's metrics.json, the work each process did (paragraphs regenerated, new tokens, KR
questions, scored sequences) and whether the two runs' KR-split-0 agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def overrides(args) -> list[str]:
    return [f"stages={args.stages}", f"paragraphs_per_split={args.paragraphs}", f"train.epochs={args.epochs}",
            "model.pretrain.paragraphs=200", "model.pretrain.train.epochs=5", "model.tiny.dropout=0"]


def command(out: Path, args, nproc: int) -> list[str]:
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--quiet", "--loss", "ce", "--no-control",
           "--threads", "1", "--out", str(out)]
    for item in overrides(args):
        cmd += ["--set", item]
    return cmd + (["--nproc", str(nproc)] if nproc > 1 else [])


def run(out: Path, args, nproc: int) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run(command(out, args, nproc), capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"nproc {nproc} failed:\n{proc.stderr[-3000:]}")
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return wall, json.loads((run_dir / "results.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", type=int, default=3)
    p.add_argument("--paragraphs", type=int, default=30)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1, help="alternate 1 and 2 processes this many times")
    args = p.parse_args()

    os.environ.setdefault("FORTIFAI_CACHE", tempfile.mkdtemp(prefix="bench-distributed-cache-"))
    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.collapse.config import load_task

    t0 = time.perf_counter()
    base_model(load_task("collapse_facts", overrides(args)), progress=False)  # cached: not part of either timing
    print(f"tiny base built in {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()[0]:.1f}")
    walls: dict[int, list[float]] = {1: [], 2: []}
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for nproc in (1, 2):
                out = Path(tmp) / f"n{nproc}-r{r}"
                out.mkdir()
                wall, results[nproc] = run(out, args, nproc)
                walls[nproc].append(wall)
                print(f"round {r}: {nproc} process{'es' if nproc > 1 else ''}: {wall:.1f} s "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    report(walls, results)


def report(walls: dict[int, list[float]], results: dict[int, dict]) -> None:
    print("\n| processes | wall (s) | " + " | ".join(f"stage {s['stage']} train / regen / eval (s)"
                                               for s in results[1]["stages"]) + " |")
    print("| ---: | ---: |" + " --- |" * len(results[1]["stages"]))
    for n in (1, 2):
        cells = [f"{s['seconds']['train']:.1f} / {s['seconds']['regenerate']:.2f} / {s['seconds']['evaluate']:.1f}"
                 for s in results[n]["stages"]]
        print(f"| {n} | {', '.join(f'{w:.1f}' for w in walls[n])} | " + " | ".join(cells) + " |")
    print("\nwork per process (2 processes), per stage: regenerated paragraphs and new tokens (all splits), "
          "KR questions, scored sequences")
    for s in results[2]["stages"]:
        p = s["processes"]
        paragraphs = [sum(w["paragraphs"][r] for w in p["regenerate"].values()) for r in range(p["world"])]
        tokens = [sum(w["new_tokens"][r] for w in p["regenerate"].values()) for r in range(p["world"])]
        print(f"  stage {s['stage']}: paragraphs {paragraphs}, new tokens {tokens}, KR questions "
              f"{p['kr_questions']}, sequences {p['scored_sequences']}")
    one = [s["score"] for s in results[1]["stages"]]
    two = [s["score"] for s in results[2]["stages"]]
    print(f"\nKR-split-0, 1 process: {[round(x, 4) for x in one]}; 2 processes: {[round(x, 4) for x in two]}; "
          f"max difference {max(abs(a - b) for a, b in zip(one, two)):.2e}; time to failure "
          f"{results[1]['time_to_failure']} vs {results[2]['time_to_failure']}")


if __name__ == "__main__":
    main()
