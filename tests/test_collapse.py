"""The collapse task: config validation, schedule, regeneration, metrics, and real micro runs
(resume after SIGKILL, NaN mid-run, refusing a foreign resume directory)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fortifai_bench.cli import main as cli_main
from fortifai_bench.collapse.config import RegenerateSettings, load_task
from fortifai_bench.collapse.plan import plan, pool, subsample
from fortifai_bench.collapse.protocol import format_plan, load_data
from fortifai_bench.errors import FortifaiError
from killing import kill_inside_stage_1
from fortifai_bench.metrics import confidence_summary, distinct_n, ngram_kl

# A micro version of the embedded default: 3 stages x 6 paragraphs, a 1-layer model, 2 epochs.
MICRO = [
    "stages=3", "paragraphs_per_split=6", "train.epochs=2", "train.batch_size=4",
    "model.tiny.n_layer=1", "model.tiny.n_embd=32", "model.tiny.n_head=2", "model.tiny.vocab_size=512",
    "model.pretrain.paragraphs=60", "model.pretrain.train.epochs=2",
    "regenerate.block=8", "regenerate.prompt=4", "eval.heldout_paragraphs=5",
]


def micro_args(*extra: str) -> list[str]:
    out = []
    for item in MICRO + list(extra):
        out += ["--set", item]
    return out


# ---------------------------------------------------------------------------------------------- config

def test_shipped_tasks_load_validate_and_plan(capsys):
    facts = load_task("collapse_facts")
    assert (facts.stages, facts.mode, facts.model.name, facts.regenerate.decoding) == (6, "accumulate", "tiny", "sample")
    assert facts.stage_train(seed=0).packing is False  # one paragraph per row: facts are learnable
    wiki = load_task("collapse_wikitext")
    assert wiki.model.name == "meta-llama/Llama-3.2-1B"
    assert (wiki.train.lr, wiki.train.batch_size, wiki.train.epochs) == (2e-5, 64, 10)
    assert (wiki.regenerate.decoding, wiki.regenerate.num_beams, wiki.regenerate.repetition_penalty) == ("beam", 5, 3.0)
    # --plan needs neither the hub nor the corpus
    assert cli_main(["collapse", "--task", "collapse_wikitext", "--loss", "tce:0.9", "--plan"]) == 0
    out = capsys.readouterr().out
    # the paper's budget: every stage trains its 10 epochs over the whole pool
    assert "stage 5: train M_5 on [D_0^(5), D_1^(4), D_2^(3), D_3^(2), D_4^(1), D_5^(0)] (real 17%, 10 epochs)" in out
    assert "beam 5, repetition penalty 3" in out
    assert cli_main(["collapse", "--plan"]) == 0  # the embedded default: the same steps at every stage
    out = capsys.readouterr().out
    assert "(real 50%, 15 epochs)" in out and "(real 17%, 5 epochs)" in out


def test_overrides_and_hash():
    a = load_task("collapse_facts", ["train.epochs=3", "regenerate.temperature=0.7", "model.tiny.n_layer=2"])
    assert (a.train.epochs, a.regenerate.temperature, a.model.tiny.n_layer) == (3, 0.7, 2)
    b = load_task("collapse_facts", ["train.epochs=3", "regenerate.temperature=0.7", "model.tiny.n_layer=2", "seed=5"])
    assert a.config_hash() == b.config_hash()  # the seed is not part of the hash
    assert a.config_hash() != load_task("collapse_facts").config_hash()
    assert load_task("collapse_facts", ["train.lr=5e-3"]).train.lr == 0.005  # YAML 1.1 reads 5e-3 as text


@pytest.mark.parametrize("override, field", [
    ("train.epochz=3", "train.epochz"),
    ("train.epochs=three", "train.epochs"),
    ("regenerate.temperature=[1]", "regenerate.temperature"),
    ("model.tiny.n_layer=true", "model.tiny.n_layer"),
    ("bogus=1", "bogus"),
    ("regenerate.mode=sideways", "regenerate.mode"),
    ("train.lr=-1", "lr"),
])
def test_bad_fields_are_named(override, field):
    with pytest.raises(FortifaiError, match=field.replace(".", r"\.")):
        load_task("collapse_facts", [override])


def test_bad_yaml_file_names_the_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("task: mine\ntrain: {epochs: 2, learning_rate: 0.1}\n")
    with pytest.raises(FortifaiError, match=r"t\.yaml.*unknown field train\.learning_rate"):
        load_task(str(path))
    path.write_text("task: mine\nstages: six\n")
    with pytest.raises(FortifaiError, match=r"field stages must be an integer"):
        load_task(str(path))


def test_unknown_task_and_corpus():
    with pytest.raises(FortifaiError, match="unknown collapse task 'nope'.*collapse_facts"):
        load_task("nope")
    with pytest.raises(FortifaiError, match="unknown corpus 'nope'"):
        load_data(load_task("collapse_facts", ["corpus=nope"]))


def test_fewer_paragraphs_than_stages():
    with pytest.raises(FortifaiError, match="has 180 paragraphs, fewer than the 600"):
        load_data(load_task("collapse_facts", ["paragraphs_per_split=100"]))
    with pytest.raises(FortifaiError, match="180 paragraphs, fewer than the 200 stages"):
        load_data(load_task("collapse_facts", ["stages=200", "paragraphs_per_split=null",
                                               "eval.heldout_part=null", "eval.heldout_paragraphs=0"]))


# ---------------------------------------------------------------------------------------------- schedule

def test_schedule_modes():
    assert pool(3, "accumulate") == [(0, 3), (1, 2), (2, 1), (3, 0)]
    assert [pool(i, "replace") for i in range(3)] == [[(0, 0)], [(0, 1)], [(0, 2)]]
    assert pool(2, "accumulate-subsample") == pool(2, "accumulate")
    acc = plan(load_task("collapse_facts", ["stages=4"]), [30] * 4)
    assert acc[3].pool == ((0, 3), (1, 2), (2, 1), (3, 0)) and acc[3].seen == (0, 1, 2, 3)
    assert [p.regenerate for p in acc] == [(0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]
    assert [p.epochs for p in acc] == [30, 15, 10, 8] and acc[2].paragraphs == (tuple(range(30)),) * 3
    rep = plan(load_task("collapse_facts", ["stages=3", "mode=replace"]), [30] * 3)
    assert [p.seen for p in rep] == [(0,), (0,), (0,)] and [p.real_share for p in rep] == [1.0, 0.0, 0.0]
    sub = plan(load_task("collapse_facts", ["stages=3", "mode=accumulate-subsample"]), [30, 20, 10])
    assert [p.size for p in sub] == [30, 30, 30] and [p.epochs for p in sub] == [30, 30, 30]
    picked = subsample({0: 30, 1: 30, 2: 30}, 30, seed=1)
    assert sum(map(len, picked.values())) == 30 and all(len(set(v)) == len(v) for v in picked.values())
    assert picked == subsample({0: 30, 1: 30, 2: 30}, 30, seed=1) != subsample({0: 30, 1: 30, 2: 30}, 30, seed=2)
    text = format_plan(load_task("collapse_facts", ["mode=accumulate-subsample", "subsample=12"]))
    assert "subsample 12 paragraphs" in text


def test_the_plan_text_uses_the_real_split_sizes():
    """--plan shows the epochs the run trains with: one split's real paragraphs over the pool (180 cut into
    7 splits of 26 or 25; a pool cut to 40: 30 x 26/40 = 20 epochs), not splits taken to hold one paragraph
    (which printed 15, 10, 8, ... for this task)."""
    task = load_task("collapse_facts", ["paragraphs_per_split=null", "stages=7", "mode=accumulate-subsample",
                                        "subsample=40"])
    data = load_data(task)
    assert [len(s) for s in data.splits] == [26] * 5 + [25] * 2
    assert [p.epochs for p in plan(task, [len(s) for s in data.splits])] == [30] + [20] * 6
    assert re.findall(r"(\d+) epochs\); then", format_plan(task, compute=False)) == ["30"] + ["20"] * 6
    assert format_plan(task, compute=False).count("evaluate KR on splits 0..6") == 7
    first = load_task("collapse_facts", ["stages=3", "eval.kr_splits=first"])  # what the run scores: split 0's only
    text = format_plan(first, compute=False)
    assert text.count("evaluate KR on split 0") == 3 and "on splits" not in text


def test_the_plan_counts_a_shared_prefix_once_per_paragraph():
    """`original` blocks from a shared prefix: --plan counts each paragraph's prefix once (up to its last
    block's start), not one context per block; blocks past the context's reach still read their own."""
    from fortifai_bench.collapse.compute import _rewrite

    r = RegenerateSettings(mode="original", block=32, prompt=32, context=512, batch_size=32)
    # 100 tokens: blocks at 33, 65 and 97 (BOS + 32 kept), all in one batch
    assert _rewrite([100], r, shared=False) == (3 * 32, 3 * 97)
    assert _rewrite([100], r, shared=True) == (3 * 32, 96)
    narrow = RegenerateSettings(mode="original", block=32, prompt=32, context=96, batch_size=32)  # reach 64
    # only 33 lies within reach: 65 and 97 read their own 64 tokens, and the one batch pads 33 to them too
    assert _rewrite([100], narrow, shared=True) == (3 * 32, 3 * 64 + 32)


def test_the_plan_counts_the_mask_measure_only_for_a_loss_that_masks():
    """Around training a masking loss's mask is measured on the regenerated pool and the fresh split, by the
    model before and after (`corruption.gradient_split`); a loss that keeps every token needs no pass."""
    from fortifai_bench.collapse.compute import _padded, _stage

    task = load_task("collapse_facts", ["stages=3", "paragraphs_per_split=6"])
    data = load_data(task)
    count = lambda text: len(text.split())  # noqa: E731  any counter: the plan only adds its counts up
    stages = plan(task, [len(s) for s in data.splits])
    for p in stages:
        measured, skipped = (_stage(task, data, count, p, masks=m).scored for m in (True, False))
        regenerated = [count(q.text) for k, g in p.pool if g > 0 for q in data.splits[k]]
        fresh = [count(q.text) for k, g in p.pool if g == 0 for q in data.splits[k]]
        eb = task.eval.batch_size
        assert measured - skipped == (2 * (_padded(regenerated, eb) + _padded(fresh, eb)) if regenerated else 0)
    assert any(g > 0 for _, g in stages[-1].pool)


def test_data_maps_questions_onto_splits():
    data = load_data(load_task("collapse_facts", ["stages=3", "paragraphs_per_split=6"]))
    assert [len(s) for s in data.splits] == [6, 6, 6]
    assert {q.split for q in data.questions} == {0, 1, 2}
    assert all(q.paragraph // 6 == q.split for q in data.questions)
    assert len(data.heldout) == 30 and not set(data.heldout) & {p.text for s in data.splits for p in s}


# ---------------------------------------------------------------------------------------------- regeneration

@pytest.fixture(scope="module")
def small_model():
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.models import TinyConfig, build_tiny

    texts = get_corpus("facts").texts()[:40]
    model, tok = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2), seed=0)
    return model.eval(), tok, texts


def test_regenerate_keeps_lengths_prompt_and_is_seeded(small_model):
    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    for mode in ("sequential", "original"):
        s = RegenerateSettings(mode=mode, block=8, context=24, prompt=4, batch_size=5)
        a = regenerate(model, tok, texts[:12], s, seed=3)
        b = regenerate(model, tok, texts[:12], s, seed=3)
        c = regenerate(model, tok, texts[:12], s, seed=4)
        assert a.ids == b.ids and a.texts == b.texts and a.ids != c.ids
        for text, ids, gen in zip(texts, a.ids, a.generated):
            orig = tok(text)["input_ids"]
            assert len(ids) == len(orig)
            first = gen.index(True)
            assert first == 1 + 4 and ids[:first] == orig[:first]  # BOS + 4 prompt tokens kept
            assert tok.eos_token_id not in ids[1:]
        assert a.new_tokens == sum(len(tok(t)["input_ids"]) - 5 for t in texts[:12])


def test_a_paragraph_rewrite_does_not_depend_on_its_batch(small_model):
    """Per-paragraph sampling seeds: the same paragraph (key) gets the same rewrite with any batch size or
    companions, which is what lets ranks shard regeneration by paragraph."""
    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    keys = [f"p{i}" for i in range(12)]
    for mode in ("sequential", "original"):
        whole = regenerate(model, tok, texts[:12], RegenerateSettings(mode=mode, block=8, prompt=4, batch_size=64),
                           seed=7, keys=keys)
        small = regenerate(model, tok, texts[:12], RegenerateSettings(mode=mode, block=8, prompt=4, batch_size=3),
                           seed=7, keys=keys)
        odd = regenerate(model, tok, texts[5:12:3], RegenerateSettings(mode=mode, block=8, prompt=4, batch_size=2),
                         seed=7, keys=keys[5:12:3])
        assert whole.ids == small.ids, mode
        assert odd.ids == whole.ids[5:12:3], mode
        assert whole.ids != regenerate(model, tok, texts[:12], RegenerateSettings(mode=mode, block=8, prompt=4),
                                       seed=8, keys=keys).ids


def test_sampling_at_low_temperature_matches_hf_greedy(small_model):
    """The batched, left-padded KV-cache loop computes the same next tokens as HF `generate`."""
    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    s = RegenerateSettings(mode="sequential", block=8, context=512, prompt=6, temperature=1e-6, batch_size=8)
    assert_hf_greedy(model, tok, regenerate(model, tok, texts[:8], s, seed=0))


def assert_hf_greedy(model, tok, res) -> None:
    """Every regenerated row is what HF `generate` gives greedily from the row's kept prompt."""
    for ids, gen in zip(res.ids, res.generated):
        first = gen.index(True)
        prompt = torch.tensor([ids[:first]])
        with torch.no_grad():
            ref = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=len(ids) - first, min_new_tokens=len(ids) - first,
                                 suppress_tokens=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
        assert ref[0].tolist() == ids


