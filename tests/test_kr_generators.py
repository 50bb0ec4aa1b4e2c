"""KR generators (facts, rules), the question schema and readers, and the quality filter."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict

import pytest

from fortifai_bench.corpora import Corpus, Paragraph, get_corpus
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.facts_gen import generate_facts
from fortifai_bench.kr.quality import diff_span, filter_questions
from fortifai_bench.kr.rules import generate_rules, perturb, split_sentences
from fortifai_bench.kr.schema import FIELDS, Question, assign_splits, read_questions, write_questions


@pytest.fixture(scope="module")
def facts():
    return get_corpus("facts")


@pytest.fixture(scope="module")
def wikitext_valid(wikitext_dir):
    return get_corpus("wikitext-2-raw-v1", data_dir=wikitext_dir, part="valid")


def _q(i=0, context="The river is", true="long.", false="short.", **kw):
    fields = dict(id=f"t/{i}", split=0, paragraph=0, context=context, true=true, false=false,
                  generator="test", source="test")
    fields.update(kw)
    return Question(**fields)


# ---------------------------------------------------------------- facts generator


def test_facts_questions_are_exact(facts):
    questions = generate_facts(facts, 6)
    assert 2100 <= len(questions) <= 2700  # up to 5 facts per paragraph, 3 false values per fact
    per_paragraph = Counter(q.paragraph for q in questions)
    assert max(per_paragraph.values()) == 15 and len(per_paragraph) == len(facts)
    per_fact = Counter(q.id.split(".")[0] for q in questions)
    assert max(per_fact.values()) == 3 and max(Counter(q.context for q in questions).values()) <= 3
    for qid in per_fact:  # the false values of one fact differ from each other
        falses = [q.false for q in questions if q.id.split(".")[0] == qid]
        assert len(set(falses)) == len(falses)
    split_of = facts.split_of(6)
    for q in questions:
        p = facts.paragraphs[q.paragraph]
        assert q.id.startswith(p.id + "/q") and q.split == split_of[q.paragraph]
        # context + " " + true is the paragraph's own text, up to the end of the fact's sentence
        assert p.text.startswith(q.context + " " + q.true)
        assert q.true.endswith(".") and q.false.endswith(".")
        fact = next(f for f in p.meta["facts"] if f["start"] == len(q.context) + 1)
        rest = p.text[fact["end"]:fact["sentence_end"]]
        assert q.true == fact["value"] + rest
        # the false form is the same sentence with only the value changed
        assert q.false.endswith(rest) and q.false != q.true
        false_value = q.false[: len(q.false) - len(rest)]
        assert false_value and false_value != fact["value"]


def test_facts_distractors_come_from_the_same_split_and_attribute(facts):
    """The prototype's lesson: a false value must be one the model saw as often as the true one."""
    split_of = facts.split_of(6)
    seen = defaultdict(set)  # (split, kind, attribute) -> true values in that split
    for i, p in enumerate(facts.paragraphs):
        for f in p.meta["facts"]:
            seen[(split_of[i], p.meta["kind"], f["attribute"])].add(f["value"])
    same_attribute = 0
    questions = [q for q in generate_facts(facts, 6) if "." not in q.id.rsplit("/", 1)[1]]  # each fact's first
    for q in questions:
        p = facts.paragraphs[q.paragraph]
        fact = next(f for f in p.meta["facts"] if f["start"] == len(q.context) + 1)
        false_value = q.false[: len(q.false) - (len(q.true) - len(fact["value"]))]
        assert false_value != fact["value"]
        same_attribute += false_value in seen[(q.split, p.meta["kind"], fact["attribute"])]
    assert same_attribute / len(questions) > 0.97


def test_facts_generator_is_deterministic_and_seeded(facts):
    a, b = generate_facts(facts, 6), generate_facts(facts, 6)
    assert [q.to_dict() for q in a] == [q.to_dict() for q in b]
    c = generate_facts(facts, 6, seed=1)
    assert [q.false for q in c] != [q.false for q in a]
    assert max(Counter(q.paragraph for q in generate_facts(facts, 6, max_per_paragraph=2)).values()) == 2 * 3
    one = generate_facts(facts, 6, max_per_paragraph=2, distractors=1)
    assert max(Counter(q.paragraph for q in one).values()) == 2 and all("." not in q.id.rsplit("/", 1)[1] for q in one)


def test_facts_generator_needs_ground_truth():
    corpus = Corpus("plain", "x", [Paragraph("plain/p0", "No facts here.")])
    with pytest.raises(FortifaiError, match="needs the facts corpus.*use --generator rules"):
        generate_facts(corpus, 1)


