"""Build a KR question set for a corpus: generate, filter, assign splits (`fortifai-bench kr build`), and the
shipped facts data (`fortifai-bench corpus build-facts`: a facts corpus and its questions, in one folder).

The generators are looked up by name in `GENERATORS` (`fortifai_bench.registry`). Each entry is a function
`(corpus, n_splits, *, max_per_paragraph, seed, source, progress, options) -> (questions, report extras)`
returning at most `max_per_paragraph` questions per paragraph (`kr.schema.Question`, `paragraph` = the
paragraph's index in `corpus`; splits are assigned afterwards); the three below adapt the generator modules
(imported only when used: openai is an optional dependency) to that one call.

A generator of your own is the same function, named `module:Name` (`kr build --generator my_gen:generate`,
the working folder first) or declared by an installed project in the entry-point group
`fortifai_bench.kr_generators` (GROUP), under a name of its own.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from fortifai_bench.corpora.facts import PRESETS, build_facts
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import file_sha256, write_jsonl
from fortifai_bench.kr import facts_gen, rules
from fortifai_bench.kr.openai_gen import generate_openai
from fortifai_bench.kr.quality import MAX_DIFF_WORDS, filter_questions
from fortifai_bench.kr.schema import assign_splits, write_questions
from fortifai_bench.registry import Registry

GROUP = "fortifai_bench.kr_generators"  # the entry points other projects declare their generators in


def _facts(corpus, n_splits, *, max_per_paragraph, seed, source, progress, options):
    # caps the facts per paragraph itself (several questions each)
    questions = facts_gen.generate_facts(corpus, n_splits, max_per_paragraph=max_per_paragraph, seed=seed,
                                         source=source)
    return questions, {}



def _rules(corpus, n_splits, *, max_per_paragraph, seed, source, progress, options):
    questions = rules.generate_rules(corpus, max_per_paragraph=max_per_paragraph, seed=seed, source=source)
    return _cap_per_paragraph(questions, max_per_paragraph), {}


def _openai(corpus, n_splits, *, max_per_paragraph, seed, source, progress, options):
    questions, usage = generate_openai(list(corpus.paragraphs), source=source, progress=progress, **options)
    return _cap_per_paragraph(questions, max_per_paragraph), {"openai": usage}


# In this order in `kr build --help` and the errors.
GENERATORS = Registry("KR generator", {"facts": _facts, "rules": _rules, "openai": _openai}, sort=False,
                      group=GROUP, specs=True)


def generator_version(name: str) -> str:
    """What names a generator's questions in cache file names: `rules@1`, `facts@2`; for a plug-in or a user's
    `module:Name`, the name and the sha256 of its source file, so edited code never reuses stale questions."""
    if name in ("rules", "facts"):
        return {"rules": rules.GENERATOR, "facts": facts_gen.GENERATOR}[name]
    source = getattr(sys.modules.get(getattr(GENERATORS.get(name), "__module__", "")), "__file__", None)
    digest = file_sha256(source)[:12] if source else "nosource"
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '.', name)}@{digest}"


def build_questions(corpus, generator: str, n_splits: int, *, max_per_paragraph: int = 5, seed: int = 0,
                    max_diff_words: int | None = None, source: str | None = None, openai_args: dict | None = None,
                    progress: bool = False):
    """(questions, report) for `corpus`: every question carries its paragraph's split under the even
    cut into `n_splits` (`corpus.split_of`). The quality filter runs before anything is returned;
    `report` = {"generator", "corpus", "splits", "quality": {...}, "openai": usage stats or absent}.
    `openai_args` go to `fortifai_bench.kr.openai_gen.generate_openai` (llm, base_url, concurrency, ...).
    """
    generate = GENERATORS.get(generator)
    split_of = corpus.split_of(n_splits)  # checks n_splits against the corpus first: fail before paying
    source = source or f"{corpus.name}:{corpus.part}"
    report = {"generator": generator, "corpus": corpus.name, "part": corpus.part, "splits": n_splits}
    questions, extras = generate(corpus, n_splits, max_per_paragraph=max_per_paragraph, seed=seed, source=source,
                                 progress=progress, options=openai_args or {})
    report.update(extras)
    questions = assign_splits(questions, split_of)
    kept, quality = filter_questions(questions, max_diff_words if max_diff_words is not None else MAX_DIFF_WORDS)
    report["quality"] = quality.to_dict()
    if not kept:
        raise FortifaiError(f"{generator} generator made no usable questions from {corpus.name} ({corpus.source}); "
                            f"{quality.format().splitlines()[0]}")
    return kept, report


def _cap_per_paragraph(questions, limit: int):
    if limit < 1:
        raise FortifaiError(f"max_per_paragraph must be >= 1, got {limit}")
    count, out = {}, []
    for q in questions:
        count[q.paragraph] = count.get(q.paragraph, 0) + 1
        if count[q.paragraph] <= limit:
            out.append(q)
    return out


def build_facts_files(out, *, corpus: str = "facts", seed: int = 0, paragraphs: int | None = None, splits: int = 6,
                      max_per_paragraph: int = 5) -> tuple[Path, Path, dict]:
    """Write `<out>/corpus.jsonl` (the main part of `corpus`, a key of `PRESETS`; `paragraphs=None`: the
    preset's own count, 180 or 450) and `<out>/kr.jsonl` (its facts questions).

    Same arguments, same bytes: the shipped `data/facts` and `data/facts-longtail` files are made by this
    function with its defaults, and a test rebuilds them and compares.
    """
    if corpus not in PRESETS:
        raise FortifaiError(f"build-facts: unknown corpus {corpus!r}; known: {', '.join(PRESETS)}")
    config = PRESETS[corpus]
    config = dataclasses.replace(config, seed=seed, paragraphs=config.paragraphs if paragraphs is None else paragraphs)
    corpus = build_facts(config, part="main")
    # Everything is generated before the first byte is written: a bad argument leaves no file.
    questions, report = build_questions(corpus, "facts", splits, max_per_paragraph=max_per_paragraph, seed=seed)
    out = Path(out)
    corpus_path, kr_path = out / "corpus.jsonl", out / "kr.jsonl"
    write_jsonl(corpus_path, ({"id": p.id, "text": p.text, "meta": p.meta} for p in corpus.paragraphs))
    write_questions(kr_path, questions)
    return corpus_path, kr_path, report