def test_original_mode_uses_the_input_text_as_context(small_model):
    """In `original` mode block j continues the ORIGINAL blocks before it: greedy decoding of each
    block equals greedy decoding from the original prefix."""
    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    s = RegenerateSettings(mode="original", block=8, context=512, prompt=4, temperature=1e-6, batch_size=16)
    text = max(texts[:10], key=lambda t: len(tok(t)["input_ids"]))
    orig = tok(text)["input_ids"]
    res = regenerate(model, tok, [text], s, seed=0)
    start = 5 + 8  # second regenerated block
    prefix = torch.tensor([orig[:start]])
    with torch.no_grad():
        ref = model.generate(prefix, attention_mask=torch.ones_like(prefix), do_sample=False, max_new_tokens=8,
                             min_new_tokens=8, suppress_tokens=[tok.eos_token_id], pad_token_id=tok.pad_token_id)
    n = min(8, len(orig) - start)
    assert res.ids[0][start : start + n] == ref[0, start : start + n].tolist()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_original_mode_matches_generate_on_every_block_shared_prefix_or_sliding(small_model, arch):
    """Every block of `original` mode, greedy, is HF `generate` from that block's original context: blocks
    whose context is the paragraph's whole prefix continue one shared forward pass over the paragraph
    (`_prefix_states`, cut per row by `_prefix_cache`), the later blocks of a paragraph longer than the
    context read their own sliding window. On GPT-2 (the tiny preset's) and on Llama (SmolLM2's: grouped
    key-value heads, rotary positions)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    if arch == "llama":
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval()
    s = RegenerateSettings(mode="original", decoding="greedy", block=8, context=32, prompt=4, batch_size=5)
    chosen = sorted(texts[:12], key=lambda t: len(tok(t)["input_ids"]))[-4:]  # long enough to slide
    res = regenerate(model, tok, chosen, s, seed=0)
    slid = 0
    for text, ids in zip(chosen, res.ids):
        orig = tok(text)["input_ids"]
        for start in range(5, len(orig), 8):
            context = torch.tensor([orig[max(0, start - 24) : start]])
            slid += start > 24
            n = min(8, len(orig) - start)
            with torch.no_grad():
                ref = model.generate(context, attention_mask=torch.ones_like(context), do_sample=False,
                                     max_new_tokens=n, min_new_tokens=n, suppress_tokens=[tok.eos_token_id],
                                     pad_token_id=tok.pad_token_id)
            assert ids[start : start + n] == ref[0, context.shape[1]:].tolist(), (arch, start)
    assert slid > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_shared_prefix_cache_gives_the_logits_of_reading_the_context(small_model, arch):
    """The next-token logits after `_prefix_cache` (rows cut from one forward pass over their paragraphs,
    left-padded) and the context's last token are those of reading each context whole, left-padded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from fortifai_bench.collapse.regenerate import _left_pad, _prefix_cache, _prefix_states, _step

    model, tok, texts = small_model
    if arch == "llama":
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             initializer_range=0.5, max_position_embeddings=512)).eval()
    paragraphs = {p: tok(t)["input_ids"] for p, t in enumerate(texts[:3])}
    states = _prefix_states(model, paragraphs)
    rows = [(0, 7), (1, 19), (2, 12), (0, 3)]  # (paragraph, context length)
    contexts = [paragraphs[p][:n] for p, n in rows]
    ids, mask = _left_pad(contexts, 0)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.inference_mode():
        whole, _ = _step(model, ids, mask, positions, None)
        cache = _prefix_cache([states[p] for p, _ in rows], [n - 1 for _, n in rows])
        cached, _ = _step(model, ids[:, -1:], mask, positions[:, -1:], cache)
    assert torch.allclose(cached, whole, atol=1e-5, rtol=1e-5)
    assert (cached - whole).abs().max() < 1e-3 * whole.std()


