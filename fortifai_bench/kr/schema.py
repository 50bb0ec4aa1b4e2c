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
from dataclasses import asdict, dataclass
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


DUPLICATES = ("refuse", "once", "as_in_file")  # what a reader does with repeated questions (see read_questions)


def question_key(q: "Question") -> tuple:
    """What makes two items the same question: context, true and false, whitespace normalised (not the id,
    split or location: the authors' file repeats one question at many locations)."""
    return tuple(" ".join(x.split()) for x in (q.context, q.true, q.false))


@dataclass
class Duplicates:
    """How often a file repeats its questions: `items` in the file, `distinct` questions among them, and
    every repeated one (`repeated`: first id, times, share of the items, its context), most repeated first."""

    items: int
    distinct: int
    repeated: list

    @property
    def copies(self) -> int:
        return self.items - self.distinct

    def to_dict(self) -> dict:
        return {"items": self.items, "distinct": self.distinct, "copies": self.copies,
                "repeated_questions": len(self.repeated), "repeated": self.repeated}

    def format(self, top: int = 3) -> str:
        """One line: e.g. `4880 items, 952 distinct questions; 8 repeated questions make up 3936 items (80.7%):
        id 'x/1' 492 times (10.1%) "Context...", ...`."""
        if not self.repeated:
            return f"{self.items} items, all distinct"
        in_repeats = sum(r["count"] for r in self.repeated)
        shown = "; ".join(f"id {r['id']!r} {r['count']} times ({r['share']:.1%}) {r['context']!r}"
                          for r in self.repeated[:top])
        more = f"; {len(self.repeated) - top} more repeated" if len(self.repeated) > top else ""
        return (f"{self.items} items, {self.distinct} distinct questions; {len(self.repeated)} repeated "
                f"question(s) make up {in_repeats} items ({in_repeats / self.items:.1%}): {shown}{more}")


def find_duplicates(questions: Iterable["Question"]) -> tuple[list["Question"], Duplicates]:
    """(the first item of every distinct question, in file order; the Duplicates report)."""
    questions = list(questions)
    first: dict[tuple, Question] = {}
    count: dict[tuple, int] = {}
    for q in questions:
        key = question_key(q)
        first.setdefault(key, q)
        count[key] = count.get(key, 0) + 1
    n = len(questions)
    repeated = sorted(((k, c) for k, c in count.items() if c > 1), key=lambda kc: (-kc[1], first[kc[0]].id))
    report = Duplicates(items=n, distinct=len(first), repeated=[
        {"id": first[k].id, "count": c, "share": round(c / n, 4), "context": _short(first[k].context)}
        for k, c in repeated])
    return list(first.values()), report


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def check_questions(questions: Iterable["Question"], where: str = "questions",
                    locations: Iterable[str] | None = None, duplicates: str = "refuse") -> None:
    """Refuse a set holding any question that cannot be scored (see `invalid_reason`), an id used by two
    different questions, or (with duplicates="refuse") a question repeated; the error names where the first
    bad one is and how many there are of each reason, and for repeats the exact duplicate report."""
    if duplicates not in DUPLICATES:
        raise FortifaiError(f"duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
    questions = list(questions)
    locations = list(locations) if locations is not None else [f"id {q.id!r}" for q in questions]
    counts: dict[str, int] = {}
    first = first_copy = None
    ids: dict[str, tuple] = {}
    seen: set[tuple] = set()
    for q, loc in zip(questions, locations):
        reason = invalid_reason(q)
        key = question_key(q)
        if reason is None and ids.get(q.id, key) != key:
            reason = "duplicate id (of a different question)"
        ids.setdefault(q.id, key)
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            first = first or f"{loc} ({reason})"
        elif key in seen:
            first_copy = first_copy or loc
        seen.add(key)
    if counts:
        detail = ", ".join(f"{n} {reason}" for reason, n in counts.items())
        raise FortifaiError(
            f"{where}: {sum(counts.values())} of {len(questions)} question(s) cannot be scored ({detail}); "
            f"first at {first}. Ties score as correct, so they would inflate KR: drop them "
            "(`fortifai-bench kr stats` counts them)"
        )
    if duplicates == "refuse" and first_copy is not None:
        _, report = find_duplicates(questions)
        raise FortifaiError(
            f"{where}: {report.copies} of {report.items} item(s) cannot be scored here ({report.copies} duplicate "
            f"question(s): copies would count one question several times); first at {first_copy}. "
            f"{report.format()}. lm-eval's kr_file scores such a file (each question once by default, or every "
            "item as in the file with --metadata '{\"duplicates\": \"as_in_file\"}')")


def read_questions(path, check: bool = True, duplicates: str = "refuse") -> list[Question]:
    """Questions from JSON Lines (our schema) or the authors' JSON list; errors name file and line.

    `check` (the default everywhere questions enter a run, a task or the scorer) refuses a file with
    questions that cannot be scored (`check_questions`); only `kr stats`, which reports them, reads
    without it. `duplicates`: what to do with a question the file repeats (the same context, true and
    false): "refuse" (the collapse protocol, the board), "once" (keep its first item; `find_duplicates`
    reports what was merged) or "as_in_file" (keep every item: the authors' own weighting)."""
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
        check_questions(questions, str(path), locations, duplicates)
    if duplicates == "once":
        questions = find_duplicates(questions)[0]
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
           "find_duplicates", "Duplicates", "question_key", "DUPLICATES", "FIELDS"]
