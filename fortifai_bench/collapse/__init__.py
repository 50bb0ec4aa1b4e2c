"""The collapse task: Algorithm 1 of the ForTIFAI paper end to end.

`load_task` reads a task YAML into a validated `CollapseTask`; `run_collapse` runs one seed into a
run directory (resumable); `run_experiment` runs several losses and seeds (with a baseline and the
clean control) and summarizes them.
Names are loaded lazily so that `import fortifai_bench.collapse` stays cheap.
"""

import importlib

_EXPORTS = {
    "CollapseTask": "fortifai_bench.collapse.config",
    "load_task": "fortifai_bench.collapse.config",
    "task_from_dict": "fortifai_bench.collapse.config",
    "regenerate": "fortifai_bench.collapse.regenerate",
    "StagePlan": "fortifai_bench.collapse.plan",
    "run_collapse": "fortifai_bench.collapse.run",
    "run_experiment": "fortifai_bench.collapse.experiment",
    "base_model": "fortifai_bench.collapse.base",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fortifai_bench.collapse' has no attribute {name!r}")


__all__ = list(_EXPORTS)
