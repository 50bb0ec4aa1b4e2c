"""One registry pattern for everything looked up by name (corpora, KR generators, toys, short loss names).

    CORPORA = Registry("corpus", {"facts": "fortifai_bench.corpora.facts:load_facts"})
    CORPORA.register("mine", load_mine)          # an object, or a lazy "module:Name" / "module" target
    CORPORA.get("facts")                         # imports fortifai_bench.corpora.facts on first use
    CORPORA.names()                              # ["facts", "mine"]

As lm-eval's `lm_eval.api.registry.Registry`: a target given as a string is imported only when first asked
for, so importing a registry imports none of what it lists (a table of strings, not an import per entry),
and listing the names imports nothing. Unlike lm-eval's, an unknown name is a `FortifaiError` of one line
that lists the choices and suggests the closest one, as every other user-facing error here.
"""

from __future__ import annotations

import importlib

from fortifai_bench.errors import FortifaiError, did_you_mean


def load_target(target: str):
    """The object a target names: `"package.module:Name"` an attribute, `"package.module"` the module."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


class Registry:
    """Names -> objects or lazy string targets (imported on the first `get`, then kept)."""

    def __init__(self, kind: str, targets: dict | None = None, *, also_known: tuple[str, ...] = (),
                 sort: bool = True):
        self.kind = kind  # what a name names, for the error: "unknown corpus 'x'"
        self.also_known = tuple(also_known)  # forms outside the table the error lists too ("text:PATH")
        self.sort = sort  # names() sorted, or in the order registered (where that order is shown, as choices)
        self._targets = dict(targets or {})

    def register(self, name: str, target) -> None:
        """Register `target` (an object or a "module:Name" string) under `name`, replacing any earlier one."""
        self._targets[name] = target

    def names(self) -> list[str]:
        """The registered names (sorted, or in the order registered); imports nothing."""
        return sorted(self._targets) if self.sort else list(self._targets)

    def __contains__(self, name: str) -> bool:
        return name in self._targets

    def __iter__(self):
        return iter(self.names())

    def get(self, name: str):
        """The object registered as `name`, imported now if it was given as a string."""
        if name not in self._targets:
            raise FortifaiError(self.unknown(name))
        target = self._targets[name]
        if isinstance(target, str):
            target = self._targets[name] = load_target(target)
        return target

    def unknown(self, name: str) -> str:
        """`unknown corpus 'x'; known: a, b; did you mean a?`: the one-line message for a name not registered."""
        known = self.names() + list(self.also_known)
        return f"unknown {self.kind} {name!r}; known: {', '.join(known)}{did_you_mean(name, self.names())}"

    def copy(self) -> "Registry":
        """An independent registry with the same entries (a test registers into it and drops it)."""
        return Registry(self.kind, self._targets, also_known=self.also_known, sort=self.sort)