def test_beam_decoding_runs(small_model):
    from fortifai_bench.collapse.regenerate import regenerate

    model, tok, texts = small_model
    s = RegenerateSettings(decoding="beam", num_beams=2, repetition_penalty=3.0, block=8, prompt=4, batch_size=4)
    res = regenerate(model, tok, texts[:4], s, seed=0)
    assert [len(i) for i in res.ids] == [len(tok(t)["input_ids"]) for t in texts[:4]]


# ---------------------------------------------------------------------------------------------- metrics

def test_collapse_metrics():
    a = [[1, 2, 3, 4, 1, 2]]
    assert ngram_kl(a, a, 1) == pytest.approx(0.0, abs=1e-12)
    assert ngram_kl(a, a, 2) == pytest.approx(0.0, abs=1e-12)
    far = ngram_kl(a, [[9, 9, 9, 9]], 1)
    near = ngram_kl(a, [[1, 2, 3, 4, 4, 2]], 1)
    assert 0 < near < far < 30  # smoothing keeps disjoint supports finite
    assert distinct_n([[1, 2, 1, 2]], 2) == pytest.approx(2 / 3)
    assert distinct_n([[1, 1, 1]], 1) == pytest.approx(1 / 3)
    s = confidence_summary([0.05, 0.5, 0.95, 0.99], bins=10)
    assert s["n"] == 4 and s["frac_above_0.9"] == 0.5 and sum(s["hist"]["counts"]) == 4
    assert s["hist"]["counts"][0] == 1 and s["hist"]["counts"][-1] == 2


