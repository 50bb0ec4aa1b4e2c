"""Killing a collapse run at a chosen point, for the resume tests (one process or torchrun's several)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable


def kill_inside_stage_1(proc: subprocess.Popen, out: Path, kill: Callable[[], None],
                        timeout: float = 300) -> Path | None:
    """Watch the run that `proc` writes under `out`; call `kill` once its stage 1 has trained but not yet
    finished (model saved, no metrics.json) and return that run's directory. None: it never got there."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        runs = list(out.glob("collapse_facts-*")) if out.exists() else []
        if runs and (runs[0] / "stage_1" / "model").exists():
            if not (runs[0] / "stage_1" / "metrics.json").exists():
                kill()
                return runs[0]
            return None
        time.sleep(0.005)
    return None
