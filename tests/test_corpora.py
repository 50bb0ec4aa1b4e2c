"""Corpora: registry, stable ids, even splits, facts generation, wikitext parsing, file corpora."""

from __future__ import annotations

import json

import pytest

from fortifai_bench.corpora import Corpus, Paragraph, get_corpus, known_corpora, register_corpus
from fortifai_bench.corpora.facts import PLACES, PROFESSIONS, PRODUCTS, FactsConfig, build_facts
from fortifai_bench.corpora.wikitext import parse_wikitext
from fortifai_bench.errors import FortifaiError
from fortifai_bench.resources import data_dir


def _corpus(n):
    return Corpus("toy", "test", [Paragraph(f"toy/p{i}", f"text {i}") for i in range(n)])


@pytest.mark.parametrize("n_paragraphs,n_splits", [(180, 6), (181, 6), (185, 6), (7, 7), (10, 1), (1841, 6)])
def test_splits_are_an_even_contiguous_cut(n_paragraphs, n_splits):
    corpus = _corpus(n_paragraphs)
    splits = corpus.splits(n_splits)
    sizes = [len(s) for s in splits]
    assert sum(sizes) == n_paragraphs and max(sizes) - min(sizes) <= 1
    # the remainder goes to the first splits, one paragraph each
    assert sizes == sorted(sizes, reverse=True)
    assert [p for s in splits for p in s] == list(corpus.paragraphs)  # contiguous, in order
    split_of = corpus.split_of(n_splits)
    assert split_of == [k for k, s in enumerate(splits) for _ in s]
    assert corpus.splits(n_splits) == splits  # stable


def test_split_errors():
    corpus = _corpus(5)
    with pytest.raises(FortifaiError, match="5 paragraphs, fewer than the 6 splits"):
        corpus.splits(6)
    with pytest.raises(FortifaiError, match="positive integer"):
        corpus.splits(0)
    with pytest.raises(FortifaiError, match="no paragraphs"):
        Corpus("empty", "nowhere", [])
    with pytest.raises(FortifaiError, match="duplicate paragraph id"):
        Corpus("dup", "x", [Paragraph("a", "x"), Paragraph("a", "y")])


def test_unknown_corpus_lists_known_ones():
    with pytest.raises(FortifaiError, match=r"unknown corpus 'nope'; known: .*facts.*wikitext-2-raw-v1.*text:PATH"):
        get_corpus("nope")


def test_register_corpus_is_used_by_get_corpus(monkeypatch):
    import fortifai_bench.corpora as corpora

    monkeypatch.setattr(corpora, "_REGISTRY", corpora._REGISTRY.copy())  # leave no test corpus behind
    calls = []

    def loader(data_dir, part):
        calls.append((data_dir, part))
        return Corpus("mine", "memory", [Paragraph("mine/p0", "hello world")], part=part)

    register_corpus("test-mine", loader)
    assert "test-mine" in known_corpora()
    c = get_corpus("test-mine", data_dir="/x", part="other")
    assert calls == [("/x", "other")] and c.texts() == ["hello world"]
    register_corpus("test-bad", lambda d, p: "not a corpus")
    with pytest.raises(FortifaiError, match="not a Corpus"):
        get_corpus("test-bad")


# ---------------------------------------------------------------- facts


def test_facts_main_is_deterministic_with_stable_ids():
    a, b = get_corpus("facts"), get_corpus("facts")
    assert a == b and len(a) == 180
    assert [p.id for p in a.paragraphs[:3]] == ["facts/p0000", "facts/p0001", "facts/p0002"]
    assert [len(s) for s in a.splits(6)] == [30] * 6
    other = build_facts(FactsConfig(seed=1))
    assert other.texts() != a.texts()
    # main does not depend on the size of the pretrain part
    assert build_facts(FactsConfig(pretrain_paragraphs=50)).texts() == a.texts()


def test_facts_paragraphs_are_short_and_every_kind_is_in_every_split():
    corpus = get_corpus("facts")
    for p in corpus.paragraphs:
        sentences = p.text.count(". ") + 1
        assert 3 <= sentences <= 5, p.text
        assert 12 <= len(p.text.split()) <= 40, p.text
        # the entity is named in the first sentence, so a question's context identifies it
        assert p.meta["entity"] in p.text.split(".")[0]
    for split in corpus.splits(6):
        kinds = [p.meta["kind"] for p in split]
        assert {k: kinds.count(k) for k in set(kinds)} == {k: 6 for k in
                                                            ("person", "city", "river", "company", "mountain")}


