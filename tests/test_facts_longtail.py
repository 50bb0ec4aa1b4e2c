"""facts-longtail: the skewed prior, its shipped data, its tagged KR questions, and KR per tag in a real
micro collapse run (while the untagged facts set and its records stay as they were)."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from fortifai_bench.cli import main as cli_main
from fortifai_bench.corpora import get_corpus
from fortifai_bench.corpora.facts import CATEGORIES, LONGTAIL, FactsConfig, build_facts
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import read_questions
from fortifai_bench.resources import data_dir

SHIPPED = data_dir() / "facts-longtail"


def _classed(corpus):
    return [(p, k, f) for p in corpus.paragraphs for k, f in enumerate(p.meta["facts"]) if "frequency" in f]


def test_the_prior_is_skewed_the_same_way_in_both_parts():
    main, pre = get_corpus("facts-longtail"), get_corpus("facts-longtail", part="pretrain")
    assert main.name == "facts-longtail" and main.paragraphs[0].id == "facts-longtail/p0000"
    assert pre.paragraphs[0].id == "facts-longtail/pretrain/p0000" and len(main) == 180 and len(pre) == 1000
    assert not {p.meta["entity"] for p in main.paragraphs} & {p.meta["entity"] for p in pre.paragraphs}
    for corpus in (main, pre):
        for p, _, f in _classed(corpus):
            assert f["slot"] in CATEGORIES and f["frequency"] == LONGTAIL.frequency(f["slot"], f["value"]), p.id
        # only the categorical slots are classed; years, numbers and relations are not
        assert all(("frequency" in f) == (f["slot"] in CATEGORIES) for p in corpus.paragraphs for f in p.meta["facts"])
    counts = Counter(f["frequency"] for _, _, f in _classed(pre))
    assert 0.55 < counts["mode"] / sum(counts.values()) < 0.65  # 60% of the mass on 3 values per slot
    for slot, values in CATEGORIES.items():
        ranking = LONGTAIL.ranking(slot)
        assert sorted(ranking) == sorted(values) and LONGTAIL.weights(slot)[0] > LONGTAIL.weights(slot)[-1]
        seen = Counter(f["value"] for _, _, f in _classed(pre) if f["slot"] == slot)
        # the three most frequent values of pretraining are the modes: what the base learns as its prior
        assert {v for v, _ in seen.most_common(3)} == set(ranking[:3]), slot
        main_values = {f["value"] for _, _, f in _classed(main) if f["slot"] == slot}
        assert main_values <= set(seen), slot  # no value of main is new to the base
    assert get_corpus("facts-longtail") == main  # deterministic
    # the uniform corpus is untouched by the option: no class in its meta
    assert not _classed(get_corpus("facts")) and FactsConfig().name == "facts"


def test_skew_settings_are_validated():
    with pytest.raises(FortifaiError, match="modes must be an integer in 0..11"):
        FactsConfig(modes=12)
    with pytest.raises(FortifaiError, match="mode_share must be a number in"):
        FactsConfig(modes=3, mode_share=0.2)  # 3 of 12 values hold 0.25 of the mass when uniform
    with pytest.raises(FortifaiError, match="unknown part 'x'"):
        build_facts(LONGTAIL, part="x")


def test_longtail_450_holds_more_tail_facts_per_split(tmp_path):
    """Issue 26 item 2: facts-longtail-450 (collapse_facts_longtail v3's corpus: 75 paragraphs per split, the
    tail's share 0.5) asks about 52 tail facts on split 0, where facts-longtail (v2's) asks about 18; the
    modes stay the prior's frequent values; `corpus build-facts` writes its 450 paragraphs and the same
    questions the protocol builds. facts-longtail's own bytes: the test below."""
    from fortifai_bench.corpora.facts import LONGTAIL_450
    from fortifai_bench.kr.sets import kr_set

    def split0_facts(corpus, per_split, tag):
        return {q.id.split(".")[0] for q in kr_set(corpus, paragraphs_per_split=per_split).split(0) if q.tag == tag}

    assert len(split0_facts("facts-longtail", 30, "tail")) == 18
    assert len(split0_facts("facts-longtail-450", 75, "tail")) == 52
    assert len(split0_facts("facts-longtail-450", 75, "mode")) == 52
    main, pre = get_corpus("facts-longtail-450"), get_corpus("facts-longtail-450", part="pretrain")
    assert (main.name, len(main), len(pre), main.paragraphs[0].id) == ("facts-longtail-450", 450, 1000,
                                                                       "facts-longtail-450/p0000")
    assert not {p.meta["entity"] for p in main.paragraphs} & {p.meta["entity"] for p in pre.paragraphs}
    counts = Counter(f["frequency"] for _, _, f in _classed(pre))
    assert 0.45 < counts["mode"] / sum(counts.values()) < 0.55  # half the mass on 3 values per slot
    for slot in CATEGORIES:
        seen = Counter(f["value"] for _, _, f in _classed(pre) if f["slot"] == slot)
        assert {v for v, _ in seen.most_common(3)} == set(LONGTAIL_450.ranking(slot)[:3]), slot
    assert cli_main(["corpus", "build-facts", "--corpus", "facts-longtail-450", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == main.texts()
    built = kr_set("facts-longtail-450", paragraphs_per_split=75).questions
    assert [(q.id, q.false) for q in read_questions(tmp_path / "kr.jsonl")] == [(q.id, q.false) for q in built]
    with pytest.raises(FortifaiError, match="variant must be lower-case letters and digits"):
        FactsConfig(modes=3, variant="x/y")


def test_shipped_longtail_data_is_reproducible(tmp_path):
    assert cli_main(["corpus", "build-facts", "--corpus", "facts-longtail", "--out", str(tmp_path)]) == 0
    for name in ("corpus.jsonl", "kr.jsonl"):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name
    rows = [json.loads(line) for line in (SHIPPED / "corpus.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == get_corpus("facts-longtail").texts()


def test_tagged_questions_cross_classes_and_name_their_fact():
    corpus = get_corpus("facts-longtail")
    questions = read_questions(SHIPPED / "kr.jsonl")
    classes = {(f["slot"], f["value"]): f["frequency"] for _, _, f in _classed(corpus)}
    per_fact = Counter()
    for q in questions:
        # the id pattern of data/facts/kr.jsonl: <paragraph id>/q<fact index>[.<distractor>]
        m = re.fullmatch(r"(facts-longtail/p\d{4})/q(\d+)(?:\.\d+)?", q.id)
        assert m, q.id
        p = corpus.paragraphs[q.paragraph]
        assert p.id == m.group(1)
        f = p.meta["facts"][int(m.group(2))]
        assert q.tag == f["frequency"] and q.context == p.text[:f["start"]].rstrip()
        rest = p.text[f["end"]:f["sentence_end"]]
        assert q.true == f["value"] + rest and q.false.endswith(rest)
        false_value = q.false[: len(q.false) - len(rest)]
        assert classes[(f["slot"], false_value)] != q.tag, q.id  # a tail question's false value is a mode
        per_fact[m.group(0).split(".")[0]] += 1
    assert {q.tag for q in questions} == {"mode", "tail"}
    assert max(per_fact.values()) == 3 and min(per_fact.values()) >= 1
    split0 = Counter(q.tag for q in questions if q.split == 0)
    assert split0["tail"] >= 40 and split0["mode"] >= 40
    # the uniform facts set stays untagged (and its file has no tag field: test_corpora checks its bytes)
    assert all(q.tag is None for q in read_questions(data_dir() / "facts" / "kr.jsonl"))


def test_a_tag_must_be_text(tmp_path):
    row = json.loads((SHIPPED / "kr.jsonl").read_text().splitlines()[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({**row, "tag": 3}) + "\n")
    with pytest.raises(FortifaiError, match=r"bad.jsonl:1: .*field 'tag' must be non-empty text or absent"):
        read_questions(path)


MICRO = [
    "stages=2", "paragraphs_per_split=6", "train.epochs=2", "train.batch_size=4",
    "model.tiny.n_layer=1", "model.tiny.n_embd=32", "model.tiny.n_head=2", "model.tiny.vocab_size=512",
    "model.pretrain.paragraphs=60", "model.pretrain.train.epochs=2",
    "regenerate.block=8", "regenerate.prompt=4", "eval.heldout_paragraphs=5",
]


def test_micro_longtail_run_reports_kr_per_tag(tmp_path, capsys):
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.protocol import load_data
    from fortifai_bench.results import load_results

    args = [x for item in MICRO for x in ("--set", item)]
    assert cli_main(["collapse", "--task", "collapse_facts_longtail", "--loss", "ce", "--seeds", "0",
                     "--threads", "1", "--out", str(tmp_path), *args]) == 0
    out = capsys.readouterr().out
    assert re.search(r"stage 1: KR-split-0 \d\.\d{3}  mode \d\.\d{3}  tail \d\.\d{3}  KR-total", out)
    assert re.search(r"\n  mode +\d\.\d{3}\n  tail +\d\.\d{3}\nM_1 ", out)  # the table: beneath each stage
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    results = load_results(run)  # the schema accepts the new fields
    task = load_task("collapse_facts_longtail", MICRO)
    tags = [q.tag for q in load_data(task).questions if q.split == 0]
    for stage, bits in zip(results["stages"], results["items"]["split0_correct"]):
        for tag in ("mode", "tail"):
            mine = [b for b, t in zip(bits, tags) if t == tag]
            assert stage["score_by_tag"][tag] == pytest.approx(mine.count("1") / len(mine))
            assert stage["kr_by_tag"][tag]["0"] == stage["score_by_tag"][tag]
            assert stage["kr_questions_by_tag"][tag]["0"] == len(mine)
        assert set(stage["kr_by_tag"]["tail"]) == {"0", "1"}
    assert set(results["chance"]["base_model"]["kr_split0_by_tag"]) == {"mode", "tail"}


def test_compare_resamples_and_pairs_only_the_headline_tag(tmp_path):
    """With `eval.score_tag: tail` the headline is the tail questions' KR, so compare's fact bootstrap and
    McNemar read those questions' bits, not every split-0 question's."""
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.protocol import load_data
    from fortifai_bench.compare import compare_runs, format_report, question_clusters
    from fortifai_bench.results import load_results

    args = [x for item in MICRO for x in ("--set", item)]
    assert cli_main(["collapse", "--task", "collapse_facts_longtail", "--loss", "ce", "--seeds", "0", "--control",
                     "--threads", "1", "--out", str(tmp_path), "--quiet", *args]) == 0
    ce, control = sorted((p for p in tmp_path.iterdir() if p.is_dir()), key=lambda p: "control" in p.name)
    tags = [q.tag for q in load_data(load_task("collapse_facts_longtail", MICRO)).questions if q.split == 0]
    res = compare_runs([str(ce)], [str(control)])
    [pair] = res["mcnemar"]["pairs"]
    assert pair["n"] == tags.count("tail") < len(tags)
    labels, what, keep = question_clusters(load_results(ce))
    assert len(labels) == keep.sum() == tags.count("tail") and "questions tagged 'tail') resampled" in what
    assert [t for t, k in zip(tags, keep) if k] == ["tail"] * len(labels)
    assert "kr_split0_tail items" in format_report(res)


def test_an_untagged_set_adds_no_field_and_no_column():
    from fortifai_bench.collapse.evaluate import _by_tag
    from fortifai_bench.collapse.progress import tag_columns

    questions = read_questions(data_dir() / "facts" / "kr.jsonl")
    assert _by_tag(questions, [True] * len(questions)) == {}
    assert tag_columns({"score": 0.9}) == ""
    assert tag_columns({"score_by_tag": {"mode": 0.958, "tail": 0.885}}) == "  mode 0.958  tail 0.885"
