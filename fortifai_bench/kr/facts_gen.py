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

Each fact gets DISTRACTORS questions, one per false value. A fact the model has lost (its training text
was corrupted) is a coin flip between two values it does not know; averaging several such flips per fact
shrinks that part of KR's sampling noise, which is what lets a few seeds resolve a time to failure
(benchmarks/collapse_regimes.py). KR-split-0 is still the share of correct questions.

On a corpus whose categorical facts carry a frequency class (`facts-longtail`: `"frequency": "mode"` or
`"tail"` in their meta, see `fortifai_bench.corpora.facts`), only those facts are asked about, every
question is tagged with its true value's class, and the false values come from the OTHER class: a tail
fact's false continuations are mode values, so a model that collapses toward the mode picks them; a mode
fact's are tail values, so a loss cannot win on the tail by merely flattening its distribution (mode KR
must hold). The pools and their order are the same as above, restricted to that class.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from fortifai_bench.corpora.facts import DERIVED
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import Question

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


def _distractors(rng, value, candidates_in_order, allowed, n: int) -> list[str]:
    """Up to `n` distinct false values, from the first pools on (the closest to the true value's)."""
    out: list[str] = []
    for candidates in candidates_in_order:
        others = sorted(v for v in candidates - {value} - set(out) if allowed(v))  # sorted: set order varies
        out += rng.sample(others, min(n - len(out), len(others)))
        if len(out) == n:
            break
    return out


def _plausible(p, f, context: str):
    """Which false values the context alone cannot rule out: never a value the context already names,
    and for a derived attribute (a death year) only values in the range the context implies (30-80
    years after the birth year it states), as the true values are."""
    by_attr = {x["attribute"]: x["value"] for x in p.meta["facts"]}
    def named(v):  # as a whole word or name, not inside another number ("4" in "1843")
        return re.search(rf"(?<!\w){re.escape(v)}(?!\w)", context) is not None

    rule = DERIVED.get(f["attribute"])
    if rule is None:
        return lambda v: not named(v)
    base, lo, hi = rule
    start = int(by_attr[base])
    return lambda v: not named(v) and start + lo <= int(v) <= min(start + hi, 1999)


DISTRACTORS = 3  # false values per fact: averages out the coin flip of a forgotten fact (see module doc)


def generate_facts(corpus, n_splits: int, *, max_per_paragraph: int = 5, distractors: int = DISTRACTORS,
                   seed: int = 0, source: str | None = None) -> list:
    """Questions on up to `max_per_paragraph` facts per paragraph, `distractors` questions per fact (one
    false value each), split assigned (`corpus.split_of(n_splits)`)."""
    if max_per_paragraph < 1 or distractors < 1:
        raise FortifaiError(f"facts generator: max_per_paragraph and distractors must be >= 1, got "
                            f"{max_per_paragraph} and {distractors}")
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
    classes = _classes(paragraphs)
    source = source or f"{corpus.name}:{corpus.part}"
    questions = []
    for index, p in enumerate(paragraphs):
        facts = p.meta["facts"]
        rng = random.Random(f"{GENERATOR}:{seed}:{p.id}")
        # a long-tail corpus is asked about its classed (categorical) facts only; k stays the fact's index
        askable = [k for k, f in enumerate(facts) if "frequency" in f] if classes else range(len(facts))
        chosen = sorted(rng.sample(askable, min(max_per_paragraph, len(askable))))
        kind, split = p.meta["kind"], split_of[index]
        for k in chosen:
            f = facts[k]
            context = p.text[:f["start"]]
            allowed = _plausible(p, f, context)
            tag = f.get("frequency")
            if tag is not None:  # false values of the other class only (module doc)
                allowed = _other_class(allowed, classes, f["slot"], tag)
            false_values = _distractors(rng, f["value"], [
                by_attr[(split, kind, f["attribute"])], by_slot[(split, f["slot"])], anywhere[(kind, f["attribute"])],
                by_slot_anywhere[f["slot"]],
            ], allowed, distractors)
            rest = p.text[f["end"]:f["sentence_end"]]
            for j, false_value in enumerate(false_values):  # none: no other paragraph varies it, no honest form
                questions.append(Question(
                    id=f"{p.id}/q{k}" + (f".{j}" if j else ""), split=split, paragraph=index, context=context,
                    true=f["value"] + rest, false=false_value + rest, generator=GENERATOR, source=source, tag=tag,
                ))
    return questions


def _classes(paragraphs) -> dict[tuple[str, str], str]:
    """(slot, value) -> "mode" or "tail" for every classed fact of the corpus (empty: a uniform corpus)."""
    classes: dict[tuple[str, str], str] = {}
    for p in paragraphs:
        for f in p.meta["facts"]:
            if "frequency" in f:
                seen = classes.setdefault((f["slot"], f["value"]), f["frequency"])
                if seen != f["frequency"]:
                    raise FortifaiError(f"facts generator: paragraph {p.id}: {f['slot']} value {f['value']!r} is "
                                        f"{f['frequency']!r} here but {seen!r} elsewhere")
    return classes


def _other_class(allowed, classes, slot: str, tag: str):
    return lambda v: allowed(v) and classes.get((slot, v), tag) != tag
