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
    assert f"{len(questions)} of {len(questions)} distinct questions meet them all" in text  # built: filtered
    assert f"duplicates:    {len(questions)} items, all distinct" in text
    assert main(["kr", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert sum(stats["by_split"].values()) == len(questions) == stats["quality"]["meet_all"]


def test_kr_build_facts_matches_shipped_file(tmp_path):
    out = tmp_path / "kr_facts.jsonl"
    assert main(["kr", "build", "--corpus", "facts", "--generator", "facts", "--splits", "6", "--out", str(out)]) == 0
    from fortifai_bench.resources import data_dir

    assert out.read_bytes() == (data_dir() / "facts" / "kr.jsonl").read_bytes()
    questions = read_questions(out)
    assert [sum(q.split == k for q in questions) > 100 for k in range(6)] == [True] * 6


def test_kr_stats_describes_what_the_rules_say(tmp_path, capsys):
    path = tmp_path / "authors.json"
    path.write_text(json.dumps([
        {"context": "A", "sentence_true": "b.", "sentence_false": "c.", "location": 0},
        {"context": "A", "sentence_true": "b.", "sentence_false": "c.", "location": 0},
        {"context": "A", "sentence_true": "b.", "sentence_false": "b.", "location": 1},
    ]))
    assert main(["kr", "stats", str(path)]) == 0
    text = capsys.readouterr().out
    assert "unassigned: 3" in text and "authors: 3" in text
    assert "3 items (2 distinct questions)" in text
    assert "duplicates:    3 items, 2 distinct questions; 1 repeated question(s) make up 2 items (66.7%)" in text
    assert "1 of 2 distinct questions meet them all; empty 0, identical 1 (neither can be scored), long_diff 0" in text


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


def _authors_rows(n_locations: int, per_location: int = 2, lengthen_every: int = 0) -> list[dict]:
    rows = []
    for loc in range(n_locations):
        for i in range(per_location):
            true = f"the river number {loc} runs east"
            false = f"the river number {loc} runs west"
            if lengthen_every and (loc * per_location + i) % lengthen_every:
                true += " for ever more"  # true longer than false
            rows.append({"context": f"Fact {loc}.{i}:", "sentence_true": true, "sentence_false": false,
                         "location": loc})
    return rows


def test_kr_stats_summarises_an_authors_file(tmp_path, capsys):
    """610 locations: the text summarises (counts, a few largest); --json holds the full breakdown."""
    path = tmp_path / "authors.json"
    path.write_text(json.dumps(_authors_rows(610)))
    assert main(["kr", "stats", str(path)]) == 0
    text = capsys.readouterr().out
    source_line = next(line for line in text.splitlines() if line.startswith("per source:"))
    assert "610 distinct, 2..2 each; largest: " in source_line and "(--json for all)" in source_line
    assert len(source_line) < 300 and source_line.count("location=") == 5
    assert "chance (chars): true longer 0.0%, shorter 0.0%, ties 100.0%" in text
    assert main(["kr", "stats", str(path), "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert len(full["by_source"]) == 610 and full["length_bias"]["chars"]["length_only_acc"] == 0.5


def test_length_bias_on_a_deliberately_biased_set(tmp_path, capsys):
    """True longer in 3 of 4 items: a pick-the-shorter guesser scores 0.25, a pick-the-longer one 0.75."""
    from fortifai_bench.kr.quality import length_bias
    from fortifai_bench.models import build_tiny

    path = tmp_path / "biased.json"
    path.write_text(json.dumps(_authors_rows(20, per_location=2, lengthen_every=4)))
    questions = read_questions(path)
    texts = [r[k] for r in _authors_rows(20, 1, 2) for k in ("sentence_true", "sentence_false")]
    _, tokenizer = build_tiny(texts * 5, seed=0)
    bias = length_bias(questions, tokenizer)
    assert bias["questions"] == 40
    for unit in ("chars", "tokens"):
        b = bias[unit]
        assert (b["true_longer"], b["true_shorter"], b["ties"]) == (0.75, 0.0, 0.25), unit
        assert (b["shorter_guess_acc"], b["longer_guess_acc"], b["length_only_acc"]) == (0.125, 0.875, 0.875)
    assert main(["kr", "stats", str(path)]) == 0
    assert "pick-the-shorter guesser 0.125, best length-only guesser 0.875" in capsys.readouterr().out
    symmetric = length_bias(questions[:1])
    assert symmetric["chars"]["length_only_acc"] == 0.5  # one tie: nothing to guess from


def test_calibrated_kr_cancels_what_the_base_model_already_preferred():
    from types import SimpleNamespace

    from fortifai_bench.kr.quality import calibrated_kr

    # the base prefers the (shorter) false continuation everywhere; the model a little less so on 3 of 4
    base = SimpleNamespace(ids=list("abcd"), logp_true=[-10.0, -10.0, -10.0, -10.0], logp_false=[-8.0] * 4)
    model = SimpleNamespace(ids=list("abcd"), logp_true=[-9.0, -9.5, -9.0, -11.0], logp_false=[-8.0] * 4)
    out = calibrated_kr(model, base)
    assert out == {"questions": 4, "acc": 0.0, "base_acc": 0.0, "acc_over_base": 0.75}
    assert calibrated_kr(base, base)["acc_over_base"] == 0.5  # no better than its base: chance, whatever the bias
    with pytest.raises(ValueError, match="different questions"):
        calibrated_kr(model, SimpleNamespace(ids=list("abce"), logp_true=base.logp_true, logp_false=base.logp_false))


def test_kr_help_names_defaults_and_quiet_alias(capsys):
    with pytest.raises(SystemExit):
        main(["kr", "build", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: 5)" in text and "(default: main)" in text and "--quiet, --no-progress" in text
    assert "span in words (default: 6)" in text and "(default: None)" not in text  # real defaults, not "None"
    with pytest.raises(SystemExit):
        main(["kr", "stats", "--help"])
    assert "--tokenizer" in capsys.readouterr().out


def test_kr_build_quiet_and_the_protocol_cut(tmp_path, capsys):
    out = tmp_path / "q.jsonl"
    assert main(["kr", "build", "--corpus", "facts", "--generator", "facts", "--splits", "3",
                 "--paragraphs-per-split", "10", "--out", str(out), "--no-progress"]) == 0
    assert "facts:main, 30 paragraphs, 3 splits" in capsys.readouterr().out
    questions = read_questions(out)
    assert all(q.split == q.paragraph // 10 for q in questions) and max(q.paragraph for q in questions) < 30