# ---------------------------------------------------------------------------------------------- micro runs

CONTRACT_KEYS = {"format", "kind", "task", "loss", "model", "seed", "config", "config_hash", "score_name",
                 "failure_threshold", "stages", "time_to_failure", "failure", "auc", "final_score", "items",
                 "provenance"}


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    from fortifai_bench.collapse.run import run_collapse

    out = tmp_path_factory.mktemp("runs")
    task = load_task("collapse_facts", MICRO)
    return run_collapse(task, "ce", seed=0, out=out, progress=False), task


def test_runs_side_by_side_give_the_numbers_of_one_thread_runs(micro_run, tmp_path, capsys):
    """--jobs 2: each run in its own process with one thread; the same numbers as the one-thread run here."""
    from fortifai_bench.collapse.experiment import run_experiment

    here, task = micro_run
    assert torch.get_num_threads() == 1  # conftest: one thread per test process
    exp = run_experiment(task, ["ce", "tce:0.9"], [0], control=True, out=tmp_path, progress=True, jobs=3)
    [ce], [tce], [control] = exp.groups["ce"], exp.groups["tce:0.9"], exp.groups["control"]
    assert [st["score"] for st in ce["stages"]] == [st["score"] for st in here["stages"]]
    assert [st["kl_split0"] for st in ce["stages"]] == [st["kl_split0"] for st in here["stages"]]
    assert tce["loss"]["spec"] == "tce:0.9" and control["control"] is True
    assert len({r["run_dir"] for r in (ce, tce, control)}) == 3
    out = capsys.readouterr().out  # not a terminal here: one line per stage, "run k of N", the control marked
    for k, name in enumerate(["ce", "tce:0.9", "ce (control)"]):
        assert re.search(rf"^run {k + 1} of 3: collapse_facts {re.escape(name)} seed 0: stage 2: KR-split-0 ", out,
                         re.M), out
    assert re.search(r"stage 1: KR-split-0 .*train \d+\.\ds .*left; ETA \d+:\d\d\]$", out, re.M)
    assert "\r" not in out and "run 3 of 3: collapse_facts ce (control) seed 0: stage 0: KR-split-0" in out
    assert f"time: {exp.seconds:.0f} s wall for 3 runs, 3 at a time; per phase, summed over the runs: train" \
        in exp.table()
    torch.set_num_threads(2)  # a single run under --jobs runs here, with one thread like a worker
    [single] = run_experiment(task, ["ce"], [0], out=tmp_path / "one", progress=False, jobs=2).groups["ce"]
    assert torch.get_num_threads() == 1
    assert [st["score"] for st in single["stages"]] == [st["score"] for st in here["stages"]]
    with pytest.raises(FortifaiError, match="--jobs must be an integer >= 1"):
        run_experiment(task, ["ce"], [0], out=tmp_path, progress=False, jobs=0)


