"""The default CPU thread policy: one torch thread per core that other processes leave idle.

Why: torch starts one OpenMP thread per core, and OpenMP's worker threads wait for each other at every
parallel region. Beside another CPU-bound process one of them is always descheduled, the others spin
waiting for it, and a tiny-model training step on a 2-core machine ran 2.8x slower than alone, while one
thread ran 1.17x slower (issue 14). So every command, unless told otherwise, counts the cores that other
processes keep busy and uses the rest:

    threads = max(1, usable cores - round(cores busy with other processes))

* usable cores: this process's CPU affinity, capped by a cgroup v2 CPU quota (containers, CI runners);
* busy cores: from two snapshots of ``/proc/stat`` (every core's busy and idle time) minus this process's
  own CPU time over the same interval (``getrusage``), so our own start-up work is not counted against
  us; without ``/proc`` (macOS), the 1-minute load average stands in;
* precedence: an explicit ``--threads N`` wins, then the user's ``OMP_NUM_THREADS``, then the policy.

`start()` takes the first snapshot (the CLI calls it first thing); `apply_default()` takes the second one
at least `WINDOW` seconds later (the CLI's own start-up usually fills the window, so it costs no wait) and
sets the count; `refresh()` re-decides from the load since the last snapshot, for long runs whose
neighbours come and go (cheap: one file read; a no-op unless the policy set the count, and at most every
`REFRESH_EVERY` seconds). `kr.scoring.score` calls it, so a collapse run re-decides once per stage.

No torch import here: when torch is not loaded yet the count goes into ``OMP_NUM_THREADS`` (read by
torch, MKL and OpenBLAS when they load), marked by `MARKER` so that our own child processes know it came
from the policy, not from the user, and decide again for themselves.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fortifai_bench.errors import FortifaiError

WINDOW = 0.2  # seconds between the two /proc/stat snapshots: long enough to see a busy process reliably
REFRESH_EVERY = 5.0  # refresh() re-decides at most this often (seconds): a decision needs a window of load
ENV = "OMP_NUM_THREADS"
MARKER = "FORTIFAI_BENCH_POLICY_THREADS"  # OMP_NUM_THREADS was set by this policy (value: the same count)
THREADS_HELP = ("torch CPU threads (default: one per core that other processes leave idle, decided at start-up "
                "and again during long runs; 1 is the reproducible choice for published numbers)")
POLICY_HELP = ("CPU threads: unless --threads or OMP_NUM_THREADS is given, every command uses one torch thread "
               "per core left idle by other processes (cores minus the busy ones, counted from /proc/stat over "
               f"{WINDOW:g} s at start-up, at least 1).")


@dataclass(frozen=True)
class Snapshot:
    """Busy and total CPU time (clock ticks) of the usable cores, this process's CPU seconds, and when."""

    busy: int
    total: int
    own: float
    wall: float


@dataclass(frozen=True)
class Decision:
    threads: int
    cores: int
    busy: float  # cores kept busy by other processes over the window (nan: not measured)
    source: str  # "policy", "--threads" or "OMP_NUM_THREADS"

    def __str__(self) -> str:
        load = "" if math.isnan(self.busy) else f", {self.busy:.2f} of them busy with other processes"
        return f"{self.threads} torch thread(s) ({self.source}; {self.cores} usable core(s){load})"


