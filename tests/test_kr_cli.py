"""`fortifai-bench kr build|stats` and `corpus list|show` end to end, through the real CLI entry point."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from fortifai_bench.cli import main
from fortifai_bench.corpora import get_corpus
from fortifai_bench.kr.schema import read_questions


def test_kr_build_rules_on_wikitext_valid(tmp_path, wikitext_dir, capsys):
    out = tmp_path / "kr_wiki.jsonl"
    rc = main(["kr", "build", "--corpus", "wikitext-2-raw-v1", "--part", "valid", "--data-dir", str(wikitext_dir),
               "--generator", "rules", "--splits", "6", "--out", str(out)])
    assert rc == 0
    assert f"to {out}" in capsys.readouterr().out
    questions = read_questions(out)
    corpus = get_corpus("wikitext-2-raw-v1", data_dir=wikitext_dir, part="valid")
    split_of = corpus.split_of(6)
    assert all(q.split == split_of[q.paragraph] for q in questions)
    assert set(Counter(q.split for q in questions)) == set(range(6))
    assert {q.generator for q in questions} == {"rules@1"} and {q.source for q in questions} == {
        "wikitext-2-raw-v1:valid"}
    assert len({q.id for q in questions}) == len(questions)
    assert questions[0].id.startswith("wikitext-2-raw-v1/valid/a000/p")

    assert main(["kr", "stats", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{len(questions)} questions" in text and "per split:" in text and "rules@1: " in text
    assert f"quality: {len(questions)} of {len(questions)} kept" in text
    assert main(["kr", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert sum(stats["by_split"].values()) == len(questions) == stats["quality"]["kept"]


def test_kr_build_facts_matches_shipped_file(tmp_path):
    out = tmp_path / "kr_facts.jsonl"
    assert main(["kr", "build", "--corpus", "facts", "--generator", "facts", "--splits", "6", "--out", str(out)]) == 0
    from fortifai_bench.resources import data_dir

    assert out.read_bytes() == (data_dir() / "facts" / "kr.jsonl").read_bytes()
    questions = read_questions(out)
    assert [sum(q.split == k for q in questions) > 100 for k in range(6)] == [True] * 6


def test_kr_stats_reports_what_the_filter_would_drop(tmp_path, capsys):
    path = tmp_path / "authors.json"
    path.write_text(json.dumps([
        {"context": "A", "sentence_true": "b.", "sentence_false": "c.", "location": 0},
        {"context": "A", "sentence_true": "b.", "sentence_false": "c.", "location": 0},
        {"context": "A", "sentence_true": "b.", "sentence_false": "b.", "location": 1},
    ]))
    assert main(["kr", "stats", str(path)]) == 0
    text = capsys.readouterr().out
    assert "unassigned: 3" in text and "authors: 3" in text
    assert "1 of 3 kept; dropped: empty 0, identical 1, long_diff 0, duplicate 1" in text


@pytest.mark.parametrize("args,message", [
    (["--corpus", "nope", "--generator", "rules", "--splits", "2"], "unknown corpus 'nope'; known: facts"),
    (["--corpus", "facts", "--generator", "rules", "--splits", "500"], "180 paragraphs, fewer than the 500 splits"),
    (["--corpus", "facts", "--generator", "facts", "--splits", "0"], "positive integer"),
    (["--corpus", "wikitext-2-raw-v1", "--part", "valid", "--generator", "facts", "--splits", "2"],
     "needs the facts corpus"),
    (["--corpus", "facts", "--generator", "openai", "--splits", "6"], "needs --llm"),
])
def test_kr_build_bad_input_errors_and_writes_nothing(tmp_path, wikitext_dir, capsys, args, message):
    out = tmp_path / "out.jsonl"
    rc = main(["kr", "build", *args, "--out", str(out), "--data-dir", str(wikitext_dir)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("fortifai-bench: error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_kr_build_empty_text_corpus_errors(tmp_path, capsys):
    src = tmp_path / "blank.txt"
    src.write_text("\n\n   \n")
    out = tmp_path / "out.jsonl"
    assert main(["kr", "build", "--corpus", f"text:{src}", "--generator", "rules", "--splits", "1",
                 "--out", str(out)]) == 2
    assert "has no paragraphs" in capsys.readouterr().err and not out.exists()
    # a corpus with paragraphs but nothing a rule can change: no questions is an error, not an empty file
    src.write_text("one sentence only\n\nand another without anything\n")
    assert main(["kr", "build", "--corpus", f"text:{src}", "--generator", "rules", "--splits", "2",
                 "--out", str(out)]) == 2
    assert "made no usable questions" in capsys.readouterr().err and not out.exists()


def test_kr_build_on_a_text_file(tmp_path):
    src = tmp_path / "story.txt"
    src.write_text(
        "The Velna River rises in Aldmere. It was first mapped in 1843 by Orvel Tamsin. It is 420 kilometres long.\n\n"
        "Brastow is a city on the coast. It was founded in 1712 by Selmo Dan. The city has two harbours.\n"
    )
    out = tmp_path / "q.jsonl"
    assert main(["kr", "build", "--corpus", f"text:{src}", "--generator", "rules", "--splits", "2",
                 "--out", str(out), "--max-per-paragraph", "1"]) == 0
    questions = read_questions(out)
    assert [(q.paragraph, q.split) for q in questions] == [(0, 0), (1, 1)]
    assert questions[0].true == "It was first mapped in 1843 by Orvel Tamsin."
    assert questions[0].context == "The Velna River rises in Aldmere."


def test_corpus_list_and_show(capsys, wikitext_dir):
    assert main(["corpus", "list"]) == 0
    from fortifai_bench.corpora import known_corpora

    listed = capsys.readouterr().out.split()
    assert listed == known_corpora()
    assert {"facts", "wikitext-2-raw-v1", "text:PATH", "jsonl:PATH:FIELD"} <= set(listed)
    assert main(["corpus", "show", "facts", "--splits", "6", "-n", "1"]) == 0
    text = capsys.readouterr().out
    assert "facts part main: 180 paragraphs" in text and "splits (6): 30, 30, 30, 30, 30, 30" in text
    assert "[facts/p0000]" in text and "[facts/p0001]" not in text
    assert main(["corpus", "show", "wikitext-2-raw-v1", "--part", "test", "--data-dir", str(wikitext_dir),
                 "-n", "0"]) == 0
    assert "wikitext-2-raw-v1 part test:" in capsys.readouterr().out
