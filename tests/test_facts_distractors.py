"""The shipped facts questions cannot be answered from the context alone (issue: death-year distractors
before the birth year). For every attribute, rules that see only the context and the two candidates score
within the binomial 95% band around chance."""

from __future__ import annotations

import math
import re
from collections import defaultdict

import pytest

from fortifai_bench.corpora import get_corpus
from fortifai_bench.kr import read_questions
from fortifai_bench.resources import data_dir


def _named(value: str, context: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", context) is not None


def _value(continuation: str) -> str:
    return continuation.split(" by ")[0].split(" metres")[0].split(" kilometres")[0].split(" thousand")[0] \
        .split(" workers")[0].split(" children")[0].rstrip(".").removesuffix(" River")


def _years(text: str) -> list[int]:
    return [int(y) for y in re.findall(r"(?<!\d)(1[789]\d\d)(?!\d)", text)]


def rule_named_in_context(q) -> float:
    """Prefer the candidate the context already names."""
    t, f = _named(_value(q.true), q.context), _named(_value(q.false), q.context)
    return 0.5 if t == f else float(t)


def rule_plausible_year(q) -> float:
    """For a year after a year the context states: prefer the one 30-80 years later (a lifespan)."""
    years = _years(q.context)
    tv, fv = _value(q.true), _value(q.false)
    if not years or not (tv.isdigit() and fv.isdigit()):
        return 0.5
    ok = [years[-1] + 30 <= int(v) <= years[-1] + 80 for v in (tv, fv)]
    return 0.5 if ok[0] == ok[1] else float(ok[0])


def rule_later_than_context(q) -> float:
    """Prefer the year that is not before any year in the context."""
    years = _years(q.context)
    tv, fv = _value(q.true), _value(q.false)
    if not years or not (tv.isdigit() and fv.isdigit()):
        return 0.5
    ok = [int(v) > max(years) for v in (tv, fv)]
    return 0.5 if ok[0] == ok[1] else float(ok[0])


@pytest.mark.parametrize("rule", [rule_named_in_context, rule_plausible_year, rule_later_than_context])
def test_no_context_only_rule_beats_chance(rule):
    corpus = get_corpus("facts")
    questions = read_questions(data_dir() / "facts" / "kr.jsonl")
    by_attr = defaultdict(list)
    for q in questions:
        k = int(q.id.rsplit("/q", 1)[1].split(".")[0])
        by_attr[corpus.paragraphs[q.paragraph].meta["facts"][k]["attribute"]].append(rule(q))
    assert len(by_attr) >= 20
    for attr, scores in by_attr.items():
        n = len(scores)
        band = 1.96 * math.sqrt(0.25 / n)
        acc = sum(scores) / n
        assert abs(acc - 0.5) <= band, f"{rule.__name__} scores {acc:.3f} on {attr} (n={n}, band +-{band:.3f})"
