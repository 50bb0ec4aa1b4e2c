"""Corpora, KR generators and collapse tasks of a user's own project: by `module:Name` (the working folder first)
and by the entry points an installed distribution declares (here a real .dist-info folder on sys.path, read by
importlib.metadata as any installed project's), with no edit of the package. tests/test_contributing.py runs the
same through `pip install` on a non-editable install."""

from __future__ import annotations

import sys
import textwrap

import pytest

from fortifai_bench import corpora
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr import build

PROJECT = textwrap.dedent('''
    from pathlib import Path

    from fortifai_bench.corpora import Corpus, Paragraph
    from fortifai_bench.kr.schema import Question

    TASK = Path(__file__).with_name("collapse_rivers.yaml")


    def load_rivers(data_dir=None, part="main"):
        texts = [f"The river Alder{i} is {10 + i} km long. Its source lies near Bron{i}." for i in range(24)]
        return Corpus(name="rivers", source="rivers_plugin", part=part,
                      paragraphs=[Paragraph(id=f"rivers/{part}/{i}", text=t, meta={}) for i, t in enumerate(texts)])


    def lengths(corpus, n_splits, *, max_per_paragraph, seed, source, progress, options):
        questions = [Question(id=f"{p.id}/len", split=-1, paragraph=i, context=f"The river Alder{i} is",
                              true=f"{10 + i} km long.", false=f"{20 + i} km long.", generator="lengths@1",
                              source=source) for i, p in enumerate(corpus.paragraphs)]
        return questions, {"lengths": len(questions)}
''')
TASK = textwrap.dedent('''
    include: collapse_smoke
    task: collapse_rivers
    corpus: rivers
    paragraphs_per_split: 6
''')
ENTRY_POINTS = textwrap.dedent('''
    [fortifai_bench.corpora]
    rivers = rivers_plugin:load_rivers

    [fortifai_bench.kr_generators]
    lengths = rivers_plugin:lengths

    [fortifai_bench.collapse_tasks]
    collapse_rivers = rivers_plugin:TASK
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The user's module in the working folder."""
    (tmp_path / "rivers_plugin.py").write_text(PROJECT)
    (tmp_path / "collapse_rivers.yaml").write_text(TASK)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "rivers_plugin", raising=False)
    yield tmp_path
    sys.modules.pop("rivers_plugin", None)


@pytest.fixture
def installed(project, monkeypatch):
    """The same module installed: on sys.path with a .dist-info that declares its entry points."""
    from fortifai_bench.collapse import config

    dist = project / "rivers_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rivers-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(project))
    # registries read the entry points once per process: fresh copies see this distribution
    monkeypatch.setattr(corpora, "_REGISTRY", corpora._REGISTRY.copy())
    monkeypatch.setattr(build, "GENERATORS", build.GENERATORS.copy())
    monkeypatch.setattr(config, "PLUGINS", config.PLUGINS.copy())
    return project


def test_module_name_reaches_corpus_generator_and_task(project):
    from fortifai_bench.collapse.config import load_task

    corpus = corpora.get_corpus("rivers_plugin:load_rivers")
    assert corpus.name == "rivers" and len(corpus) == 24
    questions, report = build.build_questions(corpus, "rivers_plugin:lengths", 3)
    assert len(questions) == 24 and [q.split for q in questions[::8]] == [0, 1, 2]
    assert report["generator"] == "rivers_plugin:lengths" and report["lengths"] == 24
    task = load_task("rivers_plugin:TASK")
    assert task.task == "collapse_rivers" and task.corpus == "rivers" and task.stages == 3  # from collapse_smoke
    assert "rivers" not in corpora.known_corpora()  # module:Name registers nothing


def test_entry_points_name_them_without_an_edit_of_the_package(installed):
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.kr.sets import kr_set

    assert "rivers" in corpora.known_corpora() and "lengths" in build.GENERATORS.names()
    assert corpora.get_corpus("rivers", part="pretrain").part == "pretrain"
    kr = kr_set("rivers", n_splits=3, paragraphs_per_split=6, generator="lengths", use_shipped=False)
    assert len(kr.questions) == 18 and kr.provenance["generator"] == ["lengths@1"]
    # cached under the plug-in's name and its source's sha256: edited code builds its questions again
    from fortifai_bench.io import file_sha256

    assert f"-lengths-v{file_sha256(installed / 'rivers_plugin.py')[:12]}-" in kr.provenance["file"]
    assert load_task("collapse_rivers").paragraphs_per_split == 6


def test_the_cli_takes_them(installed, capsys):
    from fortifai_bench.cli import main

    assert main(["corpus", "list"]) == 0
    assert "rivers" in capsys.readouterr().out.split()
    out = installed / "kr.jsonl"
    assert main(["kr", "build", "--corpus", "rivers", "--generator", "lengths", "--splits", "3", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 24
    assert main(["kr", "build", "--corpus", "rivers_plugin:load_rivers", "--generator", "rivers_plugin:lengths",
                 "--splits", "4", "--out", str(out)]) == 0
    assert "4 splits: 6, 6, 6, 6" in capsys.readouterr().out


def test_a_bad_name_is_one_line(project):
    with pytest.raises(FortifaiError, match=r"^corpus 'rivers_plugin:nope': module 'rivers_plugin' has no attribute"):
        corpora.get_corpus("rivers_plugin:nope")
    with pytest.raises(FortifaiError, match=r"^corpus 'no_such_module:load': cannot import 'no_such_module'"):
        corpora.get_corpus("no_such_module:load")
    with pytest.raises(FortifaiError, match=r"unknown corpus 'rivres'; known: .*module:Name"):
        corpora.get_corpus("rivres")
    from fortifai_bench.collapse.config import task_path

    with pytest.raises(FortifaiError, match=r"collapse task 'rivers_plugin:load_rivers' names .*not a YAML file"):
        task_path("rivers_plugin:load_rivers")
