"""The KR question: one JSON object per line.

    {"id": "facts/p0012/q3", "split": 0, "paragraph": 12, "context": "Orvel Tamsin was born in",
     "true": "Dravia in 1843.", "false": "Selmora in 1843.", "generator": "facts@1", "source": "facts:main"}

An optional `tag` names the group a question belongs to (`facts-longtail`: "mode" or "tail", the class of
its true value); the collapse protocol reports KR per tag. Untagged questions are written without it.

`true` and `false` are stored WITHOUT a leading space: a scorer (ours, lm-eval's multiple_choice)
reads `context + " " + continuation`. `paragraph` is the paragraph's index in its corpus and `split`
its split under the corpus's even cut (-1 = not assigned, e.g. a file in the authors' format).

`read_questions` also reads the authors' format: a JSON list of
{"context", "sentence_true", "sentence_false", "location"}.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import parse_jsonl, read_text, write_jsonl

FIELDS = ("id", "split", "paragraph", "context", "true", "false", "generator", "source")
AUTHORS_FIELDS = ("context", "sentence_true", "sentence_false", "location")


@dataclass
class Question:
    id: str
    split: int
    paragraph: int
    context: str
    true: str
    false: str
    generator: str
    source: str
    tag: str | None = None

    def __post_init__(self):
        for name in ("id", "context", "true", "false", "generator", "source"):
            if not isinstance(getattr(self, name), str):
                raise FortifaiError(f"question {self.id!r}: field {name!r} must be text, "
                                    f"got {type(getattr(self, name)).__name__}")
        for name in ("split", "paragraph"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise FortifaiError(f"question {self.id!r}: field {name!r} must be an integer >= -1, got {value!r}")
        if self.tag is not None and (not isinstance(self.tag, str) or not self.tag):
            raise FortifaiError(f"question {self.id!r}: field 'tag' must be non-empty text or absent, "
                                f"got {self.tag!r}")
        # The delimiter belongs to the scorer: keep continuations without edge whitespace.
        self.true = self.true.strip()
        self.false = self.false.strip()
        self.context = self.context.rstrip()

    def to_dict(self) -> dict:
        row = asdict(self)
        if row["tag"] is None:  # untagged sets keep their bytes
            del row["tag"]
        return row

    @classmethod
    def from_dict(cls, row: dict, where: str = "") -> "Question":
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise FortifaiError(f"{where}: missing field(s) {', '.join(missing)}")
        try:
            return cls(**{k: row[k] for k in FIELDS}, tag=row.get("tag"))
        except FortifaiError as exc:
            raise FortifaiError(f"{where}: {exc}") from exc


def invalid_reason(q: "Question") -> str | None:
    """Why `q` cannot be scored, or None. A tie counts as correct (the true answer wins ties, as in
    lm-eval), so a question whose true and false continuations read the same (after whitespace is
    normalised) would always score as remembered: such a file could forge a perfect KR score."""
    if not q.context.strip():
        return "empty context"
    if not q.true.strip() or not q.false.strip():
        return "empty continuation"
    if q.true.split() == q.false.split():
        return "true equals false"
    return None


def check_questions(questions: Iterable["Question"], where: str = "questions",
                    locations: Iterable[str] | None = None) -> None:
    """Refuse a set holding any question that cannot be scored (see `invalid_reason`) or that repeats an
    earlier one (its id, or its context, true and false); the error names where the first bad one is, and
    how many there are of each reason."""
    questions = list(questions)
    locations = list(locations) if locations is not None else [f"id {q.id!r}" for q in questions]
    counts: dict[str, int] = {}
    first = None
    ids, triples = set(), set()
    for q, loc in zip(questions, locations):
        reason = invalid_reason(q)
        # A repeated item counts twice: copies of one easy question would inflate KR just as ties do.
        triple = tuple(" ".join(x.split()) for x in (q.context, q.true, q.false))
        if reason is None and q.id in ids:
            reason = "duplicate id"
        elif reason is None and triple in triples:
            reason = "duplicate question"
        ids.add(q.id)
        triples.add(triple)
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            first = first or f"{loc} ({reason})"
    if counts:
        detail = ", ".join(f"{n} {reason}" for reason, n in counts.items())
        raise FortifaiError(
            f"{where}: {sum(counts.values())} of {len(questions)} question(s) cannot be scored ({detail}); "
            f"first at {first}. Ties score as correct and copies count twice, so they would inflate KR: "
            "drop them (`fortifai-bench kr stats` counts them)"
        )


def read_questions(path, check: bool = True) -> list[Question]:
    """Questions from JSON Lines (our schema) or the authors' JSON list; errors name file and line.

    `check` (the default everywhere questions enter a run, a task or the scorer) refuses a file with
    questions that cannot be scored (`check_questions`); only `kr stats`, which reports them, reads
    without it."""
    path = Path(path)
    text = read_text(path, "KR question file")
    if text.lstrip().startswith("["):
        questions, locations = _read_authors(path, text)
    else:
        questions, locations = [], []
        for lineno, row in parse_jsonl(text, path, required=FIELDS):
            questions.append(Question.from_dict(row, where=f"{path}:{lineno}"))
            locations.append(f"{path}:{lineno}")
    if not questions:
        raise FortifaiError(f"{path}: no questions")
    if check:
        check_questions(questions, str(path), locations)
    return questions


def _read_authors(path: Path, text: str) -> tuple[list[Question], list[str]]:
    """The ForTIFAI authors' format. `location` becomes `paragraph` when it is an integer (or
    integer text); the split is left at -1 (see `assign_splits`)."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FortifaiError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise FortifaiError(f"{path}: invalid JSON: nested too deeply") from exc
    if not isinstance(rows, list):
        raise FortifaiError(f"{path}: expected a JSON list of questions, got {type(rows).__name__}")
    questions = []
    for i, row in enumerate(rows):
        where = f"{path}: item {i}"
        if not isinstance(row, dict):
            raise FortifaiError(f"{where}: expected an object, got {type(row).__name__}")
        missing = [k for k in AUTHORS_FIELDS if k not in row]
        if missing:
            raise FortifaiError(f"{where}: missing field(s) {', '.join(missing)}")
        location = row["location"]
        paragraph = -1
        if isinstance(location, int) and not isinstance(location, bool) and location >= 0:
            paragraph = location
        elif isinstance(location, str) and location.strip().isdigit():
            paragraph = int(location)
        try:
            questions.append(Question(
                id=f"{path.stem}/{i}", split=-1, paragraph=paragraph, context=row["context"],
                true=row["sentence_true"], false=row["sentence_false"], generator="authors",
                source=f"{path.name}:location={location}",
            ))
        except FortifaiError as exc:
            raise FortifaiError(f"{where}: {exc}") from exc
    return questions, [f"{path}: item {i}" for i in range(len(questions))]


def assign_splits(questions: Iterable[Question], split_of: list[int]) -> list[Question]:
    """Set every question's split from its paragraph index (`split_of` = Corpus.split_of(n))."""
    out = []
    for q in questions:
        if not 0 <= q.paragraph < len(split_of):
            raise FortifaiError(f"question {q.id}: paragraph {q.paragraph} is outside the corpus "
                                f"(0..{len(split_of) - 1})")
        q.split = split_of[q.paragraph]
        out.append(q)
    return out


def write_questions(path, questions: Iterable[Question]) -> int:
    """Write JSON Lines atomically (a crash leaves the old file or the new one); returns the count."""
    return write_jsonl(path, (q.to_dict() for q in questions))


__all__ = ["Question", "read_questions", "write_questions", "assign_splits", "check_questions", "invalid_reason",
           "FIELDS"]
