"""Model loading: the tiny preset, its tokenizer, safetensors round trip, clear errors."""

from __future__ import annotations

import random

import pytest
import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import BOS, TinyConfig, build_tiny, count_parameters, load_model, save_model


def random_text(n_sentences: int = 1500, seed: int = 0) -> list[str]:
    """Varied made-up words: enough distinct byte pairs for the BPE to fill a 4,096-token vocabulary."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))).capitalize() + "." for _ in range(n_sentences)]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(random_text())


def test_tiny_preset_size(tiny):
    model, tokenizer = tiny
    assert len(tokenizer) == TinyConfig.vocab_size
    assert model.config.n_layer == 4 and model.config.n_embd == 128
    assert 0.9e6 <= count_parameters(model) <= 1.4e6


def test_tokenizer_prepends_bos(tiny):
    _, tokenizer = tiny
    ids = tokenizer("Mount Rubra is a mountain.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[0]) == BOS
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Mount Rubra is a mountain."


def test_build_tiny_is_seeded():
    texts = random_text(200)
    a, _ = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2), seed=3)
    b, _ = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2), seed=3)
    c, _ = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2), seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_save_load_roundtrip_is_safetensors(tiny, tmp_path):
    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "m")
    names = {p.name for p in out.iterdir()}
    assert "model.safetensors" in names and "tokenizer.json" in names and "config.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind
    loaded, tok2 = load_model(out)
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    text = "Qwerty uiop asdf."
    assert tok2(text)["input_ids"] == tokenizer(text)["input_ids"]
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FortifaiError, match="not found or has no config.json"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FortifaiError, match="has no config.json"):
        load_model(tmp_path / "empty")


def test_unreachable_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(FortifaiError, match="cannot load model 'fortifai-test/no-such-model'.*HF_HUB_OFFLINE=1") as info:
        load_model("fortifai-test/no-such-model")
    assert "\n" not in str(info.value)


def test_tiny_by_name_says_how_to_build_it():
    with pytest.raises(FortifaiError, match="build_tiny"):
        load_model("tiny")


def test_tiny_config_validates():
    with pytest.raises(FortifaiError, match="divisible"):
        TinyConfig(n_embd=130, n_head=4)
    with pytest.raises(FortifaiError, match="vocab_size"):
        TinyConfig(vocab_size=100)


# ----------------------------------------------------------------------------- real-model options


def test_dtype_and_attention_options(tiny, tmp_path):
    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "m")
    half, _ = load_model(out, dtype="bfloat16", attn_implementation="eager")
    assert next(half.parameters()).dtype == torch.bfloat16
    assert half.config._attn_implementation == "eager"
    sdpa, _ = load_model(out, attn_implementation="sdpa")
    assert next(sdpa.parameters()).dtype == torch.float32 and sdpa.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": "float64"}, "dtype must be one of float32, bfloat16, float16"),
    ({"attn_implementation": "fast"}, "attention implementation must be one of eager, sdpa, flash_attention_2"),
])
def test_bad_loading_options_are_one_line(tiny, tmp_path, kwargs, match):
    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "m")
    with pytest.raises(FortifaiError, match=match):
        load_model(out, **kwargs)


def test_flash_attention_needs_its_package():
    import importlib.util

    from fortifai_bench.models import check_options

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(FortifaiError, match="needs the flash-attn package"):
        check_options("bfloat16", "flash_attention_2")


EVIL = '''
from pathlib import Path
Path(MARK).write_text("remote code ran")  # transformers runs a copy from its modules cache: an absolute path
from transformers import GPT2Config, GPT2LMHeadModel

class EvilConfig(GPT2Config):
    model_type = "evil_gpt2"

class EvilModel(GPT2LMHeadModel):
    config_class = EvilConfig
'''


def test_a_model_that_ships_its_own_code_is_refused_not_run(tiny, tmp_path):
    """trust_remote_code is False on every load: a directory whose config points at its own Python
    (auto_map) is refused with one line, and that Python never runs."""
    import json

    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "evil")
    (out / "evil.py").write_text(f"MARK = {str(out / 'EXECUTED')!r}\n" + EVIL)
    config = json.loads((out / "config.json").read_text())
    config.update(model_type="evil_gpt2", architectures=["EvilModel"],
                  auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"})
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(FortifaiError, match="needs its own Python code.*never runs") as info:
        load_model(out)
    assert "\n" not in str(info.value)
    assert not (out / "EXECUTED").exists()
    from fortifai_bench.models import parameters_from_config

    assert parameters_from_config(str(out)) is None and not (out / "EXECUTED").exists()


def test_parameter_count_from_a_config_reads_no_weights(tiny, tmp_path):
    from fortifai_bench.models import parameters_from_config

    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "m")
    (out / "model.safetensors").unlink()  # the count needs only config.json
    assert parameters_from_config(str(out)) == count_parameters(model)


def test_tiny_dropout_is_set_on_the_model():
    texts = random_text(200)
    model, _ = build_tiny(texts, TinyConfig(vocab_size=400, n_layer=1, n_embd=32, n_head=2, dropout=0.0))
    assert model.config.resid_pdrop == model.config.embd_pdrop == model.config.attn_pdrop == 0.0
    with pytest.raises(FortifaiError, match="dropout"):
        TinyConfig(dropout=1.0)


def test_has_dropout_sees_modules_and_llama_style_rates_and_its_no_means_train_equals_eval():
    """`has_dropout` decides whether evaluate copies the Fig. 1 confidences of eval mode into train mode
    (a model without dropout, SmolLM2) instead of scoring everything twice: its False must mean that train
    mode computes the very same probabilities."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from fortifai_bench.collapse.probs import token_probs
    from fortifai_bench.models import has_dropout

    gpt2 = dict(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    assert has_dropout(GPT2LMHeadModel(GPT2Config(**gpt2)))  # GPT-2's default 0.1 (the tiny preset's)
    assert not has_dropout(GPT2LMHeadModel(GPT2Config(**gpt2, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)))
    llama = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=64)
    assert has_dropout(LlamaForCausalLM(LlamaConfig(**llama, attention_dropout=0.1)))  # a float, not a module
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**llama))
    assert not has_dropout(model)
    seqs = [torch.randint(0, 64, (n,)).tolist() for n in (9, 17, 30)]
    model.eval()
    evaluated = token_probs(model, seqs, batch_size=2)
    model.train()
    assert token_probs(model, seqs, batch_size=2) == evaluated  # to the bit