# ---------------------------------------------------------------- rules generator


@pytest.mark.parametrize("sentence,changed_kind", [
    ("The bridge was rebuilt in 1983 , bypassing downtown .", "year"),
    ("The attack killed 62 soldiers near the coast.", "number"),
    ("It was the third album released by the band .", "ordinal"),
    ("She finished 12th in the race .", "ordinal"),
    ("The two species can be crossed artificially .", "number"),
    ("The film opened on a Friday in October .", "month"),
    ("The mill was bought by Wilf Foreman after the storm .", "entity"),
    ("The lobster is blue above .", "antonym"),
    ("The lobster is blue in colour .", "negation"),
])
def test_rules_perturb_changes_one_span(sentence, changed_kind):
    from fortifai_bench.kr.rules import corpus_stats

    stats = corpus_stats([Paragraph("x/p0", "A drawing of the mill by Stephen Peverett survives .")])
    out = perturb(random.Random(0), sentence, None, stats, negation=changed_kind == "negation")
    assert out is not None
    false, kind = out
    assert kind == changed_kind
    a, b = diff_span(sentence, false)
    assert false != sentence and 0 <= len(a) <= 2 and 1 <= len(b) <= 2
    if kind == "entity":
        assert false == sentence.replace("Wilf Foreman", "Stephen Peverett")
    if kind == "negation":
        assert false == "The lobster is not blue in colour ."
        assert perturb(random.Random(0), sentence, None, stats) is None  # negation is opt-in
    if kind == "antonym":
        assert false == "The lobster is blue below ."


def test_rules_leave_sentences_with_nothing_to_change():
    assert perturb(random.Random(0), "it rained , and they did not go out .", negation=True) is None
    corpus = Corpus("c", "x", [Paragraph("c/p0", "Nothing here changes. it rained and they did not go out.")])
    assert generate_rules(corpus) == []


def test_split_sentences_keeps_abbreviations_and_wikitext_spacing():
    assert split_sentences("Dr. Smith met H. americanus in 1990. It was odd! Then \"Yes.\" She left.") == [
        "Dr. Smith met H. americanus in 1990.", "It was odd!", "Then \"Yes.\"", "She left."]
    assert split_sentences("It weighs 0 @.@ 7 kg . It is related to H. gammarus . Fine .") == [
        "It weighs 0 @.@ 7 kg .", "It is related to H. gammarus .", "Fine ."]


def test_rules_on_wikitext(wikitext_valid):
    questions = generate_rules(wikitext_valid)
    assert len(questions) > 3000
    assert max(Counter(q.paragraph for q in questions).values()) == 5
    kinds = Counter()
    for q in questions:
        p = wikitext_valid.paragraphs[q.paragraph]
        # context is one or two whole sentences right before the true one, all from the paragraph
        assert q.context + " " + q.true in p.text
        sentences = split_sentences(p.text)
        assert q.true in sentences and q.context.split(" . ")[-1].rstrip(" .") in p.text
        a, b = diff_span(q.true, q.false)
        assert q.true != q.false and max(len(a), len(b)) <= 5
        # one contiguous change: the words around it are shared
        words_t, words_f = q.true.split(), q.false.split()
        assert len(words_t) - len(a) == len(words_f) - len(b)
        kinds["negation" if b == ["not"] and not a else "other"] += 1
    assert kinds["negation"] == 0  # off by default: it only ever lengthens the false sentence
    again = generate_rules(wikitext_valid)
    assert [q.to_dict() for q in again] == [q.to_dict() for q in questions]


def test_rules_false_continuations_are_not_longer_in_tokens(wikitext_valid):
    """A summed-log-likelihood scorer prefers fewer tokens: if false continuations were longer, a
    model that knows nothing would beat 0.5. With a tokenizer trained on the corpus itself (the
    tiny model's case, where true values are the frequent ones), the expected accuracy of such a
    length-only guesser stays at 0.5."""
    from fortifai_bench.models import train_tokenizer

    tok = train_tokenizer(wikitext_valid.texts(), 4096)
    questions = generate_rules(wikitext_valid)
    longer = shorter = 0
    for q in questions:
        t, f = len(tok(q.true)["input_ids"]), len(tok(q.false)["input_ids"])
        longer += f > t
        shorter += f < t
    length_guess_acc = (longer + 0.5 * (len(questions) - longer - shorter)) / len(questions)
    assert abs(length_guess_acc - 0.5) < 0.02, (longer, shorter, len(questions))