def test_facts_meta_locates_every_fact_exactly():
    for p in get_corpus("facts").paragraphs:
        assert p.meta["facts"], p.id
        for f in p.meta["facts"]:
            assert p.text[f["start"]:f["end"]] == f["value"]
            assert p.text[f["sentence_end"] - 1] == "."
            if f["slot"] == "year":
                assert 1700 <= int(f["value"]) <= 1999
            if f["slot"] == "place":
                assert f["value"] in PLACES


def test_facts_people_die_after_they_are_born():
    for p in get_corpus("facts").paragraphs:
        values = {f["attribute"]: f["value"] for f in p.meta["facts"]}
        if "death_year" in values:
            assert 30 <= int(values["death_year"]) - int(values["birth_year"]) <= 80


def test_facts_pretrain_part_disjoint_entities_same_value_vocabulary():
    main, pre = get_corpus("facts"), get_corpus("facts", part="pretrain")
    assert len(pre) == 1000 and pre.part == "pretrain" and pre.paragraphs[0].id == "facts/pretrain/p0000"
    main_entities = {p.meta["entity"] for p in main.paragraphs}
    pre_entities = {p.meta["entity"] for p in pre.paragraphs}
    assert not main_entities & pre_entities
    assert not {p.text for p in main.paragraphs} & {p.text for p in pre.paragraphs}

    def values(corpus, slot):
        return {f["value"] for p in corpus.paragraphs for f in p.meta["facts"] if f["slot"] == slot}

    for slot in ("place", "profession", "product"):
        # every value of main was seen in pretraining: only the facts are new, not the words
        assert values(main, slot) <= values(pre, slot), slot
    assert values(pre, "place") == set(PLACES)
    assert values(pre, "profession") == set(PROFESSIONS) and values(pre, "product") == set(PRODUCTS)
    assert get_corpus("facts", part="pretrain") == pre  # deterministic
    with pytest.raises(FortifaiError, match="unknown part 'x'"):
        get_corpus("facts", part="x")


