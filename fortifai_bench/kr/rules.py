"""`rules` generator: offline, deterministic KR questions from any corpus, no model.

For a sentence s_i of a paragraph (i >= 1):
    context = s_{i-1}, or s_{i-2} s_{i-1} when s_{i-1} is short (under 12 words)
    true    = s_i
    false   = s_i with ONE fact changed, chosen in this order of preference:
      1. a number, year, ordinal, number word or month replaced by a plausible different one
         (a year moves by 1-9 years, a small count stays small, a month becomes another month);
      2. a named entity (a run of capitalized words, not the sentence's first word) replaced by
         another run with as many words from the same article (from the whole corpus when the
         corpus has no articles), preferring one that followed the same word ("in X", "by X"), a
         cheap stand-in for "an entity of the same kind";
      3. a safe negation: the first is/was/are/were of a sentence without any negation gets "not".
So true and false differ only in the changed span and both read as the corpus does. Every choice
is drawn from a random generator seeded by the paragraph id and sentence number: same corpus,
same questions. Works on WikiText's spaced punctuation (` , `, ` . `, ` @-@ `) and on plain text.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass, field

from fortifai_bench.errors import FortifaiError

VERSION = 1
GENERATOR = f"rules@{VERSION}"
MIN_WORDS, MAX_WORDS, MAX_CONTEXT_WORDS, SHORT_CONTEXT = 5, 50, 80, 12

ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "no", "mt", "ft", "gen", "col", "lt",
                 "sgt", "capt", "prof", "inc", "ltd", "co", "fig", "vol", "pp", "approx", "e.g", "i.e", "u.s"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
NEGATIONS = {"not", "n't", "never", "no", "nor", "cannot", "nothing", "none", "neither"}
# Capitalized words that are not entities: replacing them would not change a fact.
NOT_ENTITIES = set(MONTHS) | set(WEEKDAYS) | {"I", "The", "A", "An", "He", "She", "It", "They", "We", "His", "Her",
                                              "Its", "Their", "This", "That", "These", "Those", "In", "On", "At"}

# Sentence ends: . ! ? (optionally closed by quotes/brackets), whitespace, then a capital, digit or quote.
_SENT_END = re.compile(r"""(?<=[.!?])["')\]]*\s+(?=["'(\[]?[A-Z0-9])""")
# A whole number, not the tail of a decimal or thousands group ("0.5", "1,000", WikiText's "5 @.@ 4").
_NUMBER = re.compile(r"(?<![\w.,@\-/])(?<!@ )\d+(?![\w]|[.,:/]\d)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_ORD_WORD = re.compile(r"\b(?:the|his|her|its|their|a) (" + "|".join(ORDINAL_WORDS) + r") (?=[a-z])")
_NUM_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r") (?=[a-z])")
_MONTH = re.compile(r"\b(" + "|".join(MONTHS) + r")\b")
_ENTITY = re.compile(r"\b[A-Z][a-z]+(?:[ \-][A-Z][a-z]+)*\b")
_NEGATABLE = re.compile(r"\b(is|was|are|were) (?=[a-z])")


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph; a period after a known abbreviation or an initial does not end one."""
    sentences, start = [], 0
    for m in _SENT_END.finditer(text):
        before = text[start:m.start()].rstrip("\"')]")
        last = before.split()[-1] if before.split() else ""
        word = last[:-1].lower() if last.endswith(".") else ""
        if word and (word in ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
            continue  # "Dr. Smith", "H. americanus"
        sentences.append(text[start:m.start() + len(m.group(0).rstrip())].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def _ordinal_suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _other_number(rng, n: int) -> int:
    if 1000 <= n <= 2099:  # a year: a few years off
        return n + rng.choice((-1, 1)) * rng.randint(1, 9)
    if n <= 12:
        return rng.choice([k for k in range(1, 13) if k != n])
    if n <= 31:
        return rng.choice([k for k in range(13, 29) if k != n])
    factor = rng.choice((0.5, 0.6, 0.7, 0.8, 1.25, 1.5, 2.0))
    m = int(round(n * factor))
    return m if m != n else n + 1


def _fact_edits(rng, s: str) -> list[tuple[int, int, str, str]]:
    """(start, end, replacement, kind) for numbers, years, ordinals, number words, months."""
    edits = []
    for m in _ORDINAL.finditer(s):
        n = int(m.group(1))
        k = rng.choice([x for x in range(1, 21) if x != n])
        edits.append((m.start(), m.end(), f"{k}{_ordinal_suffix(k)}", "ordinal"))
    taken = {(a, b) for a, b, _, _ in edits}
    for m in _NUMBER.finditer(s):
        text = m.group(0)
        if (len(text) > 1 and text.startswith("0")) or any(a <= m.start() < b for a, b in taken):
            continue
        n = int(text)
        if n == 0:
            continue
        kind = "year" if len(text) == 4 and 1000 <= n <= 2099 else "number"
        edits.append((m.start(), m.end(), str(_other_number(rng, n)), kind))
    for m in _ORD_WORD.finditer(s):
        w = m.group(1)
        edits.append((m.start(1), m.end(1), rng.choice([x for x in ORDINAL_WORDS if x != w]), "ordinal"))
    for m in _NUM_WORD.finditer(s):
        w = m.group(1)
        edits.append((m.start(1), m.end(1), rng.choice([x for x in NUMBER_WORDS if x != w]), "number"))
    for m in _MONTH.finditer(s):
        if m.group(1) == "May" and not re.match(r"\s+\d", s[m.end():]) and not re.search(r"\d\s+$", s[:m.start()]):
            continue  # "May" is a month only beside a day number
        edits.append((m.start(), m.end(), rng.choice([x for x in MONTHS if x != m.group(1)]), "month"))
    return edits


def _entity_runs(s: str, lowercase: set) -> list[tuple[int, int, str, str]]:
    """(start, end, run, previous word) for capitalized runs, the sentence's first word excluded.

    A one-word run counts only if the corpus never writes it in lower case ("Large", "Following"
    are ordinary words at a sentence or title start; "Belknap" is a name).
    """
    runs = []
    for m in _ENTITY.finditer(s):
        start, run = m.start(), m.group(0)
        if start == 0 or not s[:start].strip():
            words = run.split(" ", 1)
            if len(words) == 1:
                continue
            start, run = start + len(words[0]) + 1, words[1]
        if run in NOT_ENTITIES or (" " not in run and "-" not in run and run.lower() in lowercase):
            continue
        prev = s[:start].split()[-1].lower() if s[:start].split() else ""
        runs.append((start, start + len(run), run, prev))
    return runs


# Previous words that say nothing about what kind of entity follows.
_VAGUE = {"the", "a", "an", "and", "of", ",", "(", '"', "'s", "to", "with", "for", "as", "or", "that", "which"}


@dataclass
class EntityPools:
    """Capitalized runs seen in the corpus, keyed for "same kind" look-ups (dicts as ordered sets)."""

    lowercase: set = field(default_factory=set)                       # words the corpus writes in lower case
    article_prev: dict = field(default_factory=lambda: defaultdict(dict))  # (article, words, prev) -> runs
    corpus_prev: dict = field(default_factory=lambda: defaultdict(dict))   # (words, prev) -> runs
    article_len: dict = field(default_factory=lambda: defaultdict(dict))   # (article, words) -> runs


def entity_pools(paragraphs) -> EntityPools:
    pools = EntityPools()
    for p in paragraphs:
        pools.lowercase.update(w for w in p.text.split() if w.islower())
    for p in paragraphs:
        key = p.meta.get("article")
        for s in split_sentences(p.text):
            for _, _, run, prev in _entity_runs(s, pools.lowercase):
                n = len(run.split())
                pools.article_prev[(key, n, prev)][run] = None
                pools.corpus_prev[(n, prev)][run] = None
                pools.article_len[(key, n)][run] = None
    return pools


def _entity_edits(rng, s: str, key, pools: EntityPools) -> list[tuple[int, int, str, str]]:
    """Replace a run by one of the same length that followed the same word in the same article,
    else anywhere in the corpus (when that word says something: "in", "by", "journalist"), else
    any run of the same length in the same article."""
    edits = []
    for start, end, run, prev in _entity_runs(s, pools.lowercase):
        n = len(run.split())
        tiers = [pools.article_prev.get((key, n, prev), {})]
        if prev not in _VAGUE:
            tiers.append(pools.corpus_prev.get((n, prev), {}))
        if key is not None:
            tiers.append(pools.article_len.get((key, n), {}))
        for pool in tiers:
            candidates = [c for c in pool if c != run and c not in s]
            if candidates:
                edits.append((start, end, rng.choice(candidates), "entity"))
                break
    return edits


def _negation_edits(s: str) -> list[tuple[int, int, str, str]]:
    words = {w.lower() for w in s.split()}
    if words & NEGATIONS or any(w.endswith("n't") for w in words):
        return []
    m = _NEGATABLE.search(s)
    if not m:
        return []
    return [(m.start(1), m.end(1), f"{m.group(1)} not", "negation")]


def perturb(rng, sentence: str, key=None, pools=None) -> tuple[str, str] | None:
    """(false sentence, kind of change) or None when the sentence has nothing safe to change."""
    groups = [_fact_edits(rng, sentence)]
    if pools is not None:
        groups.append(_entity_edits(rng, sentence, key, pools))
    groups.append(_negation_edits(sentence))
    for edits in groups:
        if edits:
            start, end, replacement, kind = rng.choice(edits)
            return sentence[:start] + replacement + sentence[end:], kind
    return None


def generate_rules(corpus, *, max_per_paragraph: int = 5, seed: int = 0, source: str | None = None) -> list:
    """Up to `max_per_paragraph` questions per paragraph, split -1 (the caller assigns splits)."""
    from fortifai_bench.kr.schema import Question

    if max_per_paragraph < 1:
        raise FortifaiError(f"rules generator: max_per_paragraph must be >= 1, got {max_per_paragraph}")
    pools = entity_pools(corpus.paragraphs)
    source = source or f"{corpus.name}:{corpus.part}"
    questions = []
    for index, p in enumerate(corpus.paragraphs):
        sentences = split_sentences(p.text)
        made = 0
        for i in range(1, len(sentences)):
            if made >= max_per_paragraph:
                break
            target = sentences[i]
            if not MIN_WORDS <= len(target.split()) <= MAX_WORDS:
                continue
            context = sentences[i - 1]
            if i >= 2 and len(context.split()) < SHORT_CONTEXT:
                context = f"{sentences[i - 2]} {context}"
            if len(context.split()) > MAX_CONTEXT_WORDS:
                continue
            rng = random.Random(f"{GENERATOR}:{seed}:{p.id}:{i}")
            changed = perturb(rng, target, p.meta.get("article"), pools)
            if changed is None:
                continue
            questions.append(Question(
                id=f"{p.id}/q{i}", split=-1, paragraph=index, context=context, true=target,
                false=changed[0], generator=GENERATOR, source=source,
            ))
            made += 1
    return questions
