"""One place a KR question set comes from: (corpus, part, splits, generator) -> questions + provenance.

    kr = kr_set("wikitext-2-raw-v1", n_splits=6)                          # even cut of the whole part
    kr = kr_set("imagination-of-web", n_splits=6, paragraphs_per_split=30)  # the collapse protocol's cut
    kr.questions, kr.bounds, kr.provenance

Every lm-eval KR task (kr_facts, kr_wikitext, kr_imagination), the `kr` CLI and the collapse protocol
ask this module. What it does, in order:

1. **The cut** (`cut`): the paragraphs the splits cover, then `Corpus.split_bounds(n)` on them. With
   `paragraphs_per_split=P` the first n*P paragraphs (split k = paragraphs kP..(k+1)P-1); without it
   the whole part minus `reserve` trailing paragraphs (the protocol's held-out text), cut evenly.
2. **The questions**: a set the project ships for that corpus (`data/<corpus>/kr.jsonl`, part `main`:
   the facts questions) is read and its questions are mapped onto the cut by paragraph index (those
   about other paragraphs are dropped). Otherwise the set is built with `kr.build.build_questions`
   (generator, per-paragraph cap, quality filter) on the covered paragraphs and cached under
   `resources.cache_dir()/kr/`, in a file named by corpus, part, generator version, number of splits
   and a hash of everything that decides the questions (text, cut, cap, seed, build version): a
   changed corpus or generator never reuses stale questions. Built once per process, too.
3. **Provenance** (`KRSet.provenance`, JSON-able): where the questions come from (shipped or cached
   file and its sha256, corpus source and data folder), generator and version, the cut, the number of
   questions, the part and why (WikiText's fallback to `valid`), and the set's length bias
   (`kr.quality.length_bias`: its chance level).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fortifai_bench import resources
from fortifai_bench.corpora import get_corpus
from fortifai_bench.corpora.facts import PRESETS
from fortifai_bench.corpora.wikitext import default_part
from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import file_sha256, read_json, write_json
from fortifai_bench.kr import build  # as a module: a test swaps build.GENERATORS for a copy
from fortifai_bench.kr.quality import length_bias
from fortifai_bench.kr.schema import read_questions, write_questions

log = logging.getLogger(__name__)

BUILD_VERSION = 2  # 1: kr_wikitext without the per-paragraph cap and quality filter; 2: through build_questions
N_SPLITS = 6       # the collapse protocol's default N+1 splits (lm-eval subtasks kr_*_split0..5)
WIKITEXT = "wikitext-2-raw-v1"


@dataclass(frozen=True)
class KRSetSpec:
    """What decides a KR set. `part=None`: the corpus's default part (`main`; WikiText without a local
    wiki.train.raw: `valid`). `generator=None`: `facts` for the facts corpora (facts, facts-longtail),
    `rules` for any other."""

    corpus: str
    part: str | None = None
    n_splits: int = N_SPLITS
    paragraphs_per_split: int | None = None
    reserve: int = 0
    generator: str | None = None
    data_dir: str | None = None
    max_per_paragraph: int = 5
    seed: int = 0
    max_diff_words: int | None = None  # quality filter (None: kr.quality.MAX_DIFF_WORDS)
    use_shipped: bool = True           # False: generate even where the project ships a set (kr build)

    def __post_init__(self):
        if not isinstance(self.corpus, str) or not self.corpus:
            raise FortifaiError(f"KR set: corpus must be a name, got {self.corpus!r}")
        for name in ("n_splits", "max_per_paragraph"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FortifaiError(f"KR set: {name} must be a positive integer, got {value!r}")
        if self.paragraphs_per_split is not None and (
                not isinstance(self.paragraphs_per_split, int) or self.paragraphs_per_split < 1):
            raise FortifaiError(f"KR set: paragraphs_per_split must be a positive integer or None, "
                                f"got {self.paragraphs_per_split!r}")
        if not isinstance(self.reserve, int) or self.reserve < 0:
            raise FortifaiError(f"KR set: reserve must be a non-negative integer, got {self.reserve!r}")
        if self.paragraphs_per_split is not None and self.reserve:
            raise FortifaiError("KR set: reserve applies to the even cut only; with paragraphs_per_split the "
                                "paragraphs after the splits are already left out")
        if self.generator is not None and self.generator not in build.GENERATORS:
            raise FortifaiError(f"KR set: unknown generator {self.generator!r}; known: {', '.join(build.GENERATORS)} "
                                f"(openai sets are built with `fortifai-bench kr build` and read as files)")
        if self.generator == "openai":
            raise FortifaiError("KR set: the openai generator needs an endpoint and costs money; build the set "
                                "once with `fortifai-bench kr build --generator openai` and pass its file")


@dataclass
class KRSet:
    questions: list                    # kr.schema.Question, .split set to the cut's split
    bounds: list[tuple[int, int]]      # [start, end) paragraph indices of every split
    provenance: dict = field(default_factory=dict)

    def split(self, k: int) -> list:
        return [q for q in self.questions if q.split == k]


def cut(corpus, n_splits: int, paragraphs_per_split: int | None = None, reserve: int = 0):
    """The corpus restricted to the paragraphs the `n_splits` splits cover; its `split_bounds(n_splits)`
    is the cut. The one place a corpus is cut for KR sets and the collapse protocol."""
    if paragraphs_per_split:
        used = n_splits * paragraphs_per_split
        if len(corpus) < used:
            raise FortifaiError(f"corpus {corpus.name} ({corpus.part}) has {len(corpus)} paragraphs, fewer than the "
                                f"{used} that {n_splits} splits x {paragraphs_per_split} paragraphs need")
    else:
        used = len(corpus) - reserve
        if reserve and used < n_splits:
            raise FortifaiError(f"corpus {corpus.name} ({corpus.part}) has {len(corpus)} paragraphs; after the "
                                f"{reserve} held out, fewer than the {n_splits} splits asked for")
    if used == len(corpus):
        return corpus  # split_bounds checks n_splits against the corpus
    return dataclasses.replace(corpus, paragraphs=corpus.paragraphs[:used])


def kr_set(corpus: str, part: str | None = None, n_splits: int = N_SPLITS, *,
           paragraphs_per_split: int | None = None, reserve: int = 0, generator: str | None = None,
           data_dir=None, max_per_paragraph: int = 5, seed: int = 0, max_diff_words: int | None = None,
           use_shipped: bool = True, tokenizer=None) -> KRSet:
    """The KR set of `corpus` cut into `n_splits` (see the module docstring). `tokenizer` only adds the
    token-level length bias to the provenance. Returns a fresh KRSet (its questions are copies)."""
    spec = KRSetSpec(corpus, part, n_splits, paragraphs_per_split, reserve, generator,
                     str(data_dir) if data_dir else None, max_per_paragraph, seed, max_diff_words, use_shipped)
    return resolve(spec, tokenizer=tokenizer)


def resolve(spec: KRSetSpec, tokenizer=None) -> KRSet:
    data_dir = spec.data_dir or os.environ.get("FORTIFAI_DATA_DIR") or None
    questions, bounds, provenance = _resolved(spec, data_dir, str(resources.cache_dir()))
    provenance = json.loads(json.dumps(provenance))  # a private copy: callers may add to it
    if tokenizer is not None:
        provenance["length_bias"] = length_bias(questions, tokenizer)
    return KRSet([dataclasses.replace(q) for q in questions], list(bounds), provenance)


def clear_cache() -> None:
    """Forget the sets built in this process (the files in the user cache stay)."""
    _resolved.cache_clear()


@functools.lru_cache(maxsize=16)
def _resolved(spec: KRSetSpec, data_dir, cache_root: str) -> tuple:
    part, part_note = _part(spec.corpus, spec.part, data_dir)
    corpus = get_corpus(spec.corpus, data_dir=data_dir, part=part)
    covered = cut(corpus, spec.n_splits, spec.paragraphs_per_split, spec.reserve)
    bounds = covered.split_bounds(spec.n_splits)
    generator = spec.generator or default_generator(spec.corpus)
    shipped = _shipped_file(spec.corpus, part, generator) if spec.use_shipped and _shipped_settings(spec) else None
    if shipped is not None:
        questions, where = _from_shipped(shipped, bounds), {"source": "shipped", "file": str(shipped)}
        quality = None  # the shipped file was filtered when it was made (corpus build-facts)
    else:
        questions, path, quality = _built(covered, generator, spec, Path(cache_root))
        where = {"source": "built", "file": str(path)}
    if not questions:
        raise FortifaiError(f"KR set of {spec.corpus} ({part}): no question about paragraphs "
                            f"{bounds[0][0]}..{bounds[-1][1] - 1}")
    provenance = {
        **where, "sha256": file_sha256(Path(where["file"])),
        "corpus": corpus.name, "part": corpus.part, "part_note": part_note, "corpus_source": corpus.source,
        "data_dir": str(data_dir) if data_dir else None,
        "generator": sorted({q.generator for q in questions}), "build_version": BUILD_VERSION,
        "splits": spec.n_splits, "bounds": [list(b) for b in bounds], "questions": len(questions),
        "per_split": [sum(1 for q in questions if q.split == k) for k in range(spec.n_splits)],
        "max_per_paragraph": spec.max_per_paragraph, "seed": spec.seed, "quality": quality,
        "length_bias": length_bias(questions),
    }
    return tuple(questions), tuple(bounds), provenance


def default_generator(corpus: str) -> str:
    """`facts` for the generated encyclopedias (their ground truth is in the meta), `rules` for any other."""
    return "facts" if corpus in PRESETS else "rules"


def _part(corpus: str, part: str | None, data_dir) -> tuple[str, str | None]:
    if part:
        return part, None
    if corpus == WIKITEXT:
        return default_part(data_dir)
    return "main", None


def _shipped_settings(spec: KRSetSpec) -> bool:
    """Shipped sets are made with the defaults (corpus build-facts); other settings mean building."""
    return spec.max_per_paragraph == 5 and spec.seed == 0 and spec.max_diff_words is None


def _shipped_file(corpus: str, part: str, generator: str) -> Path | None:
    """The project's own set for (corpus, main), used when it was made by the generator asked for."""
    path = resources.data_dir() / corpus / "kr.jsonl"
    if part != "main" or not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        first = json.loads(f.readline())
    return path if str(first.get("generator", "")).split("@")[0] == generator else None


