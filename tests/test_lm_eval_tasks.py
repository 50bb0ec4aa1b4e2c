"""The kr_* lm-eval tasks: their datasets, the real `lm_eval` command on installed wheels (regular and
editable), registration, provenance, chance level, kr_file on files in both formats."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr import lm_eval_tasks, sets
from fortifai_bench.resources import tasks_dir

REPO = Path(__file__).resolve().parent.parent
SPLITS = range(lm_eval_tasks.N_SPLITS)


def test_kr_facts_dataset_is_the_shipped_file_cut_by_split():
    from fortifai_bench.kr.schema import read_questions

    shipped = read_questions(REPO / "data" / "facts" / "kr.jsonl")
    seen = []
    for k in SPLITS:
        ds = lm_eval_tasks.kr_dataset(kr_source="facts", kr_split=k, version=1.0, pretrained="ignored")["test"]
        assert set(ds["split"]) == {k}
        seen += ds["id"]
        row = ds[0]
        q = next(q for q in shipped if q.id == row["id"])
        assert row["context"] == q.context and row["choices"] == [q.true, q.false]
    assert sorted(seen) == sorted(q.id for q in shipped)


def test_kr_wikitext_builds_once_and_reuses_its_cache(wikitext_dir, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path))
    sets.clear_cache()
    caplog.set_level("WARNING")
    folder = tmp_path / "only-valid"  # a folder of its own: the fallback warning is once per folder and process
    folder.mkdir()
    for part in ("valid", "test"):
        (folder / f"wiki.{part}.raw").symlink_to(wikitext_dir / f"wiki.{part}.raw")
    docs = [lm_eval_tasks.kr_dataset(kr_source="wikitext", kr_split=k, data_dir=str(folder))["test"] for k in SPLITS]
    files = list((tmp_path / "kr").glob("wikitext-2-raw-v1-valid-rules-v1-s6-*.jsonl"))
    assert len(files) == 1 and len(docs[0]) > 100
    # no train file: the valid part, said once (not once per subtask) and recorded in the provenance
    assert sum("holds no wiki.train.raw" in r.getMessage() for r in caplog.records) == 1
    questions, prov = lm_eval_tasks.load_kr("wikitext", 0, data_dir=str(folder))
    assert prov["part"] == "valid" and "no wiki.train.raw" in prov["part_note"] and prov["file"] == str(files[0])
    assert prov["quality"]["kept"] == prov["questions"] == sum(len(d) for d in docs)
    mtime = files[0].stat().st_mtime_ns
    sets.clear_cache()  # a new process: reads the cache, does not rebuild
    again = lm_eval_tasks.kr_dataset(kr_source="wikitext", kr_split=0, data_dir=str(folder))["test"]
    assert again["id"] == docs[0]["id"] and files[0].stat().st_mtime_ns == mtime
    # FORTIFAI_DATA_DIR does what --metadata data_dir does; an explicit part is honoured
    monkeypatch.setenv("FORTIFAI_DATA_DIR", str(wikitext_dir))
    test_part = lm_eval_tasks.wikitext_questions(part="test")
    assert {q.source for q in test_part} == {"wikitext-2-raw-v1:test"}
    sets.clear_cache()


def test_wikitext_set_goes_through_the_cap_and_quality_filter(wikitext_dir, tmp_path, monkeypatch):
    """The resolver builds with build_questions: at most max_per_paragraph questions a paragraph."""
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path))
    kr = sets.kr_set("wikitext-2-raw-v1", "valid", 6, data_dir=wikitext_dir, max_per_paragraph=1)
    per_paragraph = {}
    for q in kr.questions:
        per_paragraph[q.paragraph] = per_paragraph.get(q.paragraph, 0) + 1
    assert max(per_paragraph.values()) == 1
    full = sets.kr_set("wikitext-2-raw-v1", "valid", 6, data_dir=wikitext_dir)
    assert len(full.questions) > len(kr.questions) and full.provenance["file"] != kr.provenance["file"]


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(FortifaiError, match="unknown KR task source 'nope'"):
        lm_eval_tasks.kr_dataset(kr_source="nope")
    with pytest.raises(FortifaiError, match="no questions in split 99"):
        lm_eval_tasks.kr_dataset(kr_source="facts", kr_split=99)
    with pytest.raises(FortifaiError, match="no wiki"):
        lm_eval_tasks.wikitext_questions(data_dir=str(tmp_path), part="valid")


def test_task_index_lists_groups_and_subtasks_via_tasks_path():
    from lm_eval.tasks import TaskManager

    from fortifai_bench.cli import main

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    for name in ("kr_facts", "kr_wikitext", "kr_imagination"):
        assert name in tm.all_groups
        assert all(f"{name}_split{k}" in tm.all_subtasks for k in SPLITS)
    assert "kr_file" in tm.all_subtasks
    assert main(["tasks-path"]) == 0  # what `--include_path "$(fortifai-bench tasks-path)"` passes


def _hook_probe(code: str, **env) -> str:
    """Run `code` in a fresh interpreter after the .pth line's effect (install the hook), real lm-eval."""
    prog = "import fortifai_bench._lm_eval_hook as h; h.install()\n" + code
    return subprocess.check_output([sys.executable, "-c", prog], text=True, env={**os.environ, **env}).strip()


