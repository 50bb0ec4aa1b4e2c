"""The KR lm-eval tasks under lm-eval's conventions: few-shot examples that share no fact with their question,
the logits-cache misreads detected exactly (and warned of), the fortifai-bench version in the results, and every
documented `lm_eval` command one that lm-eval parses and that asks for exact scores."""

from __future__ import annotations

import json
import logging
import re
import shlex
from pathlib import Path

import pytest

from fortifai_bench import __version__
from fortifai_bench.kr import lm_eval_tasks
from fortifai_bench.resources import tasks_dir

REPO = Path(__file__).resolve().parent.parent
SEED = 1234  # lm-eval's default fewshot_random_seed


def _tasks(names, **metadata) -> dict:
    """lm-eval's tasks as its CLI builds them (model arguments merged into the metadata), from our folder only."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=metadata)
    return manager.load(list(names))["tasks"]


def _prompts(task, shots: int) -> list[tuple[dict, str]]:
    """(document, its full prompt) for every document, built the way lm-eval's evaluator does."""
    task.set_config(key="num_fewshot", value=shots)
    task.set_fewshot_seed(seed=SEED)
    task.build_all_requests()
    docs = {i: d for i, d in enumerate(task.test_docs())}
    seen, out = set(), []
    for inst in task.instances:
        if inst.doc_id not in seen and inst.args[0]:  # one conditional request per document
            seen.add(inst.doc_id)
            out.append((docs[inst.doc_id], inst.args[0]))
    return out


def test_shots_share_no_fact_with_their_question():
    """--num_fewshot 3 on every kr_facts subtask: the shots are pool questions (facts:pretrain), and none holds
    the question's context, its true answer or any sentence of the paragraph the question is about."""
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.kr.schema import read_questions
    from fortifai_bench.resources import data_dir

    paragraphs = get_corpus("facts").paragraphs
    questions = {q.id: q for q in read_questions(data_dir() / "facts" / "kr.jsonl")}
    pool_contexts = {q.context for q in lm_eval_tasks.fewshot_pool()}
    assert not pool_contexts & {q.context for q in questions.values()}
    prompts = 0
    for name, task in sorted(_tasks(["kr_facts"]).items()):
        assert {d["id"].rsplit("/", 2)[0] for d in task.fewshot_docs()} == {"facts/pretrain"}, name
        for doc, prompt in _prompts(task, 3):
            assert prompt.endswith(doc["context"])
            shots = prompt[: -len(doc["context"])]
            assert shots.count("\n\n") == 3, (name, prompt)  # three solved examples, then the question
            q = questions[doc["id"]]
            sentences = [s.strip().rstrip(".") for s in paragraphs[q.paragraph].text.split(". ") if s.strip()]
            assert f"{q.context} {q.true}".rstrip(".") not in shots, (name, doc["id"])
            assert not [s for s in sentences if s in shots], (name, doc["id"])
            prompts += 1
    assert prompts == len(questions)  # every question of kr_facts was checked


def test_a_files_shots_come_from_the_pool_too(tmp_path):
    rows = [{"context": f"Fact {i}: the river", "sentence_true": f"runs east {i}.", "sentence_false": f"runs west {i}.",
             "location": i} for i in range(12)]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rows))
    task = _tasks(["kr_file"], path=str(path))["kr_file"]
    for doc, prompt in _prompts(task, 3):
        assert not [r for r in rows if r["context"] in prompt[: -len(doc["context"])]]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import build_tiny, save_model

    model, tokenizer = build_tiny(get_corpus("facts").texts(), seed=0)
    return save_model(model, tokenizer, tmp_path_factory.mktemp("hygiene-model") / "tiny")


def _evaluate(model_dir: Path, logits_cache: bool) -> dict:
    import lm_eval

    model_args = {"pretrained": str(model_dir), "logits_cache": logits_cache}
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=model_args)
    return lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=["kr_facts_split0"], task_manager=manager,
                                   device="cpu", batch_size=32, log_samples=True)


