"""Make lm-eval find our tasks (kr_facts, kr_wikitext, ...) with no `--include_path`.

lm-eval 0.4.x has no plugin hook for task folders (the `lm_eval.tasks` entry point we declare in
setup.cfg is what lm-eval PR #4015 proposes; no released lm-eval reads it yet). So the wheel installs
`fortifai_bench-lm_eval.pth` into site-packages (see setup.py); Python's `site` module runs its one
`import` line at start-up (documented in the `site` module), which calls `install()` here.

`install()` only registers a tiny import hook: nothing of lm-eval, torch or our package is imported.
When (and only when) some program imports `lm_eval.tasks`, the hook wraps `TaskManager.__init__` so
that our tasks folder is added to `include_path` ahead of the user's own paths, so a user's
`--include_path` task of the same name still wins, as with built-in tasks. It relies only on what is
public and stable across lm-eval 0.4.x: `lm_eval.tasks.TaskManager(include_path=..., include_defaults=...)`.

It steps aside when:
- `FORTIFAI_LM_EVAL_AUTOREGISTER=0` is set;
- the caller passed `include_defaults=False` (they asked for their own tasks only);
- our folder is already in `include_path` (e.g. `--include_path "$(fortifai-bench tasks-path)"`);
- lm-eval's task manager reads task entry points itself (a release with PR #4015): our declared
  entry point then does the job, and adding the folder twice would only log override warnings.
"""

from __future__ import annotations

import os
import sys

TARGET = "lm_eval.tasks"
_PATCHED = "_fortifai_bench_include"


def _ours():
    from fortifai_bench.resources import tasks_dir

    return tasks_dir()


def _same(a, b) -> bool:
    from pathlib import Path

    try:
        return Path(a).expanduser().resolve() == Path(b).resolve()
    except (OSError, TypeError, ValueError):
        return False


def with_our_tasks(include_path):
    """`include_path` with our tasks folder first (unless it is already there)."""
    ours = _ours()
    if include_path is None:
        paths = []
    elif isinstance(include_path, (list, tuple)):
        paths = list(include_path)
    else:
        paths = [include_path]
    if any(_same(p, ours) for p in paths):
        return include_path
    return [str(ours)] + paths


def _reads_entry_points(cls) -> bool:
    import inspect

    try:
        source = inspect.getsource(sys.modules[cls.__module__])
    except (OSError, TypeError, KeyError):
        return False
    return "entry_points" in source


def patch(module) -> bool:
    """Wrap `module.TaskManager.__init__`; returns whether the wrapper is in place."""
    import functools
    import inspect

    cls = getattr(module, "TaskManager", None)
    if cls is None or getattr(cls.__init__, _PATCHED, False):
        return cls is not None
    if _reads_entry_points(cls):
        return False
    original = cls.__init__
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        return False

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # let lm-eval report its own argument error
            return original(self, *args, **kwargs)
        if bound.arguments.get("include_defaults", True):
            bound.arguments["include_path"] = with_our_tasks(bound.arguments.get("include_path"))
        return original(*bound.args, **bound.kwargs)

    setattr(__init__, _PATCHED, True)
    cls.__init__ = __init__
    return True


class _Finder:
    """A meta-path finder that lets the normal machinery load `lm_eval.tasks`, then patches it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        from importlib.machinery import PathFinder

        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # one shot
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            try:
                patch(module)
            except Exception as exc:  # never break lm-eval itself
                print(f"fortifai-bench: could not register its lm-eval tasks ({exc}); "
                      f"use --include_path \"$(fortifai-bench tasks-path)\"", file=sys.stderr)

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Called from the .pth file at interpreter start-up; cheap and silent."""
    if os.environ.get("FORTIFAI_LM_EVAL_AUTOREGISTER", "1") == "0":
        return
    if TARGET in sys.modules:
        patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
