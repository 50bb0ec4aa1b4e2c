"""A KR file shaped like the authors' (kt_dataset_full.json: 4,880 items, 952 distinct questions, 8 of them 492
times each): the duplicates reported exactly, each question scored once by lm-eval's kr_file by default and every
item with `duplicates: as_in_file`, the same report from `kr stats`, and nothing dropped by the quality rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fortifai_bench.cli import main
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.schema import find_duplicates, read_questions

REPO = Path(__file__).resolve().parent.parent
SINGLES, REPEATED, TIMES = 20, 3, 25  # 20 questions once, 3 questions 25 times each: 95 items, 23 distinct
LONG_TRUE = "was born in a small village high up in the northern hills in 1843."


def authors_rows() -> list[dict]:
    """The authors' shape: a few questions repeated at many locations, the rest once; two of the singles
    differ in more than 6 words (the project's long_diff rule), as most of the authors' questions do."""
    shipped = read_questions(REPO / "data" / "facts" / "kr.jsonl")
    rows = [{"context": q.context, "sentence_true": q.true, "sentence_false": q.false, "location": q.paragraph}
            for q in shipped[REPEATED:REPEATED + SINGLES]]
    for row in rows[:2]:
        row["sentence_true"] = LONG_TRUE
    for k in range(TIMES):
        rows += [{"context": q.context, "sentence_true": q.true, "sentence_false": q.false, "location": 1000 + k}
                 for q in shipped[:REPEATED]]
    return rows


@pytest.fixture
def authors_file(tmp_path) -> Path:
    path = tmp_path / "kt_like.json"
    path.write_text(json.dumps(authors_rows(), indent=1))
    return path


def test_the_report_is_exact(authors_file):
    items = read_questions(authors_file, duplicates="as_in_file")
    distinct, report = find_duplicates(items)
    n = SINGLES + REPEATED * TIMES
    assert (report.items, report.distinct, report.copies) == (n, SINGLES + REPEATED, REPEATED * (TIMES - 1))
    assert [r["count"] for r in report.repeated] == [TIMES] * REPEATED
    assert [r["share"] for r in report.repeated] == [round(TIMES / n, 4)] * REPEATED
    assert [r["id"] for r in report.repeated] == [f"kt_like/{SINGLES + i}" for i in range(REPEATED)]  # first items
    assert [q.id for q in distinct] == [f"kt_like/{i}" for i in range(SINGLES + REPEATED)]  # file order
    assert read_questions(authors_file, duplicates="once") == distinct
    line = report.format()
    assert f"{n} items, {SINGLES + REPEATED} distinct questions; {REPEATED} repeated question(s) make up " \
           f"{REPEATED * TIMES} items ({REPEATED * TIMES / n:.1%})" in line
    assert f"{TIMES} times ({TIMES / n:.1%})" in line


def test_the_collapse_reader_refuses_it_with_the_report_and_the_way_out(authors_file):
    with pytest.raises(FortifaiError) as err:
        read_questions(authors_file)
    text = str(err.value)
    assert f"{REPEATED * (TIMES - 1)} of {SINGLES + REPEATED * TIMES} item(s)" in text
    assert f"first at {authors_file}: item {SINGLES + REPEATED}" in text  # the first copy
    assert "23 distinct questions" in text and "kr_file" in text and "as_in_file" in text


def test_kr_stats_reports_the_same_and_drops_nothing(authors_file, capsys):
    assert main(["kr", "stats", str(authors_file)]) == 0
    text = capsys.readouterr().out
    n, distinct = SINGLES + REPEATED * TIMES, SINGLES + REPEATED
    assert f"{n} items ({distinct} distinct questions)" in text.splitlines()[0]
    _, report = find_duplicates(read_questions(authors_file, duplicates="as_in_file"))
    assert f"duplicates:    {report.format()}" in text
    assert f"{distinct - 2} of {distinct} distinct questions meet them all" in text and "long_diff 2" in text
    assert main(["kr", "stats", str(authors_file), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["duplicates"] == report.to_dict() and stats["questions"] == n
    assert stats["quality"]["break"] == {"empty": 0, "identical": 0, "long_diff": 2}


def _kr_file_task(path: Path, **metadata):
    """kr_file as lm-eval builds it (our folder only: indexing all of lm-eval's tasks takes 40 s here)."""
    from lm_eval.tasks import TaskManager

    from fortifai_bench.resources import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False,
                          metadata={"path": str(path), **metadata})
    return manager.load(["kr_file"])["tasks"]["kr_file"]


def test_kr_file_scores_each_question_once_and_says_so(authors_file, caplog):
    task = _kr_file_task(authors_file)
    docs = list(task.test_docs())
    assert len(docs) == SINGLES + REPEATED  # every distinct question, long_diff ones included
    assert {d["choices"][0] for d in docs} >= {LONG_TRUE}
    prov = task.config.metadata["kr_provenance"]
    assert prov["weighting"] == "once" and prov["questions"] == SINGLES + REPEATED
    assert prov["items_in_file"] == SINGLES + REPEATED * TIMES
    assert prov["duplicates"]["repeated_questions"] == REPEATED and prov["duplicates"]["copies"] == 72
    assert prov["length_bias"]["questions"] == SINGLES + REPEATED  # the chance level of what was scored
    assert any("scoring each distinct question once" in r.getMessage() for r in caplog.records)


def test_the_authors_weighting_is_one_option_away(authors_file):
    task = _kr_file_task(authors_file, duplicates="as_in_file")
    assert len(list(task.test_docs())) == SINGLES + REPEATED * TIMES
    prov = task.config.metadata["kr_provenance"]
    assert prov["weighting"] == "as_in_file" and prov["questions"] == SINGLES + REPEATED * TIMES
    with pytest.raises(FortifaiError, match="duplicates must be one of once, as_in_file"):
        _kr_file_task(authors_file, duplicates="twice")
