"""How much fine-tuning memorises? Stage 0 of a SmolLM2 task at several constant learning rates (issue 27's
heavy setting, calibrated on CE alone).

The heavy setting is the memorising end of the fine-tuning axis (BENCHMARKS.md, "The heavy board's design"):
its target is a mean p of at least 0.9 on the trained text in stage 0's last epoch. v1 gets there with four
times the light setting's steps at its rate (12 epochs at 1e-4), which makes a heavy run about three hours in
one of two lanes here. This asks whether a higher constant rate gets there with the light setting's steps.

For each rate it runs CE seed 0 of the task (`fortifai-bench collapse`, its KR set and everything else as
shipped; `train.lr` and `train.epochs` overridden) in a process of its own, until stage 0 is finished
(`stage_0/metrics.json`), then stops it with SIGTERM. The run folder is an ordinary resumable run: if the rate is
chosen, `fortifai-bench collapse --resume` carries it on as the heavy calibration run. A rate whose stage 0 has
finished before is read back, not run again. Prints per rate: mean p of each epoch of training (train mode,
`train.json` history), then of M_0: KR-split-0, perplexity on unseen real text, mean confidence on the real
text it trained on and on its own rewrite.

    FORTIFAI_DATA_DIR=../shared/data python benchmarks/heavy_stage0.py --lrs 3e-4,1e-3 --epochs 3 --out runs/heavy0
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def stage0(out: Path) -> Path | None:
    """The run folder under `out` whose stage 0 is finished, if any."""
    done = sorted(out.glob("*/stage_0/metrics.json"))
    return done[-1].parent.parent if done else None


def run_until_stage0(task: str, lr: str, epochs: int, out: Path, threads: int) -> Path:
    """CE seed 0 of `task` at this rate, stopped once stage 0 is finished; its run folder."""
    if (done := stage0(out)) is not None:
        return done
    existing = sorted(out.glob("*/config.yaml"))
    where = ["--resume", str(existing[-1].parent)] if existing else ["--out", str(out)]
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--task", task, "--loss", "ce", "--seeds", "0",
           "--set", f"train.lr={lr}", "--set", f"train.epochs={epochs}", "--threads", str(threads), "-q", *where]
    proc = subprocess.Popen(cmd)
    try:
        while proc.poll() is None and stage0(out) is None:
            time.sleep(10)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the run stops between phases' writes and stays resumable
            proc.wait()
    if (done := stage0(out)) is None:
        raise SystemExit(f"lr {lr}: the run stopped (exit {proc.returncode}) before stage 0 finished")
    return done


def row(lr: str, run: Path) -> str:
    train = json.loads((run / "stage_0" / "train.json").read_text())
    m = json.loads((run / "stage_0" / "metrics.json").read_text())
    conf = m["confidence"]
    per_epoch = " ".join(f"{h['mean_p_correct']:.3f}" for h in train["history"])
    return (f"| {lr} | {len(train['history'])} | {per_epoch} | {m['score']:.3f} | {m['perplexity']:.1f} | "
            f"{conf['trained_real']['mean']:.3f} | {conf['own_generated']['mean']:.3f} | {train['seconds']:.0f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="collapse_wikitext_smol")
    p.add_argument("--lrs", default="3e-4,1e-3", help="constant learning rates, comma-separated")
    p.add_argument("--epochs", type=int, default=3, help="train.epochs (the steps of this many epochs per stage)")
    p.add_argument("--out", default="runs/heavy0", help="one folder per rate under it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", nargs="*", default=[], metavar="LR=RUN",
                   help="finished runs to show beside them, e.g. 1e-4=runs/regimes_v3/wikitext_smol/ce-s0/<run>")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = [row(lr, Path(run)) for lr, run in (ref.split("=", 1) for ref in args.reference)]
    for lr in args.lrs.split(","):
        run = run_until_stage0(args.task, lr, args.epochs, Path(args.out) / f"lr{lr}-e{args.epochs}", args.threads)
        rows.append(row(lr, run))
    print(f"{args.task}, CE seed 0, stage 0 (M_0 fine-tuned on split 0 from the base)")
    print("| lr | epochs | mean p on the trained rows, per epoch | KR-split-0 | ppl (unseen real) | "
          "conf: trained real | conf: own rewrite | train s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