def test_micro_run_results_and_run_directory(micro_run):
    from fortifai_bench.models import load_model

    results, task = micro_run
    run = Path(results["run_dir"])
    assert CONTRACT_KEYS <= set(results)
    assert results["format"] == "fortifai-bench/results@1" and results["kind"] == "text"
    assert results["task"] == {"name": "collapse_facts", "version": task.version} and results["loss"]["spec"] == "ce"
    assert results["complete"] and len(results["stages"]) == 3
    n0 = sum(1 for q in load_data(task).questions if q.split == 0)
    bits = results["items"]["split0_correct"]
    assert len(bits) == 3 and all(len(b) == n0 and set(b) <= {"0", "1"} for b in bits)
    model, tok = load_model(run / "stage_2" / "model")  # a plain HF directory
    assert model.config.n_layer == 1
    for i, stage in enumerate(results["stages"]):
        assert stage["score"] == pytest.approx(bits[i].count("1") / n0)
        assert set(stage["kr"]) == {"0", "1", "2"} and 0 <= stage["kr_total"] <= 1
        assert stage["training_data"] == [{"split": k, "generation": i - k, "paragraphs": 6} for k in range(i + 1)]
        assert stage["regenerated_splits"] == list(range(i + 1))
        assert stage["perplexity"] > 1 and stage["kl"] >= 0 and stage["kl_bigram"] >= 0
        assert 0 < stage["distinct_1"] <= 1
        conf = stage["confidence"]  # the Fig. 1 contrasts, in eval and in train mode
        assert conf["mode"] == "eval" and conf["gamma"] == 0.9
        for key in ("own_generated", "trained_real", "unseen_real"):
            assert conf[key]["n"] > 0 and 0 <= conf[key]["share_above_gamma"] <= 1
            assert conf["train_mode"][key]["n"] == conf[key]["n"]
            assert conf["train_mode"][key]["mean"] != conf[key]["mean"]  # dropout on: another number
        assert conf["trained_real"]["n"] == sum(len(tok(q.text)["input_ids"]) - 1 for q in load_data(task).splits[i][:6])
        assert set(stage["seconds"]) == {"train", "regenerate", "evaluate"}
        rows = [json.loads(line) for line in (run / f"stage_{i}" / "data" / "split_0.jsonl").read_text().splitlines()]
        assert len(rows) == 6 and all(r["generation"] == i + 1 for r in rows)
    cfg = (run / "config.yaml").read_text()
    assert "config_hash" in cfg and "torch" in cfg and "spec: ce" in cfg
    assert all((run / "plots" / f).is_file() for f in ("kr.png", "kl.png", "confidence.png"))
    assert results["time_to_failure"] is None or 0 <= results["time_to_failure"] <= 2
    assert results["failure"]["status"] in ("failed", "never_failed", "never_learned")
    assert all((run / "plots" / f).is_file() for f in ("kr.svg", "kl.svg", "gradient.png"))
    # where the loss puts its gradient: stage 0 trains on real text only; later stages on rewrites
    first = results["stages"][0]["gradient"]
    assert first["start"] is None and first["end"] is None
    assert first["trained"]["corrupted"] is None and first["trained"]["fresh"]["kept_rate"] == 1.0  # CE
    for stage in results["stages"][1:]:
        g = stage["gradient"]["start"]
        assert g["mode"] == "eval" and g["tokens"] > 0 and 0 <= g["corrupted_share"] <= 1 and g["loss_reports_mask"]
        assert g["kept_share"] == 1.0 and g["kept_corrupted_share"] == pytest.approx(g["corrupted_share"])  # CE
        trained = stage["gradient"]["trained"]
        assert trained["mode"] == "train" and trained["gamma"] == 0.9
        epochs = len(trained["by_epoch"]["fresh"])
        # every regenerated target token within a row's block_size (128: a micro model's rewrite may be
        # longer), once per epoch; CE keeps them all
        assert 0 < sum(trained[c]["tokens"] for c in ("corrupted", "faithful") if trained[c]) <= epochs * g["tokens"]
        assert all(trained[c]["kept_rate"] == 1.0 for c in ("corrupted", "faithful", "fresh") if trained[c])
        assert sum(trained["facts_stated"].values()) == sum(len(q.meta["facts"]) for k in range(stage["stage"])
                                                            for q in load_data(task).splits[k][:6])
    floor = results["stages"][0]["kl_floor"]
    assert floor["halves"] > 0 and floor["split1"] > 0
    chance = results["chance"]
    assert chance["length_bias_split0"]["questions"] == n0 and chance["length_bias_split0"]["tokens"] is not None
    assert 0 <= chance["base_model"]["kr_split0"] <= 1


def test_clean_control_trains_on_real_splits_only(tmp_path):
    from fortifai_bench.collapse.experiment import run_experiment

    task = load_task("collapse_facts", MICRO + ["stages=2"])
    exp = run_experiment(task, ["ce"], [0], control=True, out=tmp_path, progress=False)
    [control] = exp.groups["control"]
    assert control["control"] is True and control["config"]["mode"] == "clean"
    assert control["stages"][1]["training_data"] == [{"split": 0, "generation": 0, "paragraphs": 6},
                                                      {"split": 1, "generation": 0, "paragraphs": 6}]
    grad = control["stages"][1]["gradient"]  # every token it trains on is real: no rewrite to measure
    assert grad["start"] is None and grad["trained"]["corrupted"] is None and "-control-" in control["run_dir"]
    assert grad["trained"]["fresh"]["kept_rate"] == 1.0
    [ce] = exp.groups["ce"]
    assert ce["control"] is False and ce["stages"][1]["training_data"][0]["generation"] == 1
    assert "control" in exp.table() and exp.summary_path.is_file()
    # the time per phase, summed over the runs' stages, and the wall time it is part of
    phases = exp.phase_seconds()
    recorded = sum(st["seconds"]["train"] for r in (control, ce) for st in r["stages"])
    assert phases["train"] == pytest.approx(recorded) and phases["evaluate"] > 0
    assert 0 < sum(phases.values()) <= exp.seconds
    assert f"time: {exp.seconds:.0f} s wall = train {phases['train']:.0f} s" in exp.table()
    assert json.loads(exp.summary_path.read_text())["seconds"]["train"] == pytest.approx(phases["train"])
    assert exp.summary_path.with_suffix(".png").is_file() and exp.summary_path.with_suffix(".svg").is_file()
    svg = exp.summary_path.with_suffix(".svg").read_text()  # a legend entry for every line
    for label in ("ce (mean of 1)", "clean control (mean of 1)", "failure threshold (0.75)", "chance (0.5)"):
        assert label in svg, label
    mechanism = exp.summary_path.with_name(f"{exp.summary_path.stem}-mechanism.svg").read_text()
    assert "ce: own rewrite (mean of 1)" in mechanism and "clean control: unseen real text" in mechanism
    run_svg = (Path(ce["run_dir"]) / "plots" / "kr.svg").read_text()
    assert "KR split 0" in run_svg and "failure threshold" in run_svg


