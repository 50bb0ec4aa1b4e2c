"""The in-process KR scorer: shared-context scoring equals per-sequence scoring, equals lm-eval's acc."""

from __future__ import annotations

import math
import random

import pytest
import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.scoring import ScoreResult, score
from fortifai_bench.models import build_tiny

NAMES = ["Arlo Venn", "Bexa Rund", "Cira Moll", "Dunmar Ek", "Elsa Pirrow", "Fay Tolm"]
PLACES = ["Norvale", "Quist", "Pellin", "Ostrand", "Kaldor", "Umbrel"]


def _questions(n=40, seed=0):
    """Hand-made questions of varied lengths: short and long contexts, continuations of unequal length."""
    rng = random.Random(seed)
    qs = []
    for i in range(n):
        name, place, year = rng.choice(NAMES), rng.choice(PLACES), rng.randint(1700, 1990)
        ctx = f"{name} was a painter from {place}." + " She travelled widely and wrote letters." * (i % 4)
        true = f"{name} was born in {year}."
        false = (f"{name} was born in {year + 7} in the old quarter of {rng.choice(PLACES)}."
                 if i % 3 == 0 else f"{name} was born in {year + 3}.")
        qs.append({"id": f"q{i}", "split": i % 3, "context": ctx, "true": true, "false": false})
    return qs


@pytest.fixture(scope="module")
def gpt2_tiny():
    texts = [f"{q['context']} {q['true']}" for q in _questions(200, seed=1)]
    model, tokenizer = build_tiny(texts, seed=0)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def llama_tiny(gpt2_tiny):
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = gpt2_tiny
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval(), tokenizer


def _reference_token_logps(model, tokenizer, context: str, continuation: str) -> list[float]:
    """Independent reference: one unpadded sequence, lm-eval's split of whole vs context tokens."""
    ctx = tokenizer(context)["input_ids"]
    whole = tokenizer(context + " " + continuation)["input_ids"]
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont[:-1]])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return [float(logp[len(ctx) - 1 + j, tok]) for j, tok in enumerate(cont)]


@pytest.mark.parametrize("which", ["gpt2_tiny", "llama_tiny"])
def test_shared_context_equals_per_sequence_scoring(which, request):
    model, tokenizer = request.getfixturevalue(which)
    qs = _questions(40)
    shared = score(model, tokenizer, qs, batch_size=7)  # odd size: batches of mixed lengths and padding
    naive = score(model, tokenizer, qs, batch_size=7, shared_context=False)
    for a, b in ((shared.logp_true, naive.logp_true), (shared.logp_false, naive.logp_false)):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4
    # and both equal an unpadded, unbatched reference
    for q, lt, lf in list(zip(qs, shared.logp_true, shared.logp_false))[:6]:
        assert math.isclose(lt, sum(_reference_token_logps(model, tokenizer, q["context"], q["true"])), abs_tol=1e-4)
        assert math.isclose(lf, sum(_reference_token_logps(model, tokenizer, q["context"], q["false"])), abs_tol=1e-4)


