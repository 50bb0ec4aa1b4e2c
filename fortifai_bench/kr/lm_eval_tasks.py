"""What lm-eval's `custom_dataset: !function ...` calls for the `kr_facts` and `kr_wikitext` tasks.

lm-eval calls `custom_dataset(**metadata, **dataset_kwargs)`: `metadata` is the task YAML's metadata
merged with `--metadata '{...}'` (and, through `simple_evaluate`, the model arguments), so unknown
keys are ignored here. `dataset_kwargs` (set per subtask in the YAML) are `kr_source` and `kr_split`.

- `kr_facts` reads the question file the project ships, `data/facts/kr.jsonl`.
- `kr_wikitext` builds its questions on first use with the offline `rules` generator and caches them
  under the user's cache directory (`fortifai_bench.resources.cache_dir()/kr/`). Where the text comes
  from: `--metadata '{"data_dir": DIR}'`, else `FORTIFAI_DATA_DIR`, else the Hugging Face Hub (train
  split). Which part: `--metadata '{"part": "valid"}'` picks one; without it the training text is used
  (as in the paper), except that a local folder holding no `wiki.train.raw` (such as a copy of only
  the validation and test files) falls back to its `valid` part, with a warning. The cached file's name
  records the generator version, the part, the number of splits and a hash of the text, so a changed
  corpus or generator never reuses stale questions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

from fortifai_bench.errors import FortifaiError

log = logging.getLogger(__name__)

N_SPLITS = 6  # the collapse protocol's N+1 splits (stages: 6); subtasks kr_*_split0..5
WIKITEXT = "wikitext-2-raw-v1"
SOURCES = ("facts", "wikitext")


def facts_questions_path() -> Path:
    from fortifai_bench.resources import data_dir

    return data_dir() / "facts" / "kr.jsonl"


@functools.lru_cache(maxsize=8)
def _facts_questions() -> tuple:
    from fortifai_bench.kr.schema import read_questions

    path = facts_questions_path()
    if not path.is_file():
        raise FortifaiError(f"kr_facts: the shipped question file {path} is missing (reinstall fortifai-bench, "
                            f"or rebuild it with `fortifai-bench kr build --corpus facts --generator facts`)")
    return tuple(read_questions(path))


def _wikitext_part(data_dir, part):
    """The corpus part to use and the data folder (see the module docstring for the rule)."""
    data_dir = data_dir or os.environ.get("FORTIFAI_DATA_DIR") or None
    if part:
        return part, data_dir
    if data_dir:
        root = Path(data_dir)
        if not any((folder / "wiki.train.raw").is_file() for folder in (root / WIKITEXT, root)):
            log.warning("kr_wikitext: %s holds no wiki.train.raw; using its 'valid' part "
                        "(pass --metadata '{\"part\": ...}' to choose)", root)
            return "valid", data_dir
    return "main", data_dir


def wikitext_questions(data_dir=None, part=None, n_splits: int = N_SPLITS) -> list:
    """The rules-generated KR questions of WikiText-2, built once and cached (atomic write)."""
    return list(_wikitext_cached(*_wikitext_part(data_dir, part), n_splits))


@functools.lru_cache(maxsize=8)
def _wikitext_cached(part: str, data_dir, n_splits: int) -> tuple:
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr import rules
    from fortifai_bench.kr.schema import assign_splits, read_questions, write_questions
    from fortifai_bench.resources import cache_dir

    corpus = get_corpus(WIKITEXT, data_dir=data_dir, part=part)
    digest = hashlib.sha256()
    for p in corpus.paragraphs:
        digest.update(p.id.encode() + b"\0" + p.text.encode() + b"\0")
    name = f"{WIKITEXT}-{corpus.part}-{rules.GENERATOR.replace('@', '-v')}-s{n_splits}-{digest.hexdigest()[:16]}.jsonl"
    path = cache_dir() / "kr" / name
    if path.is_file():
        return tuple(read_questions(path))
    log.info("kr_wikitext: building questions from %s with the rules generator into %s", corpus.source, path)
    questions = assign_splits(rules.generate_rules(corpus), corpus.split_of(n_splits))
    if not questions:
        raise FortifaiError(f"kr_wikitext: the rules generator made no questions from {corpus.source}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_questions(path, questions)
    return tuple(questions)


def questions_for(source: str, *, data_dir=None, part=None) -> list:
    if source == "facts":
        return list(_facts_questions())
    if source == "wikitext":
        return wikitext_questions(data_dir, part)
    raise FortifaiError(f"unknown KR task source {source!r}; known: {', '.join(SOURCES)}")


def to_docs(questions) -> list[dict]:
    """lm-eval documents: `context` is the prompt, `choices` = [true, false], the target is index 0."""
    return [{"id": q.id, "split": q.split, "context": q.context, "choices": [q.true, q.false]} for q in questions]


def kr_dataset(kr_source: str = "facts", kr_split: int | None = None, data_dir=None, part=None, **_metadata):
    """`custom_dataset` for the KR tasks: {"test": Dataset} of one split (or all when kr_split is None)."""
    import datasets

    questions = questions_for(kr_source, data_dir=data_dir, part=part)
    if kr_split is not None:
        questions = [q for q in questions if q.split == int(kr_split)]
    if not questions:
        raise FortifaiError(f"kr_{kr_source}: no questions in split {kr_split}")
    return {"test": datasets.Dataset.from_list(to_docs(questions))}