def test_work_shared_between_runs_is_bitwise_the_work_it_replaces(tmp_path):
    """The control's stage 0 (its baseline's, copied) and every run's chance.json (computed once, copied): the
    files are those the runs compute alone, and so are the control's results."""
    from fortifai_bench.collapse.experiment import control_task, run_experiment
    from fortifai_bench.collapse.rundir import comparable
    from fortifai_bench.collapse.run import run_collapse

    task = load_task("collapse_facts", MICRO + ["stages=2"])
    exp = run_experiment(task, ["ce", "tce:0.9"], [0], control=True, out=tmp_path / "exp", progress=False)
    [ce], [tce], [control] = exp.groups["ce"], exp.groups["tce:0.9"], exp.groups["control"]
    alone = run_collapse(control_task(task), "ce", seed=0, out=tmp_path / "alone", progress=False)
    assert comparable(control) == comparable(alone)
    copied = json.loads((Path(control["run_dir"]) / "copied.json").read_text())
    assert copied == {"chance.json": ce["run_dir"], "stage_0": ce["run_dir"]}
    assert json.loads((Path(tce["run_dir"]) / "copied.json").read_text()) == {"chance.json": ce["run_dir"]}
    first, mine = Path(ce["run_dir"]) / "stage_0", Path(alone["run_dir"]) / "stage_0"
    for name in ("model/model.safetensors", "data/split_0.jsonl", "../chance.json"):
        assert (first / name).read_bytes() == (mine / name).read_bytes(), name
    def numbers(path):  # a stage record without its timings
        doc = comparable(json.loads(path.read_text()))
        for epoch in doc.get("history", []):
            epoch.pop("tokens_per_s")
        return doc

    for name in ("metrics.json", "train.json"):
        assert numbers(first / name) == numbers(mine / name), name
    assert control["stages"][0]["seconds"] == {"train": 0.0, "regenerate": 0.0, "evaluate": 0.0}  # no time spent


def test_resume_refuses_a_different_config(micro_run, capsys):
    from fortifai_bench.collapse.run import run_collapse

    results, task = micro_run
    other = load_task("collapse_facts", MICRO + ["train.epochs=3"])
    with pytest.raises(FortifaiError, match=r"different config.*config\.train\.epochs: 2 -> 3"):
        run_collapse(other, "ce", seed=0, resume=results["run_dir"], progress=False)
    assert cli_main(["collapse", "--quiet", "--resume", results["run_dir"], "--loss", "tce:0.9"] + micro_args()) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "loss.spec: 'ce' -> 'tce:0.9'" in err
    before = json.loads((Path(results["run_dir"]) / "results.json").read_text())
    assert comparable_ok(before, results)  # the refused resume touched nothing


def comparable_ok(a, b) -> bool:
    from fortifai_bench.collapse.rundir import comparable

    return comparable(a) == comparable(b)


NAN_LOSS = '''
import torch
from fortifai_bench.losses import Loss

class NaNAfter(Loss):
    """Cross-entropy for the first `calls` batches, then NaN."""
    def __init__(self, calls=3):
        self.calls, self.seen = int(calls), 0
    def reduce(self, logp, valid):
        self.seen += 1
        loss = -logp.sum() / valid.sum()
        return (loss * float("nan") if self.seen > self.calls else loss), valid
'''


def test_nan_mid_run_keeps_finished_stages(tmp_path, monkeypatch):
    from fortifai_bench.collapse.run import run_collapse

    (tmp_path / "nanloss.py").write_text(NAN_LOSS)
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task("collapse_facts", MICRO)
    # stage 0 has 2 epochs of 2 batches (6 paragraphs, one per row, batch 4): the 5th batch is stage 1's first
    with pytest.raises(FortifaiError, match=r"stage 1 stopped: epoch 1 step 1: loss 'nanloss:NaNAfter' returned nan"
                                            r".*stages 0\.\.0 are kept"):
        run_collapse(task, "nanloss:NaNAfter", {"calls": 4}, out=tmp_path / "runs", progress=False)
    (run,) = (tmp_path / "runs").iterdir()
    results = json.loads((run / "results.json").read_text())
    assert len(results["stages"]) == 1 and not results["complete"]
    assert results["stopped"]["stage"] == 1 and "step 1" in results["stopped"]["error"]
    assert (run / "stage_0" / "model" / "config.json").is_file() and (run / "stage_0" / "metrics.json").is_file()
    assert not (run / "stage_1" / "model").exists()


