"""Model loading: the tiny preset, its tokenizer, safetensors round trip, clear errors."""

from __future__ import annotations

import random

import pytest
import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import BOS, TinyConfig, build_tiny, count_parameters, load_model, save_model


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared, oversubscribed 2-core machine, 2 spinning OpenMP threads
    made a tiny model's step ~20x slower (measured 0.36 s vs 0.016 s); alone, 1 thread is as fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