@pytest.mark.slow
def test_the_logits_cache_check_names_exactly_the_requests_it_corrupts(tiny_dir, caplog):
    """kr_facts_split0 scored twice by lm-eval, with its default logits_cache=True and with False: the requests
    whose log-likelihoods differ are exactly those the check names, the warning says how many, and the results
    record it, with the package version."""
    from transformers import AutoTokenizer

    with caplog.at_level(logging.WARNING, logger="fortifai_bench.kr.lm_eval_tasks"):
        cached = _evaluate(tiny_dir, True)
    warned = [r.getMessage() for r in caplog.records if "logits_cache=True" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fortifai_bench.kr.lm_eval_tasks"):
        exact = _evaluate(tiny_dir, False)
    assert not [r for r in caplog.records if "logits_cache=True" in r.getMessage()]

    pairs, differ = [], []
    for a, b in zip(cached["samples"]["kr_facts_split0"], exact["samples"]["kr_facts_split0"], strict=True):
        for (arg, ra, rb) in zip(a["arguments"], a["resps"], b["resps"], strict=True):
            differ.append(abs(float(ra[0][0]) - float(rb[0][0])) > 1e-4)
            pairs.append(tuple(arg[:2]))
    victims = lm_eval_tasks.logits_cache_victims(pairs, AutoTokenizer.from_pretrained(tiny_dir))
    assert victims and victims == [i for i, d in enumerate(differ) if d]

    record = cached["configs"]["kr_facts_split0"]["metadata"]["kr_logits_cache"]
    assert record == {"logits_cache": True, "requests": len(pairs), "affected": len(victims)}
    assert warned == [f"kr_facts_split0: lm-eval's logits_cache=True (its default) reads {len(victims)} of "
                      f"{len(pairs)} requests from the wrong positions (a question whose context + continuation "
                      "is another's cut elsewhere): add logits_cache=False to --model_args for exact KR scores"]
    assert exact["configs"]["kr_facts_split0"]["metadata"]["kr_logits_cache"]["affected"] == 0
    for results in (cached, exact):
        assert results["configs"]["kr_facts_split0"]["metadata"]["fortifai_bench_version"] == __version__
        assert results["versions"]["kr_facts_split0"] == 3.0


def test_without_a_tokenizer_the_record_says_it_was_not_checked():
    record = lm_eval_tasks.check_logits_cache("kr_x", {}, [("a", " b")])
    assert record["checked"] is False and "logits_cache=False" in record["note"]
    assert lm_eval_tasks.check_logits_cache("kr_x", {"logits_cache": "False"}, [("a", " b")])["affected"] == 0


DOCS = ("README.md", "tasks/kr/README.md", "tasks/kr/kr_file.yaml", "CONTRIBUTING.md", "BENCHMARKS.md")


def _documented_commands() -> list[tuple[str, str]]:
    out = []
    for rel in DOCS:
        for line in (REPO / rel).read_text().splitlines():
            for cmd in re.findall(r"(?:^|`|#\s+|\s)((?:[A-Z_]+=\S+ )*lm_eval --[^`#]*)", line):
                out.append((rel, cmd.strip()))
    return out


def test_every_documented_lm_eval_command_parses_and_asks_for_exact_scores():
    from lm_eval._cli import HarnessCLI

    commands = _documented_commands()
    assert len(commands) >= 10, commands
    parser = HarnessCLI()._parser
    for rel, cmd in commands:
        argv = [a for a in shlex.split(cmd) if not re.fullmatch(r"[A-Z_]+=\S+", a)][1:]
        args = parser.parse_args(["run", *argv])
        assert args.tasks, (rel, cmd)
        if args.model == "hf":  # lm-eval parses --model_args into a dict of typed values
            assert args.model_args.get("logits_cache") is False and args.model_args.get("pretrained"), (rel, cmd)
        if args.metadata:
            meta = args.metadata if isinstance(args.metadata, dict) else json.loads(args.metadata)
            assert set(meta) <= {"path", "data_dir", "part", "duplicates", "run"}, (rel, cmd)


def test_a_file_with_repeats_has_one_chance_level(tmp_path, capsys):
    """`kr stats` and kr_file state the chance level of the same questions, each distinct one once (what kr_file
    scores): a question repeated many times, its true continuation the shorter, does not move it."""
    from fortifai_bench.cli import main

    rows = [{"context": f"Fact {i}: the river", "sentence_true": f"runs far to the east {i}.",
             "sentence_false": f"runs west {i}.", "location": i} for i in range(9)]
    rows += [{"context": "Fact 99: the lake", "sentence_true": "is deep.", "sentence_false": "is very wide and deep.",
              "location": 100 + k} for k in range(20)]  # one question, 20 items, true shorter
    path = tmp_path / "repeats.json"
    path.write_text(json.dumps(rows))
    assert main(["kr", "stats", str(path), "--json"]) == 0
    stated = json.loads(capsys.readouterr().out)["length_bias"]
    scored = _tasks(["kr_file"], path=str(path))["kr_file"].config.metadata["kr_provenance"]["length_bias"]
    assert stated == scored and stated["questions"] == 10
    assert stated["chars"]["shorter_guess_acc"] == 0.1  # over items it would read 21 / 29
