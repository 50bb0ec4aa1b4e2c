"""Quality filter and report for KR questions, applied by every generator before writing.

A question is dropped when
- `empty`:     its context, true or false continuation is empty (after stripping);
- `identical`: true equals false (after normalizing whitespace);
- `long_diff`: the two continuations differ in more than `max_diff_words` words: after removing
               the words they share at the start and at the end, the longer middle is too long
               (a false continuation must differ only in a fact, not be another sentence);
- `duplicate`: the same (context, true, false) as an earlier question (the first one is kept).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_DIFF_WORDS = 6
REASONS = ("empty", "identical", "long_diff", "duplicate")


def diff_span(a: str, b: str) -> tuple[list[str], list[str]]:
    """The differing middle words of `a` and `b` (common word prefix and suffix removed)."""
    x, y = a.split(), b.split()
    i = 0
    while i < min(len(x), len(y)) and x[i] == y[i]:
        i += 1
    j = 0
    while j < min(len(x), len(y)) - i and x[-1 - j] == y[-1 - j]:
        j += 1
    return x[i:len(x) - j], y[i:len(y) - j]


def problem(q, max_diff_words: int = MAX_DIFF_WORDS) -> str | None:
    """The first reason to drop `q` on its own (duplicates need the whole set), or None."""
    if not q.context.strip() or not q.true.strip() or not q.false.strip():
        return "empty"
    if q.true.split() == q.false.split():
        return "identical"
    a, b = diff_span(q.true, q.false)
    if max(len(a), len(b)) > max_diff_words:
        return "long_diff"
    return None


@dataclass
class QualityReport:
    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason -> id of the first question dropped for it

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": {r: self.dropped.get(r, 0) for r in REASONS},
                "examples": dict(self.examples)}

    def format(self) -> str:
        parts = [f"{r} {self.dropped.get(r, 0)}" for r in REASONS]
        lines = [f"quality: {self.kept} of {self.total} kept; dropped: " + ", ".join(parts)]
        for reason, qid in self.examples.items():
            lines.append(f"  first {reason}: {qid}")
        return "\n".join(lines)


def filter_questions(questions, max_diff_words: int = MAX_DIFF_WORDS):
    """(kept questions in their order, QualityReport)."""
    report = QualityReport()
    kept, seen = [], set()
    for q in questions:
        report.total += 1
        reason = problem(q, max_diff_words)
        if reason is None:
            key = (" ".join(q.context.split()), " ".join(q.true.split()), " ".join(q.false.split()))
            if key in seen:
                reason = "duplicate"
            seen.add(key)
        if reason:
            report.dropped[reason] += 1
            report.examples.setdefault(reason, q.id)
            continue
        kept.append(q)
    report.kept = len(kept)
    return kept, report
