"""The default thread policy (fortifai_bench.threads) and its use by every `fortifai-bench` command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch

from fortifai_bench import threads
from fortifai_bench.cli import main
from fortifai_bench.errors import FortifaiError

STAT = """cpu  1000 10 200 5000 50 5 5 30 40 0
cpu0 600 5 100 2000 25 3 2 15 40 0
cpu1 400 5 100 3000 25 2 3 15 0 0
intr 12345
"""


@pytest.fixture
def busy_process():
    """One CPU-bound process beside the test (pure Python loop, one thread), running for the test's length."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.3)  # let it start spinning
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def policy_state():
    """The policy's per-process state and torch's thread count are restored after the test."""
    saved = (threads._State.start, threads._State.active, threads._State.decision, torch.get_num_threads())
    yield
    threads._State.start, threads._State.active, threads._State.decision, n = saved
    torch.set_num_threads(n)


@pytest.mark.parametrize("cores, busy, expected", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 3.5, 1),
    (16, 0.0, 16), (16, 3.2, 13), (16, 15.9, 1), (1, 0.0, 1), (4, -0.3, 4),
])
def test_choose_uses_the_cores_left_idle(cores, busy, expected):
    assert threads.choose(cores, busy) == expected


def test_parse_stat_counts_busy_and_idle_ticks():
    # all-cpu line: busy = user+nice+system+irq+softirq+steal = 1000+10+200+5+5+30; guest (40) is inside user
    assert threads.parse_stat(STAT) == (1250, 1250 + 5000 + 50)
    assert threads.parse_stat(STAT, [1]) == (400 + 5 + 100 + 2 + 3 + 15, 525 + 3000 + 25)
    assert threads.parse_stat(STAT, [0, 1]) == (1250, 6300)
    with pytest.raises(ValueError):
        threads.parse_stat(STAT, [7])


def test_busy_between_removes_this_process_own_time():
    a = threads.Snapshot(busy=1000, total=5000, own=10.0, wall=100.0)
    # 2 cores for 1 s = 200 ticks; 150 busy = 1.5 cores, of which 0.5 s was this process
    b = threads.Snapshot(busy=1150, total=5200, own=10.5, wall=101.0)
    assert threads.busy_between(a, b, 2) == pytest.approx(1.0)
    assert threads.busy_between(a, a, 2) == 0.0
    # our own work is never more than "everything": the estimate does not go negative
    c = threads.Snapshot(busy=1050, total=5200, own=11.5, wall=101.0)
    assert threads.busy_between(a, c, 2) == 0.0


def test_real_proc_stat_parses_for_the_usable_cores():
    snap = threads.snapshot()
    if snap is None:
        pytest.skip("no /proc/stat on this system")
    assert 0 < snap.busy <= snap.total
    assert 1 <= threads.usable_cores() <= (os.cpu_count() or 1)


def test_explicit_env(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv(threads.MARKER, raising=False)
    assert threads.explicit_env() is None
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.explicit_env() == 3
    monkeypatch.setenv(threads.ENV, "4,2")
    assert threads.explicit_env() == 4
    monkeypatch.setenv(threads.ENV, "2")
    monkeypatch.setenv(threads.MARKER, "2")  # set by the policy of a parent process: decide again
    assert threads.explicit_env() is None
    for bad in ("abc", "0", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(FortifaiError, match=threads.ENV):
            threads.explicit_env()


def test_a_busy_process_beside_is_seen_and_leaves_its_core(busy_process, monkeypatch, policy_state):
    monkeypatch.delenv(threads.ENV, raising=False)
    threads.start()
    busy = threads.measure()
    assert busy >= 0.7  # the loop alone keeps most of a core busy (more if the machine is shared)
    decision = threads.apply_default()
    assert decision.source == "policy"
    assert decision.threads == threads.choose(threads.usable_cores(), decision.busy)
    assert decision.threads <= max(1, threads.usable_cores() - 1)
    assert torch.get_num_threads() == decision.threads  # torch is loaded here: set directly


def test_own_work_is_not_counted_as_another_process(policy_state):
    if threads.snapshot() is None:
        pytest.skip("no /proc/stat on this system")
    threads.start()
    idle = threads.measure(0.3)  # the background while this process sleeps
    threads.start()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # this process keeps one core busy itself
        pass
    spinning = threads.measure(0.3)
    assert spinning <= idle + 0.5


def test_explicit_count_and_refresh(monkeypatch, policy_state):
    monkeypatch.delenv(threads.ENV, raising=False)
    decision = threads.apply_default(3)
    assert (decision.threads, decision.source, torch.get_num_threads()) == (3, "--threads", 3)
    assert threads.refresh(min_interval=0) is None  # the user's count is never changed
    with pytest.raises(FortifaiError, match="--threads must be >= 1"):
        threads.apply_default(0)
    threads.start()
    threads.apply_default()
    assert threads.refresh(min_interval=3600) is None  # too soon
    again = threads.refresh(min_interval=0)
    assert again is not None and again.source == "policy"
    assert torch.get_num_threads() == again.threads == threads.current().threads


def test_cli_threads_flag(capsys, policy_state):
    assert main(["--threads", "0", "tasks-path"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fortifai-bench: error: --threads must be >= 1, got 0"]
    assert main(["--threads", "3", "tasks-path"]) == 0
    assert torch.get_num_threads() == 3
    assert threads.current().source == "--threads"


def test_help_states_the_policy(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert " ".join(threads.POLICY_HELP.split()) in " ".join(capsys.readouterr().out.split())


_PROBE = ("import json, os; from fortifai_bench.cli import main; rc = main(['tasks-path']); import torch; "
          "print(json.dumps([rc, torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'), "
          "os.environ.get('FORTIFAI_BENCH_POLICY_THREADS')]))")


def _probe(env_extra: dict) -> list:
    env = {k: v for k, v in os.environ.items() if k not in (threads.ENV, threads.MARKER)}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_applies_the_policy_before_torch_loads(busy_process):
    rc, n, env, marker = _probe({})
    assert rc == 0
    assert n <= max(1, threads.usable_cores() - 1)  # torch's own default would be every core
    assert env == marker == str(n)  # through OMP_NUM_THREADS, marked as the policy's


def test_cli_respects_the_users_omp_num_threads(busy_process):
    cores = threads.usable_cores()
    if cores < 2:
        pytest.skip("one core: the policy and the user agree")
    rc, n, env, marker = _probe({threads.ENV: str(cores)})
    assert (rc, n, env, marker) == (0, cores, str(cores), None)


def test_decision_reads_well():
    text = str(threads.Decision(1, 2, 1.04, "policy"))
    assert text == "1 torch thread(s) (policy; 2 usable core(s), 1.04 of them busy with other processes)"
    assert "busy" not in str(threads.Decision(3, 2, math.nan, "--threads"))


def test_torchrun_entry_points_apply_the_same_policy(capsys, policy_state):
    """`python -m fortifai_bench.collapse` / `.train` (what torchrun starts) decide like `fortifai-bench`."""
    from fortifai_bench.collapse.__main__ import main as collapse_main
    from fortifai_bench.cli.train import main as train_main

    assert collapse_main(["--threads", "3", "--plan"]) == 0
    assert torch.get_num_threads() == 3 and threads.current().source == "--threads"
    assert train_main(["--threads", "0", "--corpus", "facts"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "fortifai-bench: error: --threads must be >= 1, got 0"
    with pytest.raises(SystemExit):
        train_main(["--help"])
    assert " ".join(threads.THREADS_HELP.split()) in " ".join(capsys.readouterr().out.split())
