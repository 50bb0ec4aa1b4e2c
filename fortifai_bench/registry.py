"""One registry pattern for everything looked up by name (corpora, KR generators, toys, short loss names).

    CORPORA = Registry("corpus", {"facts": "fortifai_bench.corpora.facts:load_facts"},
                       group="fortifai_bench.corpora", specs=True)
    CORPORA.register("mine", load_mine)          # an object, or a lazy "module:Name" / "module" target
    CORPORA.get("facts")                         # imports fortifai_bench.corpora.facts on first use
    CORPORA.names()                              # ["facts", "mine", + the names other projects declare]
    CORPORA.get("my_corpus:load_my_notes")       # specs=True: a user's module:Name, as losses take

As lm-eval's `lm_eval.api.registry.Registry`: a target given as a string is imported only when first asked
for, so importing a registry imports none of what it lists (a table of strings, not an import per entry),
and listing the names imports nothing. Unlike lm-eval's, an unknown name is a `FortifaiError` of one line
that lists the choices and suggests the closest one, as every other user-facing error here.

Plug-ins, without editing this package: a registry with a `group` also lists the entry points of that group
that installed distributions declare (`importlib.metadata.entry_points`, read once, nothing imported until a
name is asked for), as pytest's `pytest11` or lm-eval's model registry do. A project adds a corpus with

    [project.entry-points."fortifai_bench.corpora"]
    my-notes = "my_notes.loader:load_my_notes"

The package's own names win over a plug-in's of the same name. With `specs=True` a name of the form
`module:Name` that is not registered is imported as a user's module (`import_user_module`: the working folder
first, then sys.path, as `--loss my_losses:ClippedCE` is).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys

from fortifai_bench.errors import FortifaiError, did_you_mean

SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # module.path:Name.attr


def load_target(target: str):
    """The object a target names: `"package.module:Name"` an attribute, `"package.module"` the module."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


class Registry:
    """Names -> objects or lazy string targets (imported on the first `get`, then kept)."""

    def __init__(self, kind: str, targets: dict | None = None, *, also_known: tuple[str, ...] = (),
                 sort: bool = True, group: str | None = None, specs: bool = False):
        self.kind = kind  # what a name names, for the error: "unknown corpus 'x'"
        self.also_known = tuple(also_known)  # forms outside the table the error lists too ("text:PATH")
        self.sort = sort  # names() sorted, or in the order registered (where that order is shown, as choices)
        self.group = group  # the entry-point group other projects declare names in
        self.specs = specs  # whether a user's module:Name is taken too
        self._targets = dict(targets or {})
        self._plugins: dict | None = None  # read from the entry points on first need

    def _table(self) -> dict:
        """The package's and registered names, then the plug-ins' (entry points of `group`) not among them."""
        if self._plugins is None:
            self._plugins = {}
            if self.group:
                from importlib.metadata import entry_points

                for ep in entry_points(group=self.group):
                    self._plugins.setdefault(ep.name, ep.value)
        return {**self._targets, **{k: v for k, v in self._plugins.items() if k not in self._targets}}

    def register(self, name: str, target) -> None:
        """Register `target` (an object or a "module:Name" string) under `name`, replacing any earlier one."""
        self._targets[name] = target

    def names(self) -> list[str]:
        """The registered names and the plug-ins' (sorted, or in the order registered); imports nothing."""
        return sorted(self._table()) if self.sort else list(self._table())

    def is_spec(self, name: str) -> bool:
        """Whether `name` would be taken as a user's `module:Name` (not a registered name)."""
        return self.specs and isinstance(name, str) and bool(SPEC.fullmatch(name)) and name not in self._table()

    def __contains__(self, name: str) -> bool:
        return name in self._table() or self.is_spec(name)

    def __iter__(self):
        return iter(self.names())

    def get(self, name: str):
        """The object registered as `name`, imported now if it was given as a string; with `specs`, the object a
        user's `module:Name` names."""
        table = self._table()
        if name not in table:
            if self.is_spec(name):
                return load_user_target(name, self.kind)
            raise FortifaiError(self.unknown(name))
        target = table[name]
        if isinstance(target, str):
            try:
                target = load_target(target)
            except (ImportError, AttributeError) as exc:  # a plug-in whose module is broken or gone
                raise FortifaiError(f"{self.kind} {name!r}: cannot load {table[name]!r}"
                                    f"{f' (entry point of {self.group})' if name in (self._plugins or {}) else ''}: "
                                    f"{type(exc).__name__}: {exc}") from exc
            self._targets[name] = target
        return target

    def unknown(self, name: str) -> str:
        """`unknown corpus 'x'; known: a, b; did you mean a?`: the one-line message for a name not registered."""
        known = self.names() + list(self.also_known) + (["module:Name"] if self.specs else [])
        return f"unknown {self.kind} {name!r}; known: {', '.join(known)}{did_you_mean(name, self.names())}"

    def copy(self) -> "Registry":
        """An independent registry with the same entries (a test registers into it and drops it)."""
        return Registry(self.kind, self._targets, also_known=self.also_known, sort=self.sort, group=self.group,
                        specs=self.specs)


# ------------------------------------------------------------------------------------- a user's module:Name

def load_user_target(spec: str, kind: str):
    """The object `module:Name` names, its module imported as a user's (`import_user_module`); one-line errors
    that name the spec."""
    module_name, _, attr = spec.partition(":")
    try:
        obj = import_user_module(module_name)
    except (Exception, SystemExit) as exc:  # SystemExit: a module calling sys.exit() on import
        what = f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        raise FortifaiError(f"{kind} {spec!r}: cannot import {module_name!r}: {what}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FortifaiError(f"{kind} {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def import_user_module(module_name: str):
    """Import `module_name`, its top-level package looked up in the working folder first.

    `--loss my_module:MyLoss` or `--corpus my_corpus:load` finds my_module.py in the working folder (also when
    `fortifai-bench` runs as an installed script, whose sys.path lacks it) without putting that folder on
    sys.path for the rest of the process: a `matplotlib.py` lying there must not replace the real one later.
    While the user's module runs its imports, the folder is at the *end* of sys.path, so it can import its
    siblings but never shadows an installed package."""
    cwd = os.getcwd()
    top = module_name.partition(".")[0]
    with _user_import(cwd):
        if top not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(top, [cwd])
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[top] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(top, None)
                    raise
        return importlib.import_module(module_name)


@contextlib.contextmanager
def _user_import(folder: str):
    added = folder not in sys.path
    bytecode = sys.dont_write_bytecode
    if added:
        sys.path.append(folder)
    sys.dont_write_bytecode = True  # no __pycache__ left in the user's folder
    try:
        yield
    finally:
        sys.dont_write_bytecode = bytecode
        if added and folder in sys.path:
            del sys.path[len(sys.path) - 1 - sys.path[::-1].index(folder)]