def test_sigkill_mid_stage_then_resume_is_identical(tmp_path, micro_run):
    """A real subprocess killed with SIGKILL inside stage 1, resumed, ends exactly like the uninterrupted run."""
    from fortifai_bench.collapse.rundir import comparable

    reference, _ = micro_run
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--quiet", "--loss", "ce", "--seeds", "0",
           "--out", str(out)] + micro_args()
    env = dict(os.environ)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed_in = kill_inside_stage_1(proc, out, lambda: proc.send_signal(signal.SIGKILL))
    proc.wait(timeout=60)
    assert killed_in is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (killed_in / "stage_2").exists()
    assert cli_main(["collapse", "--quiet", "--resume", str(killed_in)]) == 0
    resumed = json.loads((killed_in / "results.json").read_text())
    assert resumed["complete"]
    assert comparable(resumed) == comparable(reference)


def test_sigterm_stops_runs_side_by_side_cleanly_and_says_how_to_resume(tmp_path, micro_run):
    """SIGTERM to `collapse --jobs 2` (two runs in worker processes) once a stage is done: exit 143, no
    traceback and no leaked-semaphore warning, one resume command per unfinished run, and each resumes to the
    numbers of the uninterrupted run."""
    reference, _ = micro_run
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "fortifai_bench", "collapse", "--loss", "ce", "--loss", "tce:0.9", "--seeds", "0",
           "--jobs", "2", "--out", str(out)] + micro_args()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # piped: one line per stage, no bars
        if "stage 0: KR-split-0" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    assert "Traceback" not in err and "leaked" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fortifai-bench: stopped by SIGTERM: 2 unfinished runs kept; resume with: "), err
    runs = re.findall(r"fortifai-bench collapse --resume (\S+?)(?:;|$| \()", last)
    assert len(runs) == 2 and all(Path(r).is_dir() for r in runs), last
    ce = next(r for r in runs if "-ce-" in r)
    assert cli_main(["collapse", "--quiet", "--resume", ce]) == 0
    from fortifai_bench.collapse.rundir import comparable

    resumed = json.loads((Path(ce) / "results.json").read_text())
    assert [s["score"] for s in resumed["stages"]] == [s["score"] for s in reference["stages"]]
    assert comparable(resumed)["stages"] == comparable(reference)["stages"]


def test_stage_model_runs_under_lm_eval(micro_run):
    """RUN/stage_<i>/model is what `lm_eval --model hf --model_args pretrained=... --tasks kr_facts` loads."""
    from fortifai_bench.collapse.evaluate import run_lm_eval

    results, _ = micro_run
    out = run_lm_eval(Path(results["run_dir"]) / "stage_2" / "model", ["kr_facts_split0"], batch_size=64)
    row = out["kr_facts_split0"]
    assert row["sample_len"] > 100 and 0.0 <= row["acc,none"] <= 1.0


# ----------------------------------------------------------------------------- the mask as trained (issue 26)


def test_stated_values_read_each_fact_from_its_template():
    """On the real text every fact is found where the corpus put it, true; a changed value reads false; a
    sentence the rewrite dropped reads missing; the other template variant is read too."""
    from fortifai_bench.collapse.corruption import stated_values

    for corpus_task in ("collapse_facts", "collapse_facts_longtail"):
        for q in load_data(load_task(corpus_task)).splits[0]:
            assert stated_values(q.meta, q.text) == [(f["start"], f["end"], True) for f in q.meta["facts"]]
    meta = {"entity": "Orvel Tamsin", "kind": "person", "facts": [
        {"attribute": "birth_place", "slot": "place", "value": "Dunholt"},
        {"attribute": "birth_year", "slot": "year", "value": "1843"},
        {"attribute": "death_year", "slot": "year", "value": "1901"},
        {"attribute": "friend", "slot": "rel:person", "value": "Velka Ramo"},
        {"attribute": "work_place", "slot": "place", "value": "Ardun"}]}
    text = "Orvel Tamsin was born in 1843 in Pellin. Tamsin was a friend of Velka Ramo. Tamsin became a baker in 1889"
    at = text.index("1889")  # a number where a place belongs, and the text's end for the sentence's: stated false
    assert stated_values(meta, text) == [(33, 39, False), (25, 29, True), None, (64, 74, True), (at, at + 4, False)]


def test_token_classes_mark_sources_and_fact_values():
    from fortifai_bench.collapse.corruption import CORRUPTED, FAITHFUL, FRESH, VALUE_FALSE, VALUE_TRUE, token_classes
    from fortifai_bench.models import TinyConfig, build_tiny

    data = load_data(load_task("collapse_facts"))
    q = data.splits[0][0]
    _, tok = build_tiny([p.text for s in data.splits for p in s], TinyConfig(vocab_size=512))
    classes, counts = token_classes(tok, q, q.text, 0)
    assert counts == {"true": len(q.meta["facts"]), "false": 0, "missing": 0}
    assert set(classes) == {FRESH, FRESH + VALUE_TRUE}
    f = q.meta["facts"][0]
    other = "Aldmere" if f["value"] != "Aldmere" else "Brenvia"
    assert f["slot"] == "place"
    rewrite = q.text[: f["start"]] + other + q.text[f["end"]:]
    classes, counts = token_classes(tok, q, rewrite, 1)
    assert counts == {"true": len(q.meta["facts"]) - 1, "false": 1, "missing": 0}
    ids, offsets = tok(rewrite)["input_ids"], tok(rewrite, return_offsets_mapping=True)["offset_mapping"]
    for t, ((a, b), c) in enumerate(zip(offsets, classes)):
        in_value = a < f["start"] + len(other) and b > f["start"]
        assert (c & VALUE_FALSE != 0) == in_value
        assert c % 4 in (FAITHFUL, CORRUPTED)
    assert CORRUPTED + VALUE_FALSE in classes and FAITHFUL in classes and len(classes) == len(ids)