def choose(cores: int, busy: float) -> int:
    """The policy itself: the cores that other processes leave idle, at least one.

    A core counts as taken when other processes use more than half of it: with one process at 40% of a
    core the remaining 60% is still worth a thread; at 60% the thread would mostly wait for it.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    taken = math.floor(max(0.0, busy) + 0.5)
    return max(1, min(cores, cores - taken))


def _affinity() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _cgroup_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> float | None:
    """cgroup v2 CPU quota in cores ("max 100000": none), or None when there is none or no cgroup v2."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped (rounded up) by a cgroup CPU quota."""
    cores = len(_affinity())
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def parse_stat(text: str, cpus: list[int] | None = None) -> tuple[int, int]:
    """(busy, total) ticks summed over the `cpus` lines of a /proc/stat text (None: the all-cpu line).

    Columns: user nice system idle iowait irq softirq steal [guest guest_nice]. Idle and iowait are
    idle; guest time is already inside user, so it is not added again; steal (the hypervisor ran
    someone else) is busy: that core was not ours to use.
    """
    wanted = {f"cpu{c}" for c in cpus} if cpus is not None else {"cpu"}
    busy = total = 0
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] not in wanted:
            continue
        ticks = [int(x) for x in fields[1:9]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy += sum(ticks) - idle
        total += sum(ticks)
    if total == 0:
        raise ValueError("no matching cpu lines in /proc/stat")
    return busy, total


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process; not its children
    return usage.ru_utime + usage.ru_stime


def snapshot(stat: Path = Path("/proc/stat")) -> Snapshot | None:
    """A /proc/stat snapshot of the usable cores, or None where there is no /proc/stat."""
    try:
        text = stat.read_text()
        busy, total = parse_stat(text, _affinity())
    except (OSError, ValueError):
        return None
    return Snapshot(busy, total, _own_cpu(), time.monotonic())


def busy_between(a: Snapshot, b: Snapshot, cores: int) -> float:
    """Cores kept busy by other processes between two snapshots (this process's own CPU time removed)."""
    dt = b.wall - a.wall
    if dt <= 0 or b.total <= a.total:
        return 0.0
    all_busy = cores * (b.busy - a.busy) / (b.total - a.total)
    return max(0.0, all_busy - (b.own - a.own) / dt)


def explicit_env() -> int | None:
    """The user's OMP_NUM_THREADS (a positive integer), or None when unset or set by this policy."""
    value = os.environ.get(ENV, "").strip()
    if not value or os.environ.get(MARKER) == value:
        return None
    try:
        n = int(value.split(",")[0])  # OpenMP allows a nesting list "4,2": the first level is ours
    except ValueError:
        raise FortifaiError(f"{ENV}={value!r} is not a positive integer") from None
    if n < 1:
        raise FortifaiError(f"{ENV}={value!r} is not a positive integer")
    return n


class _State:
    """The policy's memory between calls (one per process)."""

    start: Snapshot | None = None
    active = False  # the policy (not the user) set the thread count: refresh() may change it
    decision: Decision | None = None


def start() -> None:
    """The first snapshot; call it as early as possible so the start-up work fills the window."""
    _State.start = snapshot()


def measure(window: float = WINDOW) -> float:
    """Cores busy with other processes since `start()` (waiting until `window` seconds have passed)."""
    first = _State.start or snapshot()
    if first is None:  # no /proc: the load average counts runnable processes, ours included (~idle now)
        return max(0.0, os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    left = window - (time.monotonic() - first.wall)
    if left > 0:
        time.sleep(left)
    second = snapshot()
    _State.start = second
    return busy_between(first, second, usable_cores()) if second else 0.0


def set_threads(n: int) -> None:
    """Use `n` threads: torch's count when torch is loaded, else OMP_NUM_THREADS for when it loads."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ[ENV] = str(n)
        os.environ[MARKER] = str(n)


def check(explicit: int | None) -> None:
    """Refuse a `--threads` count below one (None: not given)."""
    if explicit is not None and explicit < 1:
        raise FortifaiError(f"--threads must be >= 1, got {explicit}")


def apply_default(explicit: int | None = None) -> Decision:
    """Decide and set the thread count once, at start-up: `explicit` (--threads), else the user's
    OMP_NUM_THREADS, else the policy. Returns the decision (also kept in `current()`)."""
    cores = usable_cores()
    check(explicit)
    if explicit is not None:
        decision = Decision(explicit, cores, math.nan, "--threads")
        set_threads(explicit)
    elif (env := explicit_env()) is not None:
        decision = Decision(env, cores, math.nan, ENV)  # torch and MKL read it themselves
    else:
        busy = measure()
        decision = Decision(choose(cores, busy), cores, busy, "policy")
        set_threads(decision.threads)
    _State.active = decision.source == "policy"
    _State.decision = decision
    return decision


def refresh(min_interval: float = REFRESH_EVERY) -> Decision | None:
    """Re-decide from the load since the last snapshot (an epoch, a stage), when the policy set the count
    and at least `min_interval` seconds have passed; returns the new decision or None (nothing done)."""
    if not _State.active or _State.start is None:
        return None
    if time.monotonic() - _State.start.wall < min_interval:
        return None
    cores = usable_cores()
    second = snapshot()
    if second is None:
        return None
    busy = busy_between(_State.start, second, cores)
    _State.start = second
    decision = Decision(choose(cores, busy), cores, busy, "policy")
    if decision.threads != (_State.decision.threads if _State.decision else None):
        set_threads(decision.threads)
    _State.decision = decision
    return decision


@contextlib.contextmanager
def pinned(n: int):
    """Exactly `n` threads inside the block, whatever the load or the policy (refresh() is off), then
    back as before. For work whose numbers must not depend on the machine: float sums in a different
    order give different weights, so the tiny base M_0, built once and cached, is pretrained here with 1."""
    was_active, was = _State.active, (sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None)
    _State.active = False
    set_threads(n)
    try:
        yield
    finally:
        _State.active = was_active
        if was is not None:
            set_threads(was)


def current() -> Decision | None:
    """The last decision made in this process (None before `apply_default`)."""
    return _State.decision
