"""Make lm-eval find our tasks (kr_facts, kr_wikitext, kr_file, ...) with no `--include_path`.

lm-eval 0.4.x has no plugin hook for task folders (the `lm_eval.tasks` entry point we declare in
setup.cfg is what lm-eval PR #4015 proposes; no released lm-eval reads it yet). So every install,
regular or editable (`pip install -e .`), puts `fortifai_bench-lm_eval.pth` into site-packages (see
setup.py); Python's `site` module runs its one `import` line at start-up (documented in the `site`
module), which calls `install()` here.

`install()` only registers a tiny import hook: nothing of lm-eval, torch or our package is imported.
When (and only when) some program imports `lm_eval.tasks`, the hook wraps `TaskManager.__init__`:
lm-eval builds its index as it always does, then the hook looks at what the index holds. Tasks of our
folder that are missing from it are added; names already there stay as they are, so a user's
`--include_path` task of the same name still wins, as with built-in tasks.

So it steps aside by itself when:
- the index already holds our tasks: the caller passed our folder (`--include_path "$(fortifai-bench
  tasks-path)"`), or lm-eval reads the `lm_eval.tasks` entry point itself (a release with PR #4015);
- the caller passed `include_defaults=False` (they asked for their own tasks only);
- `FORTIFAI_LM_EVAL_AUTOREGISTER=0` is set.
It relies on `TaskManager.task_index` (public: name -> entry) and lm-eval's own index builder; if a
future lm-eval lays its manager out differently, it falls back to building the index again with our
folder in `include_path`, and if even that fails it says so once and leaves lm-eval alone.

At the same moment it wraps `lm_eval.utils.make_table`, the table lm-eval's CLI prints: a KR row whose
number is not what it claims (requests mis-read by the logits cache, a split cut unlike the model's collapse
run) gets a `(!)`, and a line under the table says why; a run's own KR from results.json is printed there
too (`fortifai_bench.kr.lm_eval_runs.table_marks`). Tables without KR tasks are left as they are.
"""

from __future__ import annotations

import os
import sys

TARGET = "lm_eval.tasks"
_PATCHED = "_fortifai_bench_include"
ADDED = "_fortifai_bench_added"  # set on a TaskManager: the names the hook added (empty: it stepped aside)


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


def _our_index() -> dict:
    from pathlib import Path

    from lm_eval.tasks._index import TaskIndex

    return TaskIndex.build([Path(_ours())])


def add_missing(manager) -> list[str]:
    """Add to `manager`'s index the tasks of our folder it does not hold; returns their names."""
    index = manager.task_index
    ours = _our_index()
    missing = sorted(name for name in ours if name not in index)
    if not missing:
        return []
    for name in missing:
        index[name] = ours[name]
    _refresh_names(manager)
    return missing


def _refresh_names(manager) -> None:
    """Recompute the name lists that `all_tasks`, `all_subtasks`, ... read (lm-eval 0.4.13's layout)."""
    from lm_eval.tasks._index import Kind

    index = manager.task_index
    kinds = {name: entry.kind for name, entry in index.items()}
    manager._all_tasks = sorted(index)
    manager._all_subtasks = sorted(n for n, k in kinds.items() if k in (Kind.TASK, Kind.PY_TASK))
    manager._all_groups = sorted(n for n, k in kinds.items() if k == Kind.GROUP)
    manager._all_tags = sorted(n for n, k in kinds.items() if k == Kind.TAG)


def mark_table(utils) -> None:
    """Wrap `utils.make_table` (lm-eval 0.4.x: `make_table(result_dict, column="results", ...)`) so that the
    KR rows to distrust carry a mark and the reasons follow the table."""
    import functools

    make_table = getattr(utils, "make_table", None)
    if make_table is None or getattr(make_table, _PATCHED, False):
        return

    @functools.wraps(make_table)
    def marked_table(result_dict, column="results", *args, **kwargs):
        try:
            from fortifai_bench.kr.lm_eval_runs import MARK, table_marks

            marked, lines = table_marks(result_dict, column)
        except Exception:  # the table is lm-eval's: never lose it to a mark
            marked, lines = set(), []
        if marked:
            rows = {name: dict(row) for name, row in result_dict[column].items()}
            for name in marked:
                rows[name]["alias"] = f"{rows[name].get('alias', name)} {MARK}"
            result_dict = {**result_dict, column: rows}
        table = make_table(result_dict, column, *args, **kwargs)
        return table + "".join(line + "\n" for line in lines)

    setattr(marked_table, _PATCHED, True)
    utils.make_table = marked_table


def patch(module) -> bool:
    """Wrap `module.TaskManager.__init__`; returns whether the wrapper is in place."""
    import functools
    import inspect

    cls = getattr(module, "TaskManager", None)
    if cls is None or getattr(cls.__init__, _PATCHED, False):
        return cls is not None
    original = cls.__init__
    signature = inspect.signature(original)
    if "include_path" not in signature.parameters:
        return False

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        setattr(self, ADDED, [])
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            return
        if not bound.arguments.get("include_defaults", True):
            return
        try:
            setattr(self, ADDED, add_missing(self))
            if all(name in self.all_tasks for name in getattr(self, ADDED)):
                return
        except Exception:  # a manager laid out differently: build it again with our folder included
            pass
        bound.arguments["include_path"] = with_our_tasks(bound.arguments.get("include_path"))
        original(*bound.args, **bound.kwargs)
        setattr(self, ADDED, ["(rebuilt with our folder)"])

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
                mark_table(sys.modules["lm_eval.utils"])
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
        mark_table(sys.modules["lm_eval.utils"])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