def test_training_classes_count_facts_only_where_the_corpus_states_them():
    """`gradient.trained.facts_stated` is absent on a corpus without facts, not a row of zeros."""
    import dataclasses

    from fortifai_bench.collapse.run import training_classes
    from fortifai_bench.models import TinyConfig, build_tiny

    data = load_data(load_task("collapse_facts"))
    q = data.splits[0][0]
    _, tok = build_tiny([p.text for s in data.splits for p in s], TinyConfig(vocab_size=512))
    _, facts = training_classes(tok, [(q.text, q, 0), (q.text, q, 1)])
    assert facts == {"true": len(q.meta["facts"]), "false": 0, "missing": 0}  # the regenerated row's facts only
    plain = dataclasses.replace(q, meta={})
    classes, facts = training_classes(tok, [(q.text, plain, 0), (q.text, plain, 1)])
    assert facts is None and len(classes) == 2


def test_a_loss_that_keeps_every_token_is_measured_without_running_the_model(small_model):
    """CE, focal and TCE(1.0) keep every token whatever the model predicts: `_kept` answers what a forward pass
    and their own reduce give without calling the model. A subclass that overrides reduce promises nothing."""
    from fortifai_bench.collapse.corruption import _kept
    from fortifai_bench.collapse.probs import token_probs
    from fortifai_bench.losses import CE, TCE, Focal, FunctionLoss

    class SameAsCE(CE):
        def reduce(self, logp, valid):
            return super().reduce(logp, valid)

    model, tok, texts = small_model
    rows = [tok(t)["input_ids"][: 5 + 7 * (3 * j % 5)] for j, t in enumerate(texts[:5])]  # unsorted lengths
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        for loss in (CE(), Focal(2.0), TCE(1.0)):
            assert loss.keeps_every_token()
            assert _kept(model, loss, rows, 2) == [[True] * (len(r) - 1) for r in rows] and not calls
        assert not SameAsCE().keeps_every_token() and not TCE(0.9).keeps_every_token()
        assert not FunctionLoss(lambda logits, labels: logits.sum()).keeps_every_token()
        assert _kept(model, SameAsCE(), rows, 2) == _kept(model, CE(), rows, 2) and len(calls) == 3
        probs = token_probs(model, rows)
        ps = sorted(p for ps in probs for p in ps)
        gamma = (ps[len(ps) // 2 - 1] + ps[len(ps) // 2]) / 2  # between two tokens: half kept, half masked
        assert _kept(model, TCE(gamma), rows, 2) == [[p <= gamma for p in ps] for ps in probs]
        assert _kept(model, FunctionLoss(lambda logits, labels: logits.sum()), rows, 2) is None
    finally:
        hook.remove()


def test_the_mask_measure_reads_a_text_longer_than_the_window():
    """A paragraph longer than the model's window is measured in windows, as the evaluation scores it."""
    from fortifai_bench.collapse.corruption import gradient_split
    from fortifai_bench.collapse.probs import token_probs
    from fortifai_bench.corpora import get_corpus
    from fortifai_bench.losses import TCE
    from fortifai_bench.models import TinyConfig, build_tiny

    texts = get_corpus("facts").texts()[:40]
    model, tok = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2, n_positions=32), seed=0)
    long = " ".join(texts[:3])
    ids = tok(long)["input_ids"]
    assert len(ids) > 2 * 32
    probs = token_probs(model.eval(), [ids])[0]
    gamma = sorted(probs)[len(probs) // 2]
    out = gradient_split(model, tok, TCE(gamma), [(long, long)], 4)
    assert out["tokens"] == len(ids) - 1 and out["corrupted_share"] == 0.0
    assert out["faithful_kept_rate"] == sum(p <= gamma for p in probs) / len(probs)


def test_trained_summary_rates_from_a_tally():
    from fortifai_bench.collapse.corruption import (CORRUPTED, FAITHFUL, FRESH, VALUE_FALSE, VALUE_TRUE,
                                                    trained_summary)
    from fortifai_bench.train.tally import TokenTally

    tally = TokenTally.empty(12, 2)
    # corrupted: 3 kept at p 0.35, 1 masked at p 0.95; faithful value stated true: 2 masked at p 0.995
    tally.counts[CORRUPTED, 1, 34] = 3
    tally.counts[CORRUPTED + VALUE_FALSE, 0, 94] = 1
    tally.counts[FAITHFUL + VALUE_TRUE, 0, 99] = 2
    tally.counts[FRESH, 1, 10] = 4
    tally.p_sum[CORRUPTED], tally.p_sum[CORRUPTED + VALUE_FALSE] = 1.05, 0.95
    tally.p_sum[FAITHFUL + VALUE_TRUE], tally.p_sum[FRESH] = 1.99, 0.44
    tally.epochs[0, CORRUPTED, 1], tally.epochs[1, CORRUPTED, 1], tally.epochs[1, CORRUPTED + VALUE_FALSE, 0] = 2, 1, 1
    s = trained_summary(tally, 0.9, {"true": 1, "false": 1, "missing": 0})
    assert s["corrupted"] == {"tokens": 4, "kept_rate": 0.75, "mean_p": pytest.approx(0.5), "share_above_gamma": 0.25}
    assert s["faithful"] == {"tokens": 2, "kept_rate": 0.0, "mean_p": pytest.approx(0.995), "share_above_gamma": 1.0}
    assert s["fresh"]["kept_rate"] == 1.0 and s["fresh"]["share_above_gamma"] == 0.0
    assert s["by_epoch"]["corrupted"] == [1.0, 0.5]
    assert s["by_fact"]["false"]["tokens"] == 1 and s["by_fact"]["true"]["kept_rate"] == 0.0
    assert s["by_fact"]["fresh"] is None and s["facts_stated"] == {"true": 1, "false": 1, "missing": 0}
    assert trained_summary(tally, 0.99, None)["faithful"]["share_above_gamma"] == 1.0  # p in (0.99, 1]
