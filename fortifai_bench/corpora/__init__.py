"""Corpus registry: named sources of paragraphs with stable ids and an even cut into splits.

    get_corpus("facts")                               # embedded synthetic encyclopedia, part "main"
    get_corpus("facts", part="pretrain")              # other entities, same vocabulary of values
    get_corpus("wikitext-2-raw-v1", part="valid", data_dir="../shared/data")
    get_corpus("text:notes.txt")                      # paragraphs split at blank lines
    get_corpus("jsonl:docs.jsonl:body")               # field `body` of every row, split at blank lines
    register_corpus("mine", lambda data_dir, part: Corpus(...))   # a corpus of your own project

The built-in corpora are the modules of this package that declare `CORPORA = {name: loader}`; they are
found on the first lookup (`_find_builtin`), so adding one is adding a module.

A corpus is cut into N+1 contiguous splits for the collapse protocol by `Corpus.splits(n)`; the KR
question generators assign every question to its paragraph's split with the same cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from fortifai_bench.errors import FortifaiError


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of a corpus. `id` is stable across runs (e.g. `facts/p0012`)."""

    id: str
    text: str
    meta: dict = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class Corpus:
    """A named, ordered list of paragraphs. `source` says where they came from (file, hub, seed);
    `part` which part of the named corpus it is ("main", "pretrain", "valid", ...)."""

    name: str
    source: str
    paragraphs: tuple[Paragraph, ...]
    part: str = "main"

    def __post_init__(self):
        # Accept any sequence but store a tuple: a corpus is shared by many users and must not change.
        object.__setattr__(self, "paragraphs", tuple(self.paragraphs))
        if not self.paragraphs:
            raise FortifaiError(f"corpus {self.name} ({self.source}) has no paragraphs")
        seen = set()
        for p in self.paragraphs:
            if p.id in seen:
                raise FortifaiError(f"corpus {self.name}: duplicate paragraph id {p.id}")
            seen.add(p.id)

    def __len__(self) -> int:
        return len(self.paragraphs)

    def texts(self) -> list[str]:
        return [p.text for p in self.paragraphs]

    def split_bounds(self, n: int) -> list[tuple[int, int]]:
        """[start, end) paragraph indices of `n` contiguous splits of (almost) equal size.

        With P paragraphs, every split has P // n paragraphs and the first P % n splits get one
        more (the same rule as numpy.array_split), so sizes differ by at most one and nothing is
        dropped.
        """
        if not isinstance(n, int) or n < 1:
            raise FortifaiError(f"number of splits must be a positive integer, got {n!r}")
        if n > len(self.paragraphs):
            raise FortifaiError(
                f"corpus {self.name} has {len(self.paragraphs)} paragraphs, fewer than the {n} splits asked for"
            )
        size, extra = divmod(len(self.paragraphs), n)
        bounds, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            bounds.append((start, end))
            start = end
        return bounds

    def splits(self, n: int) -> list[list[Paragraph]]:
        """The even contiguous cut into `n` splits (see `split_bounds` for the remainder rule)."""
        return [list(self.paragraphs[a:b]) for a, b in self.split_bounds(n)]

    def split_of(self, n: int) -> list[int]:
        """The split number of every paragraph (by index) under the cut into `n` splits."""
        out = []
        for k, (a, b) in enumerate(self.split_bounds(n)):
            out.extend([k] * (b - a))
        return out


Loader = Callable[[object, str], Corpus]
_REGISTRY: dict[str, Loader] = {}
_FOUND = False


def _find_builtin() -> None:
    """Register what every module of this package declares in `CORPORA = {name: loader}`, once, on the
    first lookup: adding a corpus to the package is adding a module, with no import line to edit and no
    import-order side effect. A name registered earlier with `register_corpus` is kept."""
    global _FOUND
    if _FOUND:
        return
    _FOUND = True
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, loader in getattr(module, "CORPORA", {}).items():
            _REGISTRY.setdefault(name, loader)


def register_corpus(name: str, loader_fn: Loader) -> None:
    """Register `loader_fn(data_dir, part) -> Corpus` under `name` (replacing any earlier one)."""
    # The name becomes a folder (data/<name>/kr.jsonl) and part of cache file names: a path component only.
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise FortifaiError(f"corpus name {name!r} must be a plain file name: letters, digits, '_', '.', '-' "
                            "(not starting with '.' or '-'; no ':' or '/')")
    _REGISTRY[name] = loader_fn


def known_corpora() -> list[str]:
    """Registered names plus the file prefixes."""
    _find_builtin()
    return sorted(_REGISTRY) + ["text:PATH", "jsonl:PATH:FIELD"]


def get_corpus(name: str, data_dir=None, part: str = "main") -> Corpus:
    """The corpus called `name` (a registered name, `text:PATH` or `jsonl:PATH:FIELD`)."""
    from fortifai_bench.corpora import files

    if name.startswith("text:"):
        return files.load_text(name[len("text:"):], part)
    if name.startswith("jsonl:"):
        return files.load_jsonl(name[len("jsonl:"):], part)
    _find_builtin()
    loader = _REGISTRY.get(name)
    if loader is None:
        raise FortifaiError(f"unknown corpus {name!r}; known: {', '.join(known_corpora())}")
    corpus = loader(data_dir, part)
    if not isinstance(corpus, Corpus):
        raise FortifaiError(f"corpus loader for {name!r} returned {type(corpus).__name__}, not a Corpus")
    return corpus


__all__ = ["Paragraph", "Corpus", "get_corpus", "register_corpus", "known_corpora"]