@pytest.mark.slow
def test_hook_adds_our_folder_lazily_and_steps_aside_by_what_the_index_holds(tmp_path):
    import shutil

    copy = tmp_path / "tasks"  # stands for lm-eval finding our tasks by itself (e.g. through the entry point)
    shutil.copytree(tasks_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    out = _hook_probe(
        "import sys\n"
        "print('lm_eval.tasks' in sys.modules)\n"  # installing the hook imports nothing of lm-eval
        "from lm_eval.tasks import TaskManager\n"
        "tm = TaskManager()\n"
        "print('kr_facts' in tm.all_groups, 'kr_facts_split0' in tm.all_subtasks, 'kr_file' in tm.all_tasks)\n"
        "print(len(tm._fortifai_bench_added) > 20, 'hellaswag' in tm.all_tasks)\n"
        f"tm = TaskManager(include_path={str(copy)!r})\n"
        "print(tm._fortifai_bench_added, tm.task_index['kr_facts'].yaml_path.parent.parent)\n"
        "print('kr_facts' in TaskManager(include_defaults=False).all_groups)\n"
        "import fortifai_bench._lm_eval_hook as h\n"
        f"print(h.with_our_tasks(['/x']), h.with_our_tasks({str(tasks_dir())!r}))\n"
    )
    lines = out.splitlines()
    assert lines[:3] == ["False", "True True True", "True True"]
    assert lines[3] == f"[] {copy}"  # the index already held every kr_* task: nothing added, the copy's kept
    assert lines[4] == "False"
    assert lines[5] == f"{[str(tasks_dir()), '/x']} {tasks_dir()}"
    off = _hook_probe("from lm_eval.tasks import TaskManager\nprint('kr_facts' in TaskManager().all_groups)",
                      FORTIFAI_LM_EVAL_AUTOREGISTER="0")
    assert off == "False"


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A fresh venv holding only our wheel (plain, non-editable install); dependencies via a path entry."""
    tmp = tmp_path_factory.mktemp("kr-wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], check=True)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp / "dist").glob("fortifai_bench-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], check=True)
    assert (site / "fortifai_bench-lm_eval.pth").is_file()
    return env_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import build_tiny, save_model

    model, tokenizer = build_tiny(get_corpus("facts").texts(), seed=0)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("kr-model") / "tiny")


def _lm_eval(env_dir: Path, tasks: str, model: Path, out: Path, metadata: dict, cwd: Path, limit: int | None = 8,
             model_args: str = "") -> dict:
    """Run the real `lm_eval` command of `env_dir`'s interpreter; returns its results JSON, with what it printed
    (the table, under "_stdout") and logged ("_stderr")."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [str(env_dir / "bin" / "python"), "-m", "lm_eval", "--model", "hf", "--model_args",
           f"pretrained={model}{model_args}", "--tasks", tasks, "--metadata", json.dumps(metadata), "--batch_size", "16",
           "--device", "cpu", "--output_path", str(out)] + (["--limit", str(limit)] if limit else [])
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(next(out.rglob("results_*.json")).read_text()), "_stdout": proc.stdout, "_stderr": proc.stderr}


def _authors_file(path: Path, n: int = 40) -> Path:
    """A deliberately length-biased set in the authors' format: 3 of every 4 true continuations lengthened."""
    from fortifai_bench.kr.schema import read_questions

    rows = [{"context": q.context, "sentence_true": q.true if i % 4 == 0 else q.true[:-1] + " and so on.",
             "sentence_false": q.false, "location": q.paragraph}
            for i, q in enumerate(read_questions(REPO / "data" / "facts" / "kr.jsonl")[:n])]
    path.write_text(json.dumps(rows, indent=1))
    return path


