"""`facts`: an embedded synthetic encyclopedia, generated deterministically from a seed.

Fictional entities of five kinds (people, cities, rivers, companies, mountains) with typed attributes
(places, years, numbers, professions, products, and relations to other entities of the same part),
written as short template paragraphs (3-5 sentences, 16-35 words, 20-41 tokens of a BPE trained on
the corpus), every sentence naming its entity. Every fact is recorded in
`Paragraph.meta["facts"]` with its attribute, value, character span and template, so that the KR
questions built from it are exact (see `fortifai_bench.kr.facts_gen`).

It is built to be learnable by the ~1.3M-parameter `tiny` GPT-2: a small, fixed vocabulary of values
(40 places, the years 1700-1999, bounded numbers, 12 professions, 12 products), names made of 2-3
syllables from a list of 30, one fixed sentence order per kind (with a few template variants and
optional sentences for variety), and the entity named in every sentence. Measured: a tiny GPT-2
pretrained 8 epochs on "pretrain", then trained 20 epochs on "main" (batch 4, lr 2e-3, AdamW) scored
0.95 on its KR questions; with pronouns instead of names in later sentences it scored 0.67.

Two parts share that vocabulary of values but no entity:
- "main" (default 180 paragraphs = 6 splits x 30): the corpus of the collapse protocol and `kr_facts`.
  Kinds rotate in blocks of five, so every split of a multiple of five paragraphs holds each kind equally.
- "pretrain" (default 1000 paragraphs): other entities, for pretraining the base model on the templates
  and values without seeing a single fact of "main". It is generated on the fly (same seed, same bytes),
  not shipped; only "main" is shipped, in `data/facts/corpus.jsonl`.

`facts-longtail` is the same generator with a skewed prior (`FactsConfig.modes`, `mode_share`): for each
categorical slot (place, profession, product) a seeded ranking of its values picks `modes` frequent
values that carry `mode_share` of the mass between them; the other values share the rest equally, in
both parts, so the base model learns the skewed prior in pretraining. Every categorical fact records
its value's class (`"frequency": "mode"` or `"tail"`), which is what its KR questions are tagged with
(`fortifai_bench.kr.facts_gen`); years, numbers and relations stay uniform. It measures "the tails
disappear" (Shumailov et al. 2024) directly: shipped in `data/facts-longtail`.

`facts-longtail-450` (`FactsConfig.variant`, issue 26 item 2) is the same skew with more tail facts per
split, for collapse_facts_longtail v3: 450 main paragraphs (6 splits x 75) and half the mass on the tail
(`mode_share` 0.5), so split 0 holds 52 tail facts where `facts-longtail`'s holds 18 (one fact moved the tail
score by 0.06). Its name seeds its own draw (other entities, another ranking of the values); it is
generated on the fly, and its KR questions are built and cached on first use.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from fortifai_bench.corpora.corpus import Corpus, Paragraph
from fortifai_bench.errors import FortifaiError

VERSION = 1  # bump when the generated text changes; shipped data must then be rebuilt

SYLLABLES = ("or", "vel", "tam", "sin", "bra", "dor", "kel", "mi", "na", "ra", "lo", "ven", "tis", "ka", "ru",
             "sel", "mo", "dan", "fer", "li", "ga", "thon", "bel", "ri", "zan", "pe", "ul", "wen", "ha", "cor")

PLACES = ("Aldmere", "Brenvia", "Calvory", "Dunholt", "Eskaria", "Falwyn", "Gorvath", "Helmora", "Ilvane",
          "Jastria", "Kaldor", "Lunmark", "Morwen", "Norvale", "Ostara", "Pellin", "Quendal", "Rostova",
          "Sarmith", "Tolbria", "Umbrel", "Valdis", "Wexford", "Yarrow", "Zenthia", "Ardun", "Belmire",
          "Corwick", "Drevan", "Elmstead", "Fairholm", "Glenrock", "Harwell", "Istmoor", "Kestrel",
          "Larkfield", "Marrow", "Netherby", "Oakhurst", "Penmoor")
PROFESSIONS = ("painter", "sailor", "teacher", "merchant", "poet", "doctor", "farmer", "judge", "baker",
               "composer", "weaver", "potter")
PRODUCTS = ("ships", "clocks", "paper", "glass", "bicycles", "shoes", "radios", "bricks", "lamps", "soap",
            "rope", "tea")
COMPANY_SUFFIXES = ("Works", "Mills", "Trading", "Foundry")
# The categorical slots: the ones `FactsConfig.modes` skews (a year or a number has no "rare value" to lose).
CATEGORIES = {"place": PLACES, "profession": PROFESSIONS, "product": PRODUCTS}
KINDS = ("person", "city", "river", "company", "mountain")


def _year(rng):
    return str(rng.randint(1700, 1999))


def _number(lo, hi, step=1):
    return lambda rng: str(rng.randrange(lo, hi + 1, step))


def _choice(values):
    return lambda rng: rng.choice(values)


# Value makers by slot type; relations ("rel:<kind>") take the name of another entity of that kind.
SLOT_VALUES = {
    "place": _choice(PLACES),
    "year": _year,
    "profession": _choice(PROFESSIONS),
    "product": _choice(PRODUCTS),
    "children": _number(2, 9),
    "population": _number(10, 990, 10),
    "length": _number(40, 990, 10),
    "employees": _number(20, 990, 10),
    "height": _number(1200, 4800, 100),
}

# Attributes whose values need more than their slot type, so that the text stays coherent:
# a person is born 1700-1919 and dies 30-80 years later (never before birth, never after 1999).
ATTRIBUTE_VALUES = {"birth_year": _number(1700, 1919)}
DERIVED = {"death_year": ("birth_year", 30, 80)}

# Per kind: sentences in a fixed order; each is (required, [template variants]). Slots are
# {attribute:slot_type}; {name} (the full name) and {Ref} (how later sentences name the entity) are
# not facts. Every sentence names its entity, because a fact bound to a name a few tokens away is
# far easier for a tiny model to memorize than one behind a pronoun (and a short context still says
# whom a question is about).
TEMPLATES = {
    "person": [
        (True, ["{name} was born in {birth_place:place} in {birth_year:year}.",
                "{name} was born in {birth_year:year} in {birth_place:place}."]),
        (False, ["{Ref} worked as a {profession:profession} in {work_place:place}.",
                 "{Ref} became a {profession:profession} in {work_place:place}."]),
        (False, ["{Ref} had {children:children} children."]),
        (False, ["{Ref} was a friend of {friend:rel:person}."]),
        (True, ["{Ref} died in {death_year:year}.", "{Ref} died in the year {death_year:year}."]),
    ],
    "city": [
        (True, ["{name} is a city in {country:place}.", "{name} is a town in {country:place}."]),
        (True, ["{Ref} was founded in {founded_year:year}."]),
        (False, ["{Ref} has {population:population} thousand people."]),
        (False, ["{Ref} lies on the {river:rel:river} River."]),
        (False, ["The mayor of {Ref} is {mayor:rel:person}."]),
    ],
    "river": [
        (True, ["The {name} River flows through {country:place}.", "The {name} River runs through {country:place}."]),
        (True, ["The {Ref} is {length:length} kilometres long."]),
        (False, ["The {Ref} rises on Mount {source:rel:mountain}."]),
        (False, ["The {Ref} was first mapped in {mapped_year:year}.", "The {Ref} was mapped in {mapped_year:year}."]),
        (False, ["The {Ref} reaches the sea at {mouth:rel:city}."]),
    ],
    "company": [
        (True, ["{name} is a company founded in {founded_year:year}.", "{name} is a firm founded in {founded_year:year}."]),
        (True, ["{Ref} makes {product:product} in {city:rel:city}."]),
        (False, ["{Ref} has {employees:employees} workers."]),
        (False, ["{Ref} was founded by {founder:rel:person}."]),
        (False, ["The main office of {Ref} is in {office:place}."]),
    ],
    "mountain": [
        (True, ["Mount {name} is a mountain in {country:place}.", "Mount {name} stands in {country:place}."]),
        (True, ["Mount {Ref} is {height:height} metres high."]),
        (False, ["Mount {Ref} was first climbed in {climbed_year:year} by {climber:rel:person}."]),
        (False, ["The nearest town to Mount {Ref} is {town:rel:city}."]),
    ],
}
SLOT = re.compile(r"\{(\w+)(?::([\w:]+))?\}")


@dataclass(frozen=True)
class FactsConfig:
    """What determines the facts corpus: change any field and every paragraph may change.

    `modes` > 0 skews the categorical slots (`CATEGORIES`): per slot, `modes` frequent values hold
    `mode_share` of the probability between them and the other values share the rest; 0 (the `facts`
    corpus) draws every value uniformly and ignores `mode_share`."""

    seed: int = 0
    paragraphs: int = 180
    pretrain_paragraphs: int = 1000
    modes: int = 0
    mode_share: float = 0.6
    variant: str = ""  # another registered corpus of the same generator: its name is facts[-longtail]-<variant>

    def __post_init__(self):
        for name in ("paragraphs", "pretrain_paragraphs"):
            n = getattr(self, name)
            if not isinstance(n, int) or n < len(KINDS):
                raise FortifaiError(f"facts: {name} must be an integer >= {len(KINDS)}, got {n!r}")
        if not isinstance(self.variant, str) or not re.fullmatch(r"[a-z0-9]*", self.variant):
            raise FortifaiError(f"facts: variant must be lower-case letters and digits (or empty), "
                                f"got {self.variant!r}")
        if not isinstance(self.seed, int):
            raise FortifaiError(f"facts: seed must be an integer, got {self.seed!r}")
        fewest = min(len(v) for v in CATEGORIES.values())
        if not isinstance(self.modes, int) or isinstance(self.modes, bool) or not 0 <= self.modes < fewest:
            raise FortifaiError(f"facts: modes must be an integer in 0..{fewest - 1} (the smallest categorical "
                                f"slot has {fewest} values), got {self.modes!r}")
        if self.modes:
            share = self.mode_share
            # a mode value must be more likely than a tail value in every slot, or "mode" means nothing
            uniform = max(self.modes / len(v) for v in CATEGORIES.values())
            if not isinstance(share, (int, float)) or isinstance(share, bool) or not uniform < share < 1:
                raise FortifaiError(f"facts: mode_share must be a number in ({uniform:.3g}, 1) (above the "
                                    f"uniform share of {self.modes} values), got {share!r}")

    @property
    def name(self) -> str:
        """The corpus name, which also seeds the generator: another variant draws other entities and facts."""
        base = "facts-longtail" if self.modes else "facts"
        return f"{base}-{self.variant}" if self.variant else base

    def ranking(self, slot: str) -> tuple[str, ...]:
        """The values of a categorical slot, most frequent first (a seeded order, the same in both parts)."""
        values = list(CATEGORIES[slot])
        random.Random(f"{self.name}@{VERSION}:{self.seed}:ranking:{slot}").shuffle(values)
        return tuple(values)

    def frequency(self, slot: str, value: str) -> str:
        """"mode" or "tail": the class of a categorical value under this skew."""
        return "mode" if value in self.ranking(slot)[:self.modes] else "tail"

    def weights(self, slot: str) -> list[float]:
        """Probabilities of `ranking(slot)`: the modes share `mode_share`, the tail values the rest."""
        tail = len(CATEGORIES[slot]) - self.modes
        return [self.mode_share / self.modes] * self.modes + [(1 - self.mode_share) / tail] * tail


LONGTAIL = FactsConfig(modes=3, mode_share=0.6)  # facts-longtail: 3 values per slot carry 60% of the mass
# facts-longtail-450: 75 paragraphs per split and the tail's share 0.5, so every split holds about 2.5x the tail
# facts of facts-longtail (split 0: 52 against 18); the 3 modes still carry 0.5 (each 0.17 against a tail place's 0.014)
LONGTAIL_450 = FactsConfig(paragraphs=450, modes=3, mode_share=0.5, variant="450")


def _word(rng, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


def _names(rng, kinds: list[str], taken: set[str]) -> list[str]:
    """One new name per entity; unique across both parts and never equal to a place."""
    names = []
    for kind in kinds:
        while True:
            if kind == "person":
                name = f"{_word(rng, 2)} {_word(rng, 2)}"
            elif kind == "company":
                name = f"{_word(rng, 2)} {rng.choice(COMPANY_SUFFIXES)}"
            else:
                name = _word(rng, rng.choice((2, 3)))
            if name not in taken and name not in PLACES:
                taken.add(name)
                names.append(name)
                break
    return names


def _kind_order(rng, n: int) -> list[str]:
    order = []
    while len(order) < n:
        block = list(KINDS)
        rng.shuffle(block)
        order.extend(block)
    return order[:n]


def _render(template: str, name: str, ref: str, values: dict) -> tuple[str, list[dict]]:
    """Fill a template; return the sentence and the character spans of its facts."""
    out, facts, pos = [], [], 0
    length = 0
    for m in SLOT.finditer(template):
        literal = template[pos:m.start()]
        out.append(literal)
        length += len(literal)
        attr, slot = m.group(1), m.group(2)
        if attr == "name":
            value = name
        elif attr == "Ref":
            value = ref
        else:
            value = values[attr]
            facts.append({"attribute": attr, "slot": slot, "value": value, "start": length,
                          "end": length + len(value), "template": template})
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), facts


def _part(rng, n: int, part: str, taken: set[str], config: FactsConfig):
    kinds = _kind_order(rng, n)
    names = _names(rng, kinds, taken)
    by_kind = {k: [nm for nm, kk in zip(names, kinds) if kk == k] for k in KINDS}
    prefix = config.name if part == "main" else f"{config.name}/{part}"
    skewed = {slot: (config.ranking(slot), config.weights(slot)) for slot in CATEGORIES} if config.modes else {}
    paragraphs = []
    for i, (kind, name) in enumerate(zip(kinds, names)):
        # later sentences: a person by surname, a company by its full name, the rest by name
        ref = name.split()[-1] if kind == "person" else name
        chosen = [(req, rng.choice(variants)) for req, variants in TEMPLATES[kind]]
        optional = [j for j, (req, _) in enumerate(chosen) if not req]
        keep_optional = set(rng.sample(optional, rng.randint(min(1, len(optional)), len(optional))))
        sentences = [t for j, (req, t) in enumerate(chosen) if req or j in keep_optional]
        values = {}
        for template in sentences:
            for attr, slot in SLOT.findall(template):
                if not slot:
                    continue
                if slot.startswith("rel:"):
                    others = [x for x in by_kind[slot[4:]] if x != name]
                    values[attr] = rng.choice(others) if others else rng.choice(by_kind[slot[4:]])
                elif attr in DERIVED:
                    base, lo, hi = DERIVED[attr]
                    values[attr] = str(int(values[base]) + rng.randint(lo, hi))
                elif slot in skewed:
                    ranking, weights = skewed[slot]
                    values[attr] = rng.choices(ranking, weights)[0]
                else:
                    values[attr] = ATTRIBUTE_VALUES.get(attr, SLOT_VALUES[slot])(rng)
        text, facts, offset = [], [], 0
        for s_idx, template in enumerate(sentences):
            sentence, sfacts = _render(template, name, ref, values)
            for f in sfacts:
                f.update(start=f["start"] + offset, end=f["end"] + offset, sentence=s_idx,
                         sentence_end=offset + len(sentence))
                if f["slot"] in skewed:  # the class its KR questions are tagged with
                    f["frequency"] = config.frequency(f["slot"], f["value"])
            facts.extend(sfacts)
            text.append(sentence)
            offset += len(sentence) + 1
        paragraphs.append(Paragraph(
            id=f"{prefix}/p{i:04d}", text=" ".join(text),
            meta={"entity": name, "kind": kind, "facts": facts},
        ))
    return paragraphs


def build_facts(config: FactsConfig = FactsConfig(), part: str = "main"):
    """The facts corpus (`facts-longtail` when `config.modes`) part "main" or "pretrain" for `config`
    (same config, same paragraphs)."""
    name = config.name
    if part not in ("main", "pretrain"):
        raise FortifaiError(f"{name}: unknown part {part!r}; known: main, pretrain")
    taken: set[str] = set()
    # "main" is always generated first (its own random stream), so its names are known and
    # "pretrain" (a second stream) can avoid them; main does not depend on the pretrain size.
    main = _part(random.Random(f"{name}@{VERSION}:{config.seed}:main"), config.paragraphs, "main", taken, config)
    if part == "main":
        paragraphs = main
    else:
        paragraphs = _part(random.Random(f"{name}@{VERSION}:{config.seed}:pretrain"),
                           config.pretrain_paragraphs, "pretrain", taken, config)
    source = f"{name}@{VERSION} seed={config.seed} paragraphs={config.paragraphs}"
    if part == "pretrain":
        source += f" pretrain_paragraphs={config.pretrain_paragraphs}"
    if config.modes:
        source += f" modes={config.modes} mode_share={config.mode_share:g}"
    return Corpus(name=name, source=source, paragraphs=paragraphs, part=part)


def load_facts(data_dir=None, part: str = "main"):
    """Registry loader. The corpus is embedded (generated), so `data_dir` is not used."""
    return build_facts(FactsConfig(), part)


def load_facts_longtail(data_dir=None, part: str = "main"):
    """Registry loader of `facts-longtail` (embedded too)."""
    return build_facts(LONGTAIL, part)


def load_facts_longtail_450(data_dir=None, part: str = "main"):
    """Registry loader of `facts-longtail-450` (embedded too)."""
    return build_facts(LONGTAIL_450, part)


# the registered corpora's configs
PRESETS = {"facts": FactsConfig(), "facts-longtail": LONGTAIL, "facts-longtail-450": LONGTAIL_450}
