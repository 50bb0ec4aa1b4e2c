"""`rules` generator: offline, deterministic KR questions from any corpus, no model.

For a sentence s_i of a paragraph (i >= 1):
    context = s_{i-1}, or s_{i-2} s_{i-1} when s_{i-1} is short (under 12 words)
    true    = s_i
    false   = s_i with ONE fact changed, chosen in this order of preference:
      1. a number, year, ordinal, number word or month replaced by a plausible different one
         (a year moves by 1-9 years, a number keeps its count of digits, a month becomes another);
      2. a named entity (a run of capitalized words, not the sentence's first word) replaced by
         another run with as many words from the same article (from the whole corpus when the
         corpus has no articles), preferring one that followed the same word ("in X", "by X"), a
         cheap stand-in for "an entity of the same kind";
      3. an antonym that flips the fact (won/lost, before/after, north/south, ...);
      4. only when asked (`negation=True`): "not" after the first is/was/are/were.

Length matters: a scorer that sums log-likelihoods prefers the continuation with fewer tokens, so
a rule that makes false continuations longer on average lets a model that knows nothing score
above 0.5. Every rule is therefore symmetric in length: numbers keep their digits, words and
names are drawn as often as the corpus uses them (common words are short in tokens), antonyms go
both ways. Negation only ever adds a word, which is why it is off by default.
So true and false differ only in the changed span and both read as the corpus does. Every choice
is drawn from a random generator seeded by the paragraph id and sentence number: same corpus,
same questions. Works on WikiText's spaced punctuation (` , `, ` . `, ` @-@ `) and on plain text.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import Question

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
# Antonyms that flip a fact and keep the sentence fluent; both directions, so neither side is longer.
_PAIRS = [("won", "lost"), ("before", "after"), ("north", "south"), ("east", "west"), ("northern", "southern"),
          ("eastern", "western"), ("increased", "decreased"), ("higher", "lower"), ("larger", "smaller"),
          ("largest", "smallest"), ("highest", "lowest"), ("earlier", "later"), ("positive", "negative"),
          ("older", "younger"), ("oldest", "youngest"), ("longer", "shorter"), ("above", "below"),
          ("male", "female"), ("victory", "defeat"), ("successful", "unsuccessful"), ("minor", "major"),
          ("first", "last"), ("inside", "outside"), ("maximum", "minimum"), ("strong", "weak")]
ANTONYMS = {a: b for a, b in _PAIRS} | {b: a for a, b in _PAIRS}
_ANTONYM = re.compile(r"\b(?:" + "|".join(sorted(ANTONYMS, key=len, reverse=True)) + r")\b")
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


def _other_number(rng, n: int, counts) -> int:
    """A plausible different number WITH AS MANY DIGITS (a longer false answer would be easier to
    reject by length alone, see the module docstring), drawn as often as the corpus uses it."""
    digits = len(str(n))
    if digits == 4 and 1000 <= n <= 2099:  # a year: a few years off
        candidates = [n + d for d in range(-9, 10) if d and len(str(n + d)) == 4]
    elif digits == 1:
        candidates = [k for k in range(1, 10) if k != n]
    elif n <= 31:  # a day of the month, a small count
        candidates = [k for k in range(10, 32) if k != n]
    else:
        candidates = [round(n * f) for f in (0.5, 0.6, 0.7, 0.8, 1.25, 1.5, 2.0)]
        candidates = [k for k in candidates if k != n and len(str(k)) == digits] or [n + 1 if n % 10 < 9 else n - 1]
    return int(_weighted(rng, [str(k) for k in candidates], counts, str(n)))


def _weighted(rng, options, counts, exclude):
    """One of `options` other than `exclude`: among those closest to it in length (characters are
    a proxy for tokens), drawn as often as the corpus uses each (+1), so that a replacement is as
    common, and so about as short in tokens, as what it replaces."""
    options = [o for o in options if o != exclude]
    gap = min(abs(len(o) - len(exclude)) for o in options)
    options = [o for o in options if abs(len(o) - len(exclude)) <= max(gap, 1)]
    return rng.choices(options, weights=[counts.get(o, 0) + 1 for o in options])[0]


def _fact_edits(rng, s: str, counts) -> list[tuple[int, int, str, str]]:
    """(start, end, replacement, kind) for numbers, years, ordinals, number words, months."""
    edits = []
    for m in _ORDINAL.finditer(s):
        n = int(m.group(1))
        k = rng.choice([x for x in (range(1, 10) if n < 10 else range(10, 32)) if x != n])
        edits.append((m.start(), m.end(), f"{k}{_ordinal_suffix(k)}", "ordinal"))
    taken = [(a, b) for a, b, _, _ in edits]
    for m in _NUMBER.finditer(s):
        text = m.group(0)
        if (len(text) > 1 and text.startswith("0")) or any(a <= m.start() < b for a, b in taken):
            continue
        n = int(text)
        if n == 0:
            continue
        kind = "year" if len(text) == 4 and 1000 <= n <= 2099 else "number"
        edits.append((m.start(), m.end(), str(_other_number(rng, n, counts)), kind))
    for m in _ORD_WORD.finditer(s):
        edits.append((m.start(1), m.end(1), _weighted(rng, ORDINAL_WORDS, counts, m.group(1)), "ordinal"))
    for m in _NUM_WORD.finditer(s):
        edits.append((m.start(1), m.end(1), _weighted(rng, NUMBER_WORDS, counts, m.group(1)), "number"))
    for m in _MONTH.finditer(s):
        if m.group(1) == "May" and not re.match(r"\s+\d", s[m.end():]) and not re.search(r"\d\s+$", s[:m.start()]):
            continue  # "May" is a month only beside a day number
        edits.append((m.start(), m.end(), _weighted(rng, MONTHS, counts, m.group(1)), "month"))
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
class CorpusStats:
    """What the rules draw replacements from: word counts and capitalized runs of the whole corpus,
    keyed for "same kind" look-ups, each run with the number of times it occurs."""

    counts: Counter = field(default_factory=Counter)                  # word -> occurrences
    lowercase: set = field(default_factory=set)                       # words the corpus writes in lower case
    article_prev: dict = field(default_factory=lambda: defaultdict(Counter))  # (article, words, prev) -> runs
    corpus_prev: dict = field(default_factory=lambda: defaultdict(Counter))   # (words, prev) -> runs
    article_len: dict = field(default_factory=lambda: defaultdict(Counter))   # (article, words) -> runs
    runs: Counter = field(default_factory=Counter)                    # run -> occurrences in the corpus


def corpus_stats(paragraphs) -> CorpusStats:
    stats = CorpusStats()
    for p in paragraphs:
        stats.counts.update(p.text.split())
    stats.lowercase = {w for w in stats.counts if w.islower()}
    for p in paragraphs:
        key = p.meta.get("article")
        for s in split_sentences(p.text):
            for _, _, run, prev in _entity_runs(s, stats.lowercase):
                n = len(run.split())
                stats.article_prev[(key, n, prev)][run] += 1
                stats.corpus_prev[(n, prev)][run] += 1
                stats.article_len[(key, n)][run] += 1
                stats.runs[run] += 1
    return stats


def _entity_edits(rng, s: str, key, stats: CorpusStats) -> list[tuple[int, int, str, str]]:
    """Replace a run by one of the same length that followed the same word in the same article,
    else anywhere in the corpus (when that word says something: "in", "by", "journalist"), else
    any run of the same length in the same article; drawn as often as each run occurs, so that
    common (short) and rare (long) names are swapped both ways alike."""
    edits = []
    for start, end, run, prev in _entity_runs(s, stats.lowercase):
        n = len(run.split())
        tiers = [stats.article_prev.get((key, n, prev), {})]
        if prev not in _VAGUE:
            tiers.append(stats.corpus_prev.get((n, prev), {}))
        if key is not None:
            tiers.append(stats.article_len.get((key, n), {}))
        for pool in tiers:
            candidates = [c for c in pool if c != run and c not in s]
            if candidates:
                # weighted by corpus-wide use: that is what makes a name short in tokens
                edits.append((start, end, _weighted(rng, candidates, stats.runs, run), "entity"))
                break
    return edits


def _antonym_edits(s: str) -> list[tuple[int, int, str, str]]:
    edits = []
    for m in _ANTONYM.finditer(s):
        word = m.group(0)
        edits.append((m.start(), m.end(), ANTONYMS[word], "antonym"))
    return edits


def _negation_edits(s: str) -> list[tuple[int, int, str, str]]:
    words = {w.lower() for w in s.split()}
    if words & NEGATIONS or any(w.endswith("n't") for w in words):
        return []
    m = _NEGATABLE.search(s)
    if not m:
        return []
    return [(m.start(1), m.end(1), f"{m.group(1)} not", "negation")]


def perturb(rng, sentence: str, key=None, stats: CorpusStats | None = None,
            negation: bool = False) -> tuple[str, str] | None:
    """(false sentence, kind of change) or None when the sentence has nothing safe to change."""
    stats = stats or CorpusStats()
    groups = [_fact_edits(rng, sentence, stats.counts), _entity_edits(rng, sentence, key, stats),
              _antonym_edits(sentence)]
    if negation:
        groups.append(_negation_edits(sentence))
    for edits in groups:
        if edits:
            start, end, replacement, kind = rng.choice(edits)
            return sentence[:start] + replacement + sentence[end:], kind
    return None


def generate_rules(corpus, *, max_per_paragraph: int = 5, seed: int = 0, source: str | None = None,
                   negation: bool = False) -> list:
    """Up to `max_per_paragraph` questions per paragraph, split -1 (the caller assigns splits)."""
    if max_per_paragraph < 1:
        raise FortifaiError(f"rules generator: max_per_paragraph must be >= 1, got {max_per_paragraph}")
    stats = corpus_stats(corpus.paragraphs)
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
            changed = perturb(rng, target, p.meta.get("article"), stats, negation)
            if changed is None:
                continue
            questions.append(Question(
                id=f"{p.id}/q{i}", split=-1, paragraph=index, context=context, true=target,
                false=changed[0], generator=GENERATOR, source=source,
            ))
            made += 1
    return questions