@pytest.mark.slow
def test_lm_eval_command_runs_kr_tasks_from_a_plain_install(wheel_env, tiny_dir, wikitext_dir, tmp_path):
    """`lm_eval --tasks kr_facts,...,kr_file` with NO --include_path, from a wheel install, on a model saved to disk."""
    import hashlib

    from fortifai_bench.kr.schema import read_questions, write_questions

    mine = tmp_path / "mine.jsonl"  # a file of one's own, with splits: 6 questions of split 0, 6 of split 1
    shipped = read_questions(REPO / "data" / "facts" / "kr.jsonl")
    write_questions(mine, [q for q in shipped if q.split == 0][:6] + [q for q in shipped if q.split == 1][:6])
    results = _lm_eval(wheel_env, "kr_facts,kr_wikitext_split0,kr_file", tiny_dir, tmp_path / "out",
                       {"data_dir": str(wikitext_dir), "path": str(mine)}, cwd=tmp_path)
    res, n, configs = results["results"], results["n-samples"], results["configs"]
    for name in ["kr_facts", "kr_wikitext_split0", "kr_file"] + [f"kr_facts_split{k}" for k in SPLITS]:
        for metric in lm_eval_tasks.METRICS:
            assert 0.0 <= res[name][f"{metric},none"] <= 1.0, (name, metric)
    assert results["versions"]["kr_facts_split0"] == 3.0
    # the group's acc is the size-weighted mean of its splits' (KR-total)
    total = sum(res[f"kr_facts_split{k}"]["acc,none"] * n[f"kr_facts_split{k}"]["effective"] for k in SPLITS)
    assert res["kr_facts"]["acc,none"] == pytest.approx(total / sum(n[f"kr_facts_split{k}"]["effective"] for k in SPLITS))
    # kr_file: a group of one subtask per split of the file, each on its own questions
    assert set(results["group_subtasks"]["kr_file"]) == {"kr_file_split0", "kr_file_split1"}
    assert n["kr_file_split0"]["original"] == n["kr_file_split1"]["original"] == 6
    assert res["kr_file"]["acc,none"] == pytest.approx((res["kr_file_split0"]["acc,none"] + res["kr_file_split1"]["acc,none"]) / 2)
    # provenance in every subtask's config: what was scored, from where
    facts = configs["kr_facts_split0"]["metadata"]["kr_provenance"]
    assert facts["source"] == "shipped" and facts["questions"] == len(shipped)
    assert facts["generator"] == sorted({q.generator for q in shipped})
    assert facts["sha256"] == hashlib.sha256((REPO / "data" / "facts" / "kr.jsonl").read_bytes()).hexdigest()
    assert str(wheel_env) in facts["file"]  # the installed copy of the shipped file
    assert 0.0 <= facts["length_bias"]["tokens"]["true_longer"] <= 1.0  # in the model's tokens (its tokenizer)
    wiki = configs["kr_wikitext_split0"]["metadata"]["kr_provenance"]
    assert wiki["part"] == "valid" and "no wiki.train.raw" in wiki["part_note"] and wiki["data_dir"] == str(wikitext_dir)
    assert wiki["source"] == "built" and wiki["generator"] == ["rules@1"] and wiki["split"] == 0
    own = configs["kr_file_split1"]["metadata"]["kr_provenance"]
    assert own["file"] == str(mine) and own["format"] == "jsonl" and own["questions"] == 12
    assert own["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()


@pytest.mark.slow
def test_kr_file_on_an_authors_file_states_its_chance_level(wheel_env, tiny_dir, tmp_path):
    """The authors' JSON list (no splits): one task, KR-total, and a length bias the results make visible."""
    from fortifai_bench.kr.quality import length_bias
    from fortifai_bench.kr.schema import read_questions

    path = _authors_file(tmp_path / "authors.json")
    bias = length_bias(read_questions(path))["chars"]
    assert bias["true_longer"] >= 0.75  # deliberately biased
    results = _lm_eval(wheel_env, "kr_file", tiny_dir, tmp_path / "out", {"path": str(path)}, cwd=tmp_path, limit=None)
    res = results["results"]["kr_file"]
    assert "kr_file" not in results.get("group_subtasks", {}) or not results["group_subtasks"]["kr_file"]
    assert results["n-samples"]["kr_file"]["effective"] == 40
    assert res["true_longer,none"] == pytest.approx(bias["true_longer"], abs=1e-4)
    assert res["chance_shorter,none"] == pytest.approx(bias["shorter_guess_acc"], abs=1e-4)
    prov = results["configs"]["kr_file"]["metadata"]["kr_provenance"]
    assert prov["format"] == "authors" and prov["generator"] == ["authors"] and prov["splits"] == [-1]
    assert prov["length_bias"]["chars"] == bias and prov["length_bias"]["tokens"]["true_longer"] >= 0.5


@pytest.fixture(scope="module")
def editable_env(tmp_path_factory) -> tuple[Path, Path]:
    """(venv, source copy): `pip install -e` of a copy of the working tree into a fresh venv."""
    import shutil

    tmp = tmp_path_factory.mktemp("kr-editable")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "runs", ".pytest_cache", ".hypothesis"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, lm-eval, setuptools, ...
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
                    "-q", "-e", str(src)], check=True, capture_output=True)
    assert (site / "fortifai_bench-lm_eval.pth").is_file()
    return env_dir, src


