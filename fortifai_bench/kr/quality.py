"""Quality filter and report for KR questions, applied by every generator before writing (`kr build`); on a
file given to `kr stats` the same rules only describe it (`describe_quality`).

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


def describe_quality(questions, max_diff_words: int = MAX_DIFF_WORDS) -> dict:
    """What the rules above say about a file's distinct questions (`kr stats`): how many meet them all and how
    many break each. A description: a file given to kr_file is scored whole (empty and identical items
    excepted, which no scorer can score); only `kr build` drops what breaks a rule, from its own output."""
    _, report = filter_questions(questions, max_diff_words)
    return {"questions": report.total, "meet_all": report.kept, "max_diff_words": max_diff_words,
            "break": {r: report.dropped.get(r, 0) for r in REASONS if r != "duplicate"},
            "examples": dict(report.examples)}


def format_quality(q: dict) -> str:
    b = q["break"]
    return (f"quality rules (of kr build; they describe the file, kr_file scores every question): "
            f"{q['meet_all']} of {q['questions']} distinct questions meet them all; empty {b['empty']}, "
            f"identical {b['identical']} (neither can be scored), long_diff {b['long_diff']} "
            f"(more than {q['max_diff_words']} differing words)")


# --------------------------------------------------------------------------------------- chance level
#
# A summed log-likelihood scorer prefers the continuation with fewer tokens, so on a set where the true
# continuation is systematically longer (or shorter) than the false one, "chance" is not 0.5: a model that
# knows nothing scores what a length-only guesser scores. Every KR set should state it.


def _length_counts(pairs) -> dict:
    """Shares of (true, false) length pairs where true is longer / shorter / as long, and the guessers."""
    n = len(pairs)
    longer = sum(1 for t, f in pairs if t > f)
    shorter = sum(1 for t, f in pairs if t < f)
    ties = n - longer - shorter
    out = {"true_longer": longer / n, "true_shorter": shorter / n, "ties": ties / n,
           # "pick the shorter continuation" is what an untrained summed-log-likelihood scorer leans to
           "shorter_guess_acc": (shorter + ties / 2) / n,
           "longer_guess_acc": (longer + ties / 2) / n}
    out["length_only_acc"] = max(out["shorter_guess_acc"], out["longer_guess_acc"])
    return {k: round(v, 4) for k, v in out.items()}


def _token_count(tokenizer, text: str) -> int:
    # The scorer reads context + " " + continuation; the continuation's tokens start with that space.
    return len(tokenizer(" " + text, add_special_tokens=False)["input_ids"])


def length_bias(questions, tokenizer=None) -> dict:
    """The chance level of a KR set, as a length-only guesser sees it.

    Returns {"questions": n, "chars": {...}, "tokens": {...} or None}, each part holding
    `true_longer`, `true_shorter`, `ties` (shares of the items), `shorter_guess_acc` (accuracy of
    always picking the shorter continuation, ties split evenly: where an untrained model's `acc`
    tends to sit), `longer_guess_acc`, and `length_only_acc` (the better of the two: the best score
    reachable from length alone). `tokens` counts the continuation's tokens (with its leading space)
    under `tokenizer` (a Hugging Face tokenizer), when one is given. A length-symmetric set gives
    0.5 everywhere.
    """
    questions = list(questions)
    if not questions:
        raise ValueError("length_bias: no questions")
    out = {"questions": len(questions),
           "chars": _length_counts([(len(q.true), len(q.false)) for q in questions]), "tokens": None}
    if tokenizer is not None:
        out["tokens"] = _length_counts([(_token_count(tokenizer, q.true), _token_count(tokenizer, q.false))
                                        for q in questions])
    return out


def format_length_bias(bias: dict) -> str:
    lines = []
    for unit in ("chars", "tokens"):
        b = bias.get(unit)
        if b:
            lines.append(f"chance ({unit}): true longer {b['true_longer']:.1%}, shorter {b['true_shorter']:.1%}, "
                         f"ties {b['ties']:.1%}; pick-the-shorter guesser {b['shorter_guess_acc']:.3f}, "
                         f"best length-only guesser {b['length_only_acc']:.3f}")
    return "\n".join(lines)


def calibrated_kr(result, base) -> dict:
    """KR of a model calibrated by a base model scored on the same questions (same order).

    `result` and `base` carry per-question `logp_true` and `logp_false` (e.g. two
    `fortifai_bench.kr.scoring.ScoreResult`s). The margin of a question is logp_true - logp_false.
    Returns {"acc": share with margin > 0, "base_acc": the same for the base model,
    "acc_over_base": share of questions where the model's margin exceeds the base model's (ties count
    half), i.e. the accuracy after subtracting the base model's log-likelihood difference, "questions": n}.
    What the base model already preferred (by length, by frequency of the words) cancels: a model no
    better than its base scores about 0.5 on `acc_over_base` whatever the set's length bias; a model
    that learnt the facts scores above 0.5, one that forgot what its base knew scores below.
    """
    m = [t - f for t, f in zip(result.logp_true, result.logp_false, strict=True)]
    b = [t - f for t, f in zip(base.logp_true, base.logp_false, strict=True)]
    if len(m) != len(b) or not m:
        raise ValueError(f"calibrated_kr: {len(m)} scored questions against {len(b)} for the base model")
    ids, base_ids = getattr(result, "ids", None), getattr(base, "ids", None)
    if ids is not None and base_ids is not None and list(ids) != list(base_ids):
        raise ValueError("calibrated_kr: the model and the base model were scored on different questions")
    n = len(m)
    return {"questions": n, "acc": sum(x > 0 for x in m) / n, "base_acc": sum(x > 0 for x in b) / n,
            "acc_over_base": sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(m, b)) / n}