# ---------------------------------------------------------------- schema and readers


def test_write_and_read_round_trip(tmp_path):
    questions = [_q(i, context=f"Context {i}", true=" leading space.") for i in range(3)]
    assert questions[0].true == "leading space."  # the scorer adds the delimiter
    path = tmp_path / "q.jsonl"
    assert write_questions(path, questions) == 3
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(rows[0]) == list(FIELDS)
    assert read_questions(path) == questions


@pytest.mark.parametrize("line,message", [
    ('{"id": "a"', r"q.jsonl:3: invalid JSON"),
    ('{"id": "a", "split": 0}', r"q.jsonl:3: missing field\(s\) paragraph, context, true, false, generator, source"),
    ('{"id": "a", "split": "x", "paragraph": 0, "context": "c", "true": "t", "false": "f", "generator": "g", '
     '"source": "s"}', r"q.jsonl:3: .*'split' must be an integer"),
    ('[1, 2]', r"q.jsonl:3: expected a JSON object"),
])
def test_malformed_question_files_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    good = json.dumps(_q().to_dict())
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(FortifaiError, match=message):
        read_questions(path)


def test_read_questions_missing_and_empty_files(tmp_path):
    with pytest.raises(FortifaiError, match="cannot read .*nothere.jsonl"):
        read_questions(tmp_path / "nothere.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(FortifaiError, match="empty.jsonl: no questions"):
        read_questions(tmp_path / "empty.jsonl")


def test_authors_format(tmp_path):
    items = [
        {"context": "The lobster is", "sentence_true": " blue above.", "sentence_false": "red above.", "location": 3},
        {"context": "It weighs", "sentence_true": "6 kilograms.", "sentence_false": "9 kilograms.", "location": "7"},
        {"context": "It lives in", "sentence_true": "the sea.", "sentence_false": "a lake.", "location": "intro"},
    ]
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(items, indent=1))
    qs = read_questions(path)
    assert [(q.context, q.true, q.false, q.paragraph, q.split) for q in qs] == [
        ("The lobster is", "blue above.", "red above.", 3, -1),
        ("It weighs", "6 kilograms.", "9 kilograms.", 7, -1),
        ("It lives in", "the sea.", "a lake.", -1, -1),
    ]
    assert qs[0].generator == "authors" and qs[2].source == "authors.json:location=intro"
    assigned = assign_splits(qs[:2], [0, 0, 0, 0, 1, 1, 1, 1])
    assert [q.split for q in assigned] == [0, 1]
    with pytest.raises(FortifaiError, match="paragraph -1 is outside the corpus"):
        assign_splits(qs[2:], [0, 1])
    del items[1]["sentence_false"]
    path.write_text(json.dumps(items))
    with pytest.raises(FortifaiError, match=r"authors.json: item 1: missing field\(s\) sentence_false"):
        read_questions(path)
    path.write_text('[{"context": "a",\n "sentence_true": }]')
    with pytest.raises(FortifaiError, match=r"authors.json:2: invalid JSON"):
        read_questions(path)
    path.write_text('{"context": "a"}')  # one object, not a list: read as JSON Lines, missing fields
    with pytest.raises(FortifaiError, match=r"authors.json:1: missing field"):
        read_questions(path)


# ---------------------------------------------------------------- quality filter


def test_quality_filter_drops_each_reason_once():
    questions = [
        _q(0),
        _q(1),                                                     # duplicate of 0
        _q(2, true="long.", false="long."),                        # identical
        _q(3, true="long.", false="  long. "),                     # identical after whitespace
        _q(4, context=" "),                                        # empty context
        _q(5, false=""),                                           # empty false
        _q(6, true="one two three four five six seven eight.", false="a b c d e f g h."),  # long diff
        _q(7, true="flows north to the sea.", false="flows south to the sea."),
    ]
    kept, report = filter_questions(questions, max_diff_words=6)
    assert [q.id for q in kept] == ["t/0", "t/7"]
    assert report.to_dict()["dropped"] == {"empty": 2, "identical": 2, "long_diff": 1, "duplicate": 1}
    assert report.total == 8 and report.kept == 2 and report.examples["duplicate"] == "t/1"
    assert "2 of 8 kept" in report.format()


def test_question_validates_types():
    with pytest.raises(FortifaiError, match="'true' must be text"):
        _q(true=3)
    with pytest.raises(FortifaiError, match="'paragraph' must be an integer"):
        _q(paragraph=True)