def test_shipped_facts_data_is_reproducible(tmp_path):
    from fortifai_bench.cli import main

    assert main(["corpus", "build-facts", "--out", str(tmp_path)]) == 0
    shipped = data_dir() / "facts"
    for name in ("corpus.jsonl", "kr.jsonl"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name
        assert (shipped / name).stat().st_size < 1_000_000
    rows = [json.loads(line) for line in (shipped / "corpus.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [p.id for p in get_corpus("facts").paragraphs]
    assert [r["text"] for r in rows] == get_corpus("facts").texts()


def test_facts_config_validates():
    with pytest.raises(FortifaiError, match="paragraphs must be an integer"):
        FactsConfig(paragraphs=2)


# ---------------------------------------------------------------- wikitext


def test_wikitext_parse_articles_sections_and_ids():
    lines = [" ", " = Alpha = ", " ", " First para . ", " = = History = = ", " Second para . ",
             " = = = Early = = = ", " Third . ", " = Beta = ", " Beta text . ", ""]
    paras = parse_wikitext(lines, "valid")
    assert [p.id for p in paras] == ["wikitext-2-raw-v1/valid/a000/p00", "wikitext-2-raw-v1/valid/a000/p01",
                                     "wikitext-2-raw-v1/valid/a000/p02", "wikitext-2-raw-v1/valid/a001/p00"]
    assert [p.text for p in paras] == ["First para .", "Second para .", "Third .", "Beta text ."]
    assert [(p.meta["title"], p.meta["section"]) for p in paras] == [
        ("Alpha", ""), ("Alpha", "History"), ("Alpha", "Early"), ("Beta", "")]


def test_wikitext_local_folder(wikitext_dir, monkeypatch):
    monkeypatch.delenv("FORTIFAI_DATA_DIR", raising=False)
    valid = get_corpus("wikitext-2-raw-v1", data_dir=wikitext_dir, part="valid")
    assert valid.part == "valid" and len(valid) == 1841
    assert valid.paragraphs[0].id == "wikitext-2-raw-v1/valid/a000/p00"
    assert valid.paragraphs[0].text.startswith("Homarus gammarus , known as the European lobster")
    assert valid.paragraphs[0].meta["title"] == "Homarus gammarus"
    assert not any(p.text.startswith("= ") for p in valid.paragraphs)
    assert len({p.meta["article"] for p in valid.paragraphs}) == 60
    # the parent folder works too, and so does the environment variable
    monkeypatch.setenv("FORTIFAI_DATA_DIR", str(wikitext_dir.parent))
    test = get_corpus("wikitext-2-raw-v1", part="test")
    assert test.source.endswith("wiki.test.raw") and test.paragraphs[0].id.startswith("wikitext-2-raw-v1/test/")
    with pytest.raises(FortifaiError, match="part 'main' needs .*wiki.train.raw, which does not exist"):
        get_corpus("wikitext-2-raw-v1", data_dir=wikitext_dir)
    with pytest.raises(FortifaiError, match="unknown part 'dev'"):
        get_corpus("wikitext-2-raw-v1", data_dir=wikitext_dir, part="dev")


def test_wikitext_errors_without_data(tmp_path, monkeypatch):
    with pytest.raises(FortifaiError, match="no wiki.*raw files in"):
        get_corpus("wikitext-2-raw-v1", data_dir=tmp_path, part="valid")
    # offline with no local folder: a clear error pointing at --data-dir (conftest sets HF offline)
    monkeypatch.delenv("FORTIFAI_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    with pytest.raises(FortifaiError, match="cannot load split 'validation' from the Hugging Face Hub.*--data-dir"):
        get_corpus("wikitext-2-raw-v1", part="valid")


# ---------------------------------------------------------------- text: and jsonl:


def test_text_file_paragraphs_at_blank_lines(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("First line\ncontinues here.\n\n  \nSecond paragraph.\n\n\nThird.\n", encoding="utf-8")
    c = get_corpus(f"text:{f}")
    assert c.texts() == ["First line continues here.", "Second paragraph.", "Third."]
    assert [p.id for p in c.paragraphs] == ["notes/p0000", "notes/p0001", "notes/p0002"]
    with pytest.raises(FortifaiError, match="only the part 'main'"):
        get_corpus(f"text:{f}", part="pretrain")


def test_jsonl_file_field(tmp_path):
    f = tmp_path / "docs.jsonl"
    f.write_text(json.dumps({"body": "A one.\n\nA two."}) + "\n" + json.dumps({"body": "B one."}) + "\n")
    c = get_corpus(f"jsonl:{f}:body")
    assert c.texts() == ["A one.", "A two.", "B one."]
    assert [p.id for p in c.paragraphs] == ["docs/r0000/p00", "docs/r0000/p01", "docs/r0001/p00"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "ok"}) + "\n{not json\n")
    with pytest.raises(FortifaiError, match=r"bad.jsonl:2: invalid JSON"):
        get_corpus(f"jsonl:{bad}:body")
    with pytest.raises(FortifaiError, match=r"docs.jsonl:1: missing field\(s\) text"):
        get_corpus(f"jsonl:{f}:text")
    with pytest.raises(FortifaiError, match="expected jsonl:PATH:FIELD"):
        get_corpus(f"jsonl:{f}:")


@pytest.mark.parametrize("content", ["", "\n  \n\n", b"\xff\xfe\x00bad"])
def test_empty_or_unreadable_text_corpus(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(FortifaiError, match=r"empty\.txt"):
        get_corpus(f"text:{f}")
    with pytest.raises(FortifaiError, match="cannot read .*missing.txt"):
        get_corpus(f"text:{tmp_path / 'missing.txt'}")


def test_builtin_corpora_are_found_not_imported_by_name():
    """The registry lists the package's corpora as lazy "module:loader" targets: importing it imports none of
    their modules (only corpora.corpus, the Corpus type, and corpora.files, the registry's own `text:` and
    `jsonl:` forms), and every one is listed (a subprocess: a clean import)."""
    import subprocess
    import sys

    code = ("import sys, fortifai_bench.corpora as c; "
            "before = sorted(m for m in sys.modules if m.startswith('fortifai_bench.corpora.') "
            "and m not in ('fortifai_bench.corpora.corpus', 'fortifai_bench.corpora.files')); "

            "names = c.known_corpora(); print(before, names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] ") and all(n in out for n in ("facts", "wikitext-2-raw-v1", "imagination-of-web"))
