"""`facts` generator: exact KR questions from the facts corpus's ground truth.

For a fact at characters [start, end) of a paragraph, ending its sentence at `sentence_end`:
    context = text[:start]                        ("... Orvel Tamsin was born in")
    true    = text[start:sentence_end]            ("Dravia in 1843.")
    false   = distractor + text[end:sentence_end] ("Selmora in 1843.")

The distractor is another value of the SAME attribute found in the SAME split (falling back to the
same slot type in that split, then the same attribute anywhere in the corpus). A prototype that drew
false values from anywhere leaked a signal: "this value was seen in training" scored 0.79 before
anything was memorized. Drawn from the same split and slot, both values were seen equally often in
training, and splits the model never saw scored 0.50. A false value is never one the context already
names, and a death year's distractor lies 30-80 years after the birth year the context gives, as true
death years do (version 1 let 24 of split 0's 35 death-year distractors be rejected from the context).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from fortifai_bench.errors import FortifaiError

VERSION = 2  # 2: distractors the context cannot rule out (death years in the implied range)
GENERATOR = f"facts@{VERSION}"


def _pools(paragraphs, split_of):
    by_attr, by_slot, anywhere = defaultdict(set), defaultdict(set), defaultdict(set)
    for index, p in enumerate(paragraphs):
        for f in p.meta["facts"]:
            by_attr[(split_of[index], p.meta["kind"], f["attribute"])].add(f["value"])
            by_slot[(split_of[index], f["slot"])].add(f["value"])
            anywhere[(p.meta["kind"], f["attribute"])].add(f["value"])
    return by_attr, by_slot, anywhere


def _distractor(rng, value, candidates_in_order, allowed=lambda v: True):
    for candidates in candidates_in_order:
        others = sorted(v for v in candidates - {value} if allowed(v))  # sorted: set order is not stable
        if others:
            return rng.choice(others)
    return None


def _plausible(p, f, context: str):
    """Which false values the context alone cannot rule out: never a value the context already names,
    and for a derived attribute (a death year) only values in the range the context implies (30-80
    years after the birth year it states), as the true values are."""
    from fortifai_bench.corpora.facts import DERIVED

    by_attr = {x["attribute"]: x["value"] for x in p.meta["facts"]}
    def named(v):  # as a whole word or name, not inside another number ("4" in "1843")
        return re.search(rf"(?<!\w){re.escape(v)}(?!\w)", context) is not None

    rule = DERIVED.get(f["attribute"])
    if rule is None:
        return lambda v: not named(v)
    base, lo, hi = rule
    start = int(by_attr[base])
    return lambda v: not named(v) and start + lo <= int(v) <= min(start + hi, 1999)


def generate_facts(corpus, n_splits: int, *, max_per_paragraph: int = 5, seed: int = 0,
                   source: str | None = None) -> list:
    """Up to `max_per_paragraph` questions per paragraph, split assigned (`corpus.split_of(n_splits)`)."""
    from fortifai_bench.kr.schema import Question

    if max_per_paragraph < 1:
        raise FortifaiError(f"facts generator: max_per_paragraph must be >= 1, got {max_per_paragraph}")
    paragraphs = corpus.paragraphs
    for p in paragraphs:
        if not isinstance(p.meta.get("facts"), list) or "kind" not in p.meta:
            raise FortifaiError(f"facts generator needs the facts corpus (ground truth in meta); "
                                f"paragraph {p.id} of {corpus.name} has none: use --generator rules")
    split_of = corpus.split_of(n_splits)
    by_attr, by_slot, anywhere = _pools(paragraphs, split_of)
    by_slot_anywhere = defaultdict(set)
    for (_, slot), values in by_slot.items():
        by_slot_anywhere[slot] |= values
    source = source or f"{corpus.name}:{corpus.part}"
    questions = []
    for index, p in enumerate(paragraphs):
        facts = p.meta["facts"]
        rng = random.Random(f"{GENERATOR}:{seed}:{p.id}")
        chosen = sorted(rng.sample(range(len(facts)), min(max_per_paragraph, len(facts))))
        kind, split = p.meta["kind"], split_of[index]
        for k in chosen:
            f = facts[k]
            context = p.text[:f["start"]]
            false_value = _distractor(rng, f["value"], [
                by_attr[(split, kind, f["attribute"])], by_slot[(split, f["slot"])], anywhere[(kind, f["attribute"])],
                by_slot_anywhere[f["slot"]],
            ], _plausible(p, f, context))
            if false_value is None:  # a value no other paragraph varies: no honest false form
                continue
            rest = p.text[f["end"]:f["sentence_end"]]
            questions.append(Question(
                id=f"{p.id}/q{k}", split=split, paragraph=index, context=context,
                true=f["value"] + rest, false=false_value + rest, generator=GENERATOR, source=source,
            ))
    return questions
