"""Wall time of the embedded default (`fortifai-bench`: ce, tce:0.9 and the clean control, seed 0) alone and
beside one busy CPU process, for three ways of scheduling its three runs (issue 14).

    python benchmarks/bench_default.py [--runs side-by-side:alone,side-by-side:beside,...] [--out DIR]

- side-by-side: what `fortifai-bench` does, the three runs at once, one process and one thread each (`--jobs 3`);
- sequential-2: one run after another with 2 threads (`--jobs 1 --threads 2`: the best fixed count alone on 2 cores);
- sequential-policy: one run after another with the default thread policy (`--jobs 1`).
The default runs leave out sequential-2 beside a busy process: two spinning OpenMP threads beside it are the
pathological case of "Threads and floors" (many times slower), not a schedule anyone should pick.
"beside" starts `python3 -c "while True: pass"` just before the command and stops it after. The tiny base
model is pretrained (once, cached) before anything is timed. Each (schedule, condition) is one fresh command
in an empty folder; the table gives its wall time, the ratio beside / alone, and CE's KR-split-0 per stage
(side by side and the sequential-policy runs beside a busy process use one thread, so they give the numbers
of the seeded board; two threads round differently).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCHEDULES = {"side-by-side": [], "sequential-2": ["--jobs", "1", "--threads", "2"],
             "sequential-policy": ["--jobs", "1"]}


def run_default(flags: list[str], where: Path, beside: bool, *, argv: list[str] | None = None,
                env: dict | None = None) -> tuple[float, list[float], float]:
    """Wall seconds of one `fortifai-bench collapse` (the embedded default; `argv`: another command line)
    in the new folder `where`, CE's KR-split-0 per stage, and the CPU seconds of the command's processes."""
    where.mkdir(parents=True)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if beside else None
    try:
        if busy:
            time.sleep(1.0)  # let it spin before the policy takes its look
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "fortifai_bench",
                                 *(["collapse", "--quiet", *flags] if argv is None else argv)],
                                cwd=where, env=env, stdout=subprocess.DEVNULL)
        cpu = tree_cpu_seconds(proc)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
    finally:
        if busy:
            busy.kill()
            busy.wait()
    (ce,) = where.glob("runs/collapse_facts-ce-s0-*/results.json")
    return wall, [round(s["score"], 3) for s in json.loads(ce.read_text())["stages"]], cpu


def tree_cpu_seconds(proc: subprocess.Popen, every: float = 0.1) -> float:
    """Wait for `proc`; the CPU seconds (user + system) of it and every process under it, summed.

    Read from /proc every `every` seconds (each process's own time, last seen), because the children's
    rusage of the command misses processes it does not reap itself (a forkserver's workers). A process's
    last `every` seconds before it exits are not seen: an undercount of at most `every` per process."""
    tick = os.sysconf("SC_CLK_TCK")
    seen: dict[int, float] = {}
    while proc.poll() is None:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        tree = {proc.pid}
        grew = True
        while grew:
            new = {pid for pid, (ppid, _) in parents.items() if ppid in tree} - tree
            tree |= new
            grew = bool(new)
        for pid in tree & parents.keys():
            seen[pid] = max(seen.get(pid, 0.0), parents[pid][1])
        time.sleep(every)
    return sum(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="side-by-side:alone,side-by-side:beside,sequential-2:alone,"
                                      "sequential-policy:alone,sequential-policy:beside",
                    help="schedule:condition pairs (schedules: " + ", ".join(SCHEDULES) + "; alone or beside)")
    ap.add_argument("--out", default="/tmp/bench-default")
    args = ap.parse_args()
    from fortifai_bench.collapse.base import base_model
    from fortifai_bench.collapse.config import load_task

    base_model(load_task("collapse_facts"), progress=False)  # cached once, before any timing
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    rows = {}
    pairs = [tuple(pair.split(":")) for pair in args.runs.split(",")]
    for schedule, condition in pairs:
        load = os.getloadavg()[0]
        wall, curve, cpu = run_default(SCHEDULES[schedule], out / f"{schedule}-{condition}", condition == "beside")
        rows[(schedule, condition)] = (wall, curve)
        print(f"{time.strftime('%H:%M')} {schedule:18s} {condition:7s} {wall:7.1f} s  {cpu:6.0f} CPU s  (load "
              f"average before {load:.2f})  ce KR-split-0 {' '.join(map(str, curve))}", flush=True)
    print("\n| schedule | alone | beside one busy process | beside / alone | ce KR-split-0 (alone) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for schedule in dict.fromkeys(s for s, _ in pairs):
        alone, beside = rows.get((schedule, "alone")), rows.get((schedule, "beside"))
        ratio = f"{beside[0] / alone[0]:.2f}x" if alone and beside else ""
        fmt = lambda r: f"{r[0]:.0f} s" if r else ""  # noqa: E731
        curve = " ".join(map(str, (alone or beside)[1]))
        print(f"| {schedule} | {fmt(alone)} | {fmt(beside)} | {ratio} | {curve} |")


if __name__ == "__main__":
    main()
