"""Imagination-of-Web: the composite corpus, its KR task, and the local-data lm-eval benchmarks run by lm-eval.

Everything reads a small data folder cut from the real files in ../shared/data (the first lines of each), laid
out exactly like it, so the tests are fast and exercise the same readers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fortifai_bench.corpora import get_corpus
from fortifai_bench.corpora import imagination as im  # registers imagination-of-web
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr import sets
from fortifai_bench.local_benchmarks import blimp_rows, gsm8k_rows, hellaswag_docs, read_hellaswag_txt
from fortifai_bench.resources import tasks_dir

BLIMP_PARADIGMS = ("adjunct_island", "causative", "passive_1")


def _head(src: Path, dst: Path, n_lines: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as f:
        dst.write_text("".join(line for _, line in zip(range(n_lines), f)), encoding="utf-8")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("data")
    for part in ("valid", "test"):
        _head(shared_data / "wikitext-2-raw-v1" / f"wiki.{part}.raw", root / "wikitext-2-raw-v1" / f"wiki.{part}.raw", 120)
    _head(shared_data / "hellaswag" / "hellaswag_val_full.txt", root / "hellaswag" / "hellaswag_val_full.txt", 6 * 120)
    for split in ("train", "test"):
        _head(shared_data / "gsm8k" / f"{split}.jsonl", root / "gsm8k" / f"{split}.jsonl", 60)
    for name in BLIMP_PARADIGMS:
        _head(shared_data / "blimp" / f"{name}.jsonl", root / "blimp" / f"{name}.jsonl", 20)
    return root


def test_composite_interleaves_three_sources_equally(small_data):
    corpus = get_corpus("imagination-of-web", data_dir=small_data)
    assert corpus.name == "imagination-of-web" and corpus.part == "main"
    sources = [p.meta["source"] for p in corpus.paragraphs]
    assert sources[:6] == ["wikitext", "hellaswag", "gsm8k"] * 2
    counts = Counter(sources)
    assert counts["wikitext"] == counts["hellaswag"] == counts["gsm8k"] == len(corpus) // 3
    # every split of the collapse protocol holds all three kinds of text
    for split in corpus.splits(6):
        assert {p.meta["source"] for p in split} == {"wikitext", "hellaswag", "gsm8k"}
    first = {p.meta["source"]: p for p in corpus.paragraphs[:3]}
    hs = read_hellaswag_txt(small_data / "hellaswag" / "hellaswag_val_full.txt")[0]
    assert first["hellaswag"].text == f"{hs['query']} {hs['choices'][hs['label']]}"
    assert first["hellaswag"].text.endswith("starts pulling up roofing on a roof.")  # gold ending 3 of item 0
    g = gsm8k_rows(small_data, "train")[0]
    assert first["gsm8k"].text == g["question"] + "\n" + g["answer"] and first["gsm8k"].id.endswith("gsm8k/train/0000")
    # local data has no wiki.train.raw: the main part uses valid, as kr_wikitext does
    assert first["wikitext"].id.startswith("imagination-of-web/main/wikitext/valid/")


def test_parts_are_disjoint_and_env_var_works(small_data, monkeypatch):
    monkeypatch.setenv("FORTIFAI_DATA_DIR", str(small_data))
    main, pre = get_corpus("imagination-of-web"), get_corpus("imagination-of-web", part="pretrain")
    assert not {p.text for p in main.paragraphs} & {p.text for p in pre.paragraphs}
    assert not {p.id for p in main.paragraphs} & {p.id for p in pre.paragraphs}
    assert {p.id.split("/")[3] for p in pre.paragraphs} == {"test", "validation"}
    with pytest.raises(FortifaiError, match="unknown part 'valid'"):
        get_corpus("imagination-of-web", part="valid")


def test_missing_or_bad_data_is_one_clear_error(tmp_path, small_data):
    with pytest.raises(FortifaiError, match="hellaswag: no folder"):
        (tmp_path / "wikitext-2-raw-v1").mkdir()
        (tmp_path / "wikitext-2-raw-v1" / "wiki.valid.raw").write_text(" = T = \n Some text here .\n")
        get_corpus("imagination-of-web", data_dir=tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("ctx\n7\na\nb\nc\nd\n")
    with pytest.raises(FortifaiError, match=r"bad.txt:2: gold label must be 0-3, got '7'"):
        read_hellaswag_txt(bad)
    bad.write_text("ctx\n1\na\n")
    with pytest.raises(FortifaiError, match="not a multiple of 6"):
        read_hellaswag_txt(bad)


def test_blimp_rows_interleave_paradigms(small_data):
    rows = blimp_rows(small_data)
    assert len(rows) == 20 * len(BLIMP_PARADIGMS)
    assert [r["paradigm"] for r in rows[:3]] == sorted(BLIMP_PARADIGMS)
    assert len(blimp_rows(small_data, per_paradigm=2)) == 2 * len(BLIMP_PARADIGMS)
    assert len(hellaswag_docs(small_data)) == 120


def test_kr_questions_built_once_and_cached(small_data, monkeypatch, tmp_path):
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    sets.clear_cache()
    questions = im.imagination_questions(small_data)
    assert {q.split for q in questions} == set(range(6))
    assert {q.id.split("/")[2] for q in questions} == {"wikitext", "hellaswag", "gsm8k"}
    corpus = get_corpus("imagination-of-web", data_dir=small_data)
    split_of = corpus.split_of(6)
    for q in questions:
        assert q.split == split_of[q.paragraph] and q.id.startswith(corpus.paragraphs[q.paragraph].id)
        assert q.true != q.false and q.generator == "rules@1"
    [cached] = (tmp_path / "cache" / "kr").glob("imagination-of-web-main-rules-v1-s6-*.jsonl")
    mtime = cached.stat().st_mtime_ns
    sets.clear_cache()
    assert im.imagination_questions(small_data) == questions and cached.stat().st_mtime_ns == mtime


def test_collapse_cut_of_imagination_builds_offline(small_data, monkeypatch, tmp_path):
    """The set collapse_imagination needs (6 splits x 30 paragraphs) comes from the resolver, from local data."""
    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    kr = sets.kr_set("imagination-of-web", "main", 6, paragraphs_per_split=5, data_dir=small_data)
    assert kr.bounds == [(5 * k, 5 * (k + 1)) for k in range(6)]
    assert {q.split for q in kr.questions} == set(range(6)) and max(q.paragraph for q in kr.questions) < 30
    assert all(q.split == q.paragraph // 5 for q in kr.questions)
    prov = kr.provenance
    assert prov["source"] == "built" and prov["questions"] == len(kr.questions) == sum(prov["per_split"])
    assert prov["generator"] == ["rules@1"] and "wikitext-2-raw-v1 (valid)" in prov["corpus_source"]
    assert prov["quality"]["kept"] == len(kr.questions) and 0.0 <= prov["length_bias"]["chars"]["ties"] <= 1.0


def test_collapse_task_configures_the_benchmarks():
    from lm_eval.tasks import TaskManager

    from fortifai_bench.collapse.config import load_task

    task = load_task("collapse_imagination")
    assert task.corpus == "imagination-of-web" and task.model.pretrain.corpus == "imagination-of-web"
    assert task.eval.lm_eval_tasks == ["blimp_local", "hellaswag_local", "gsm8k_local"]
    known = set(TaskManager(include_path=str(tasks_dir()), include_defaults=False).all_tasks)
    assert set(task.eval.lm_eval_tasks) <= known and "kr_imagination" in known
    assert {f"kr_imagination_split{k}" for k in range(6)} <= known


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, small_data) -> Path:
    from fortifai_bench.models import TinyConfig, build_tiny, save_model

    texts = [p.text for p in get_corpus("imagination-of-web", data_dir=small_data).paragraphs]
    model, tok = build_tiny(texts, TinyConfig(vocab_size=600, n_layer=1, n_embd=32, n_head=2, n_positions=256))
    return save_model(model, tok, tmp_path_factory.mktemp("model") / "tiny")


@pytest.mark.slow
def test_lm_eval_runs_local_benchmarks_and_kr_on_local_data(tiny_model_dir, small_data, tmp_path, monkeypatch):
    """lm-eval itself (simple_evaluate, in process) loads our task YAMLs and the local data: no Hub."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("FORTIFAI_CACHE", str(tmp_path / "cache"))
    sets.clear_cache()
    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(small_data)})
    out = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={tiny_model_dir},dtype=float32", device="cpu", batch_size=8,
        tasks=["blimp_local", "hellaswag_local", "gsm8k_local", "kr_imagination_split0"], limit=4,
        num_fewshot=None, gen_kwargs="max_gen_toks=4", bootstrap_iters=0, task_manager=manager, log_samples=True)
    results = out["results"]
    for name, metric in (("blimp_local", "acc,none"), ("hellaswag_local", "acc_norm,none"),
                         ("kr_imagination_split0", "acc,none")):
        assert 0.0 <= results[name][metric] <= 1.0
        assert results[name]["sample_len"] == 4
    assert results["gsm8k_local"]["exact_match,strict-match"] == 0.0  # a 1-layer untrained model, 4 tokens
    # lm-eval scored our local documents, in our order
    hs = read_hellaswag_txt(small_data / "hellaswag" / "hellaswag_val_full.txt")
    first = out["samples"]["hellaswag_local"][0]
    assert first["doc"]["query"] == hs[0]["query"] and first["target"] == hs[0]["label"]
    blimp = out["samples"]["blimp_local"]
    assert [s["doc"]["paradigm"] for s in blimp[:3]] == sorted(BLIMP_PARADIGMS)
    kr = out["samples"]["kr_imagination_split0"]
    questions = [q for q in im.imagination_questions(small_data) if q.split == 0]
    assert kr[0]["doc"]["context"] == questions[0].context
    assert json.loads(json.dumps(out["configs"]["gsm8k_local"]["num_fewshot"])) == 5
    prov = out["configs"]["kr_imagination_split0"]["metadata"]["kr_provenance"]
    assert prov["corpus"] == "imagination-of-web" and prov["split"] == 0 and prov["data_dir"] == str(small_data)


