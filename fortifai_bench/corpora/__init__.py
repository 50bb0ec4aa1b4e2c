"""Corpus registry: named sources of paragraphs with stable ids and an even cut into splits.

    get_corpus("facts")                               # embedded synthetic encyclopedia, part "main"
    get_corpus("facts", part="pretrain")              # other entities, same vocabulary of values
    get_corpus("wikitext-2-raw-v1", part="valid", data_dir="../shared/data")
    get_corpus("text:notes.txt")                      # paragraphs split at blank lines
    get_corpus("jsonl:docs.jsonl:body")               # field `body` of every row, split at blank lines
    get_corpus("my_corpus:load_my_notes")            # a loader of your own: module:Name (working folder first)
    register_corpus("mine", lambda data_dir, part: Corpus(...))   # a corpus of your own project, in Python

The built-in corpora are the lazy "module:loader" targets of `CORPORA` (`fortifai_bench.registry`): a
module is imported when its corpus is first asked for, so importing the registry imports none of them.
Adding a corpus to the package is adding its module and one line below. Another installed project adds one
without editing this package through the entry-point group `fortifai_bench.corpora` (GROUP below), e.g. in its
pyproject.toml: `[project.entry-points."fortifai_bench.corpora"]` `my-notes = "my_notes:load_my_notes"`.

A corpus is cut into N+1 contiguous splits for the collapse protocol by `Corpus.splits(n)`; the KR
question generators assign every question to its paragraph's split with the same cut.
"""

from __future__ import annotations

import re
from typing import Callable

from fortifai_bench.corpora import files
from fortifai_bench.corpora.corpus import Corpus, Paragraph
from fortifai_bench.errors import FortifaiError
from fortifai_bench.registry import Registry

Loader = Callable[[object, str], Corpus]
FILE_FORMS = ("text:PATH", "jsonl:PATH:FIELD")  # corpora named by a file, not registered
GROUP = "fortifai_bench.corpora"  # the entry points other projects declare their corpora in
_REGISTRY = Registry("corpus", {
    "facts": "fortifai_bench.corpora.facts:load_facts",
    "facts-longtail": "fortifai_bench.corpora.facts:load_facts_longtail",
    "facts-longtail-450": "fortifai_bench.corpora.facts:load_facts_longtail_450",
    "imagination-of-web": "fortifai_bench.corpora.imagination:load_imagination",
    "wikitext-2-raw-v1": "fortifai_bench.corpora.wikitext:load_wikitext",
}, also_known=FILE_FORMS, group=GROUP, specs=True)


def register_corpus(name: str, loader_fn: Loader) -> None:
    """Register `loader_fn(data_dir, part) -> Corpus` under `name` (replacing any earlier one)."""
    # The name becomes a folder (data/<name>/kr.jsonl) and part of cache file names: a path component only.
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise FortifaiError(f"corpus name {name!r} must be a plain file name: letters, digits, '_', '.', '-' "
                            "(not starting with '.' or '-'; no ':' or '/')")
    _REGISTRY.register(name, loader_fn)


def known_corpora() -> list[str]:
    """Registered names plus the file prefixes."""
    return _REGISTRY.names() + list(FILE_FORMS)


def get_corpus(name: str, data_dir=None, part: str = "main") -> Corpus:
    """The corpus called `name`: a registered or plug-in name, `text:PATH`, `jsonl:PATH:FIELD`, or a loader of
    your own as `module:Name`."""
    if name.startswith("text:"):

        return files.load_text(name[len("text:"):], part)
    if name.startswith("jsonl:"):
        return files.load_jsonl(name[len("jsonl:"):], part)
    corpus = _REGISTRY.get(name)(data_dir, part)
    if not isinstance(corpus, Corpus):
        raise FortifaiError(f"corpus loader for {name!r} returned {type(corpus).__name__}, not a Corpus")
    return corpus


__all__ = ["Paragraph", "Corpus", "get_corpus", "register_corpus", "known_corpora"]