def _from_shipped(path: Path, bounds) -> list:
    return on_splits(read_questions(path), bounds)


def on_splits(questions, bounds) -> list:
    """The questions about a paragraph of the cut, each with `.split` set to the split that holds it (by
    paragraph index; `bounds` are [start, end) per split); the others are dropped. The one question->split
    mapping: shipped sets here, and the collapse protocol's own question files (`eval.kr: PATH`)."""
    split_of = {p: k for k, (a, b) in enumerate(bounds) for p in range(a, b)}
    kept = []
    for q in questions:
        if q.paragraph in split_of:
            q.split = split_of[q.paragraph]
            kept.append(q)
    return kept


def _built(covered, generator: str, spec: KRSetSpec, cache_root: Path):
    version = build.generator_version(generator)  # a plug-in's too (its source's sha256)
    digest = hashlib.sha256(json.dumps(
        [BUILD_VERSION, version, spec.n_splits, spec.max_per_paragraph, spec.seed, spec.max_diff_words,
         covered.name, covered.part],
    ).encode())
    for p in covered.paragraphs:
        digest.update(p.id.encode() + b"\0" + p.text.encode() + b"\0")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{covered.name}-{covered.part}")  # text:PATH corpora hold slashes
    name = f"{stem}-{version.replace('@', '-v')}-s{spec.n_splits}-{digest.hexdigest()[:16]}.jsonl"
    path = cache_root / "kr" / name
    report_path = path.with_suffix(".quality.json")
    if path.is_file():
        return read_questions(path), path, read_json(report_path) if report_path.is_file() else None
    log.info("KR set: building %s questions of %s (%s, %d paragraphs) into %s",
             generator, covered.name, covered.source, len(covered), path)
    questions, report = build.build_questions(covered, generator, spec.n_splits,
                                              max_per_paragraph=spec.max_per_paragraph, seed=spec.seed,
                                              max_diff_words=spec.max_diff_words,
                                              source=f"{covered.name}:{covered.part}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(report_path, report["quality"])  # first: a questions file never lacks its report
    write_questions(path, questions)  # atomic: a crash leaves no half-written cache file
    return questions, path, report["quality"]


def file_provenance(path, questions) -> dict:
    """Provenance of a question file read as it is (kr_file, `kr stats`)."""
    path = Path(path)
    return {"source": "file", "file": str(path.resolve()), "sha256": file_sha256(path),
            "format": "authors" if questions and questions[0].generator == "authors" else "jsonl",
            "generator": sorted({q.generator for q in questions}), "questions": len(questions),
            "splits": sorted({q.split for q in questions}), "length_bias": length_bias(questions)}


# ------------------------------------------------------------------------------------------ a run's KR file

def kr_record(path: str | os.PathLike | None) -> dict | None:
    """How a run names the KR file it was scored on (results.json `kr`): the path used, its sha256, and a
    name that finds it again on another machine or install: `<corpus>/kr.jsonl` for a set the package
    ships (under `resources.data_dir()`), the file name for one built in the cache (`cache_dir()/kr/`),
    none for a user's own file (found by its path only)."""
    if path is None:
        return None
    path = Path(path)
    real = path.resolve()
    for source, root in (("shipped", resources.data_dir()), ("built", resources.cache_dir() / "kr")):
        try:
            name = real.relative_to(root.resolve()).as_posix()
            break
        except ValueError:
            continue
    else:
        source, name = "file", None
    return {"file": str(path), "sha256": _file_sha(real), "name": name, "source": source}


@functools.lru_cache(maxsize=16)
def _sha_once(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(Path(path))


def _file_sha(path: Path) -> str:
    """sha256 of a file, hashed once per (path, mtime, size): a run records its KR file after every stage."""
    stat = path.stat()
    return _sha_once(str(path), stat.st_mtime_ns, stat.st_size)


def find_kr_file(results: dict) -> Path | None:
    """The KR file a run was scored on, on this machine: the recorded path if its sha256 is the recorded
    one, else the set of that name the package ships (or the cache holds) with that sha256, so a run
    folder moved elsewhere or a package reinstalled at another path still finds its questions. None for a
    run without KR; a one-line FortifaiError when the file cannot be found or differs."""
    where = results.get("_path", "results.json")
    source, record = results.get("kr_source"), results.get("kr")
    if source is None and record is None:
        return None  # a toy run, or a collapse run without KR (eval.kr: null)
    if record is None:  # a run written before runs recorded the KR file's sha256: its path or nothing
        if not isinstance(source, str) or not source:
            raise FortifaiError(f"{where}: field kr_source must be the path of the KR question file, got {source!r}")
        if not Path(source).is_file():
            raise FortifaiError(f"{where}: its KR question file {source} is not on this machine, and the run "
                                "predates recording its name and sha256 (copy the file there, or publish where "
                                "the run was made)")
        return Path(source)
    recorded = Path(record["file"])
    if recorded.is_file() and _file_sha(recorded) == record["sha256"]:
        return recorded
    roots = {"shipped": resources.data_dir(), "built": resources.cache_dir() / "kr"}
    if record.get("name") and record.get("source") in roots:
        candidate = roots[record["source"]] / record["name"]
        if candidate.is_file() and _file_sha(candidate) == record["sha256"]:
            return candidate
        if candidate.is_file():
            raise FortifaiError(f"{where}: scored on {record['name']} with sha256 {record['sha256'][:12]}..., but "
                                f"{candidate} here has sha256 {_file_sha(candidate)[:12]}... (another version of "
                                "the KR set)")
    raise FortifaiError(f"{where}: its KR question file {record['file']} (sha256 {record['sha256'][:12]}...) is not "
                        "on this machine" + (f", nor is a set named {record['name']}" if record.get("name") else "")
                        + " (copy it there, or publish where the run was made)")