def test_collapse_imagination_plans_and_runs_a_micro_schedule(small_data, monkeypatch, tmp_path, capsys):
    """The shipped task resolves its KR set through kr.sets (rules questions, built offline) and runs."""
    from fortifai_bench.cli import main
    from fortifai_bench.collapse.config import load_task
    from fortifai_bench.collapse.run import run_collapse

    monkeypatch.setenv("FORTIFAI_DATA_DIR", str(small_data))
    assert main(["collapse", "--task", "collapse_imagination", "--plan"]) == 0
    assert "collapse_imagination" in capsys.readouterr().out
    task = load_task("collapse_imagination", [
        "stages=2", "paragraphs_per_split=6", "train.epochs=1", "train.batch_size=4", "eval.lm_eval_tasks=[]",
        "eval.heldout_paragraphs=4", "model.tiny.n_layer=1", "model.tiny.n_embd=32", "model.tiny.n_head=2",
        "model.tiny.vocab_size=512", "model.pretrain.paragraphs=40", "model.pretrain.train.epochs=1",
        "regenerate.block=8"])
    results = run_collapse(task, "ce", out=tmp_path / "runs", progress=False)
    assert results["complete"] and len(results["stages"]) == 2
    assert results["kr_source"].endswith(".jsonl") and "rules" in results["kr_source"]
    assert all(s["kr_questions"]["0"] > 0 for s in results["stages"])