@pytest.mark.slow
def test_lm_eval_finds_kr_tasks_after_an_editable_install(editable_env, tiny_dir, tmp_path):
    """`pip install -e .` then `lm_eval --tasks kr_facts_split0` with no flag: the tasks of the source tree."""
    env_dir, src = editable_env
    results = _lm_eval(env_dir, "kr_facts_split0", tiny_dir, tmp_path / "out", {}, cwd=tmp_path, limit=4)
    assert 0.0 <= results["results"]["kr_facts_split0"]["acc,none"] <= 1.0
    prov = results["configs"]["kr_facts_split0"]["metadata"]["kr_provenance"]
    assert prov["file"] == str(src / "data" / "facts" / "kr.jsonl")  # read in place, from the editable source
    assert results["configs"]["kr_facts_split0"]["metadata"]["config_source"].startswith(str(src / "tasks" / "kr"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A real collapse run: `fortifai-bench collapse --smoke` (3 stages, splits of 10 paragraphs of facts)."""
    out = tmp_path_factory.mktemp("smoke")
    subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--smoke", "--quiet", "--out", str(out)],
                   check=True, capture_output=True)
    [run] = out.glob("collapse_smoke-*")
    return run


@pytest.mark.slow
def test_kr_file_on_a_run_scores_its_questions_on_its_cut_and_reproduces_its_kr(wheel_env, smoke_run, tmp_path):
    """The README's command on the run's last stage: every split's acc is results.json's KR of that split at that
    stage, exactly, on the same questions, and the printed table says so under it."""
    stage = 2
    recorded = json.loads((smoke_run / "results.json").read_text())["stages"][stage]
    results = _lm_eval(wheel_env, "kr_file", smoke_run / f"stage_{stage}" / "model", tmp_path / "out",
                       {"run": str(smoke_run)}, cwd=tmp_path, limit=None, model_args=",logits_cache=False")
    assert set(results["group_subtasks"]["kr_file"]) == {f"kr_file_split{k}" for k in range(3)}
    for k in range(3):
        name = f"kr_file_split{k}"
        assert results["n-samples"][name]["effective"] == recorded["kr_questions"][str(k)]
        assert results["results"][name]["acc,none"] == pytest.approx(recorded["kr"][str(k)], abs=1e-12)
        kr_run = results["configs"][name]["metadata"]["kr_run"]
        assert kr_run["stage"] == stage and kr_run["results_json"] == recorded["kr"][str(k)] and kr_run["same_cut"]
        assert kr_run["run"] == str(smoke_run.resolve())
    assert recorded["kr"]["0"] != recorded["kr"]["1"]  # the splits are told apart: not one number three times
    assert results["results"]["kr_file"]["acc,none"] == pytest.approx(recorded["kr_total"], abs=1e-12)
    assert f"kr_file_split0: run {smoke_run.resolve()} stage 2: results.json KR-split-0 {recorded['kr']['0']:.4f}, " \
           f"lm-eval acc {recorded['kr']['0']:.4f} (equal)" in results["_stdout"]
    assert "(!)" not in results["_stdout"]


@pytest.mark.slow
def test_a_shipped_task_on_a_differently_cut_run_says_so_and_the_table_is_marked(wheel_env, smoke_run, tmp_path):
    """kr_facts_split0 (six splits of 30 paragraphs) on the smoke run's M_0 (splits of 10), with lm-eval's default
    logits_cache=True: a warning naming both cuts, and both faults marked in the printed table."""
    results = _lm_eval(wheel_env, "kr_facts_split0", smoke_run / "stage_0" / "model", tmp_path / "out", {},
                       cwd=tmp_path, limit=None)
    meta = results["configs"]["kr_facts_split0"]["metadata"]
    run_cut = "facts (main) in 3 splits of 10 paragraphs (split 0 = paragraphs 0-9)"
    task_cut = "facts (main) in 6 splits of 30 paragraphs (split 0 = paragraphs 0-29)"
    assert meta["kr_run"]["same_cut"] is False and (meta["kr_run"]["run_cut"], meta["kr_run"]["task_cut"]) == (
        run_cut, task_cut)
    [warning] = [line for line in results["_stderr"].splitlines() if "not the run's KR splits" in line]
    assert task_cut in warning and run_cut in warning and str(smoke_run.resolve()) in warning
    printed = results["_stdout"]
    assert re.search(r"^\|kr_facts_split0 \(!\)\s*\|", printed, flags=re.M), printed
    affected = meta["kr_logits_cache"]["affected"]
    assert affected > 0 and f"(!) lm-eval's logits_cache=True read {affected} of " in printed
    assert f"(!) kr_facts_split0: cut as {task_cut}; the model is stage 0 of run {smoke_run.resolve()}" in printed