def test_batch_size_and_order_do_not_change_results(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    qs = _questions(30)
    one = score(model, tokenizer, qs, batch_size=1)
    big = score(model, tokenizer, list(reversed(qs)), batch_size=64)
    assert one.ids == [q["id"] for q in qs]
    assert max(abs(x - y) for x, y in zip(one.logp_true, reversed(big.logp_true))) < 1e-4
    assert one.correct == list(reversed(big.correct))


def test_result_fields_and_by_split(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    qs = _questions(30)
    r = score(model, tokenizer, qs)
    assert isinstance(r, ScoreResult) and r.method == "sum"
    assert r.correct == [t >= f for t, f in zip(r.logp_true, r.logp_false)]
    assert r.acc == pytest.approx(sum(r.correct) / 30)
    norm = [t / len(q["true"]) >= f / len(q["false"]) for q, t, f in zip(qs, r.logp_true, r.logp_false)]
    assert r.acc_norm == pytest.approx(sum(norm) / 30)
    assert r.ci[0] <= r.acc <= r.ci[1]
    expected = {k: sum(c for c, q in zip(r.correct, qs) if q["split"] == k) / 10 for k in range(3)}
    assert r.by_split() == pytest.approx(expected)
    assert r.correct_bits() == "".join("1" if c else "0" for c in r.correct)


def test_trailing_space_and_empty_context_follow_lm_eval(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    qs = [{"id": "a", "split": 0, "context": "Arlo Venn was born in ", "true": "Norvale.", "false": "Quist."},
          {"id": "b", "split": 0, "context": "", "true": "Arlo Venn was born in Norvale.", "false": "Arlo was."}]
    shared = score(model, tokenizer, qs)
    naive = score(model, tokenizer, qs, shared_context=False)
    assert max(abs(x - y) for x, y in zip(shared.logp_true + shared.logp_false, naive.logp_true + naive.logp_false)) < 1e-4
    # lm-eval moves the context's trailing space into the continuation: "... in" + "  Norvale."
    ctx = tokenizer("Arlo Venn was born in")["input_ids"]
    whole = tokenizer("Arlo Venn was born in  Norvale.")["input_ids"]
    assert shared.tokens_true[0] == len(whole) - len(ctx)


def test_mean_shorter_is_the_papers_rule_and_differs_from_sum(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    qs = _questions(40)
    s = score(model, tokenizer, qs, method="sum")
    m = score(model, tokenizer, qs, method="mean_shorter")
    assert m.method == "mean_shorter"
    assert m.logp_true == pytest.approx(s.logp_true) and m.acc_norm == s.acc_norm  # only the decision changes
    expected = []
    for q in qs:
        lt = _reference_token_logps(model, tokenizer, q["context"], q["true"])
        lf = _reference_token_logps(model, tokenizer, q["context"], q["false"])
        n = min(len(lt), len(lf))
        expected.append(sum(lt[:n]) / n >= sum(lf[:n]) / n)
    assert m.correct == expected
    assert m.correct != s.correct  # continuations of unequal length: the two rules disagree somewhere


def test_bad_arguments_are_one_line_errors(gpt2_tiny):
    model, tokenizer = gpt2_tiny
    with pytest.raises(FortifaiError, match="unknown scoring method 'mean'"):
        score(model, tokenizer, _questions(2), method="mean")
    with pytest.raises(FortifaiError, match="no questions"):
        score(model, tokenizer, [])
    with pytest.raises(FortifaiError, match="batch_size"):
        score(model, tokenizer, _questions(2), batch_size=0)


def test_acc_equals_lm_eval_acc_on_the_same_items(gpt2_tiny):
    """lm-eval's own scoring (HFLM over the loaded model, our kr_facts task) against `score`.

    `logits_cache=False`: lm-eval 0.4.13's default one-token-continuation cache groups requests whose
    context + continuation[:-1] tokens coincide and then gathers the shorter continuation's log-probs
    from the LEADING positions of the longer one's logits, so it mis-scores the nested facts questions
    (two questions whose `context + " " + true` is the same text; 188 of kr_facts' 1,538 requests).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from fortifai_bench.kr.lm_eval_tasks import questions_for
    from fortifai_bench.resources import tasks_dir

    model, tokenizer = gpt2_tiny
    limit = 15
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=32, device="cpu", logits_cache=False),
        tasks=["kr_facts"], task_manager=TaskManager(include_path=str(tasks_dir())),
        limit=limit, log_samples=True, bootstrap_iters=0,
    )
    by_id = {q.id: q for q in questions_for("facts")}
    samples = [s for k in range(6) for s in out["samples"][f"kr_facts_split{k}"]]
    assert len(samples) == 6 * limit
    questions = [by_id[s["doc"]["id"]] for s in samples]
    ours = score(model, tokenizer, questions, batch_size=16)
    theirs_lls = [(float(s["resps"][0][0][0]), float(s["resps"][1][0][0])) for s in samples]
    for (lt, lf), t, f in zip(theirs_lls, ours.logp_true, ours.logp_false):
        assert abs(lt - t) < 1e-4 and abs(lf - f) < 1e-4
    mismatched = [i for i, s in enumerate(samples) if bool(s["acc"]) != ours.correct[i]]
    assert all(theirs_lls[i][0] == theirs_lls[i][1] for i in mismatched), "only exact ties may differ"
    assert [bool(s["acc_norm"]) for s in samples] == ours.correct_norm
    if not mismatched:
        assert out["results"]["kr_facts"]["acc,none"] == pytest.approx(ours.acc, abs=1e-9)


def test_kr_score_is_the_function_even_after_its_module_is_imported():
    import fortifai_bench.kr as kr
    import fortifai_bench.kr.scoring  # noqa: F401  (a submodule named `score` would shadow the function)

    assert callable(kr.score) and kr.score is score and kr.ScoreResult is ScoreResult
