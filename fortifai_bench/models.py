"""Model and tokenizer loading: a hub id, a local directory, or the built-in `tiny` preset.

Every model the project writes is a plain Hugging Face directory (config.json, model.safetensors,
tokenizer.json), so `from_pretrained(DIR)` and `lm_eval --model hf --model_args pretrained=DIR`
load it. Nothing here unpickles: weights are safetensors only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_dir

BOS = "<|endoftext|>"  # start of every text, also end-of-text and padding for the tiny tokenizer


@dataclass(frozen=True)
class TinyConfig:
    """The `tiny` preset: a GPT-2 of ~1.35M parameters that trains on a 2-core CPU in seconds."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 512

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise FortifaiError(f"tiny: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.vocab_size < 300:
            raise FortifaiError(f"tiny: vocab_size {self.vocab_size} is below the 256 bytes + specials a BPE needs")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE trained on `texts` (tokenizers library), as a `PreTrainedTokenizerFast`.

    Its post-processor prepends BOS to every encoded text. lm-eval (>= 0.4.13) encodes with the
    tokenizer's own default, so the model sees the same start token in training, in our scorer and
    in `lm_eval --model hf`: without it a tiny model's KR accuracy fell from 0.98 to 0.90.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [t for t in texts if t]
    if not texts:
        raise FortifaiError("cannot train a tokenizer on an empty corpus")
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=None,
        model_max_length=TinyConfig.n_positions,
    )


def build_tiny(texts: Iterable[str], config: TinyConfig = TinyConfig(), seed: int = 0):
    """A freshly initialized tiny GPT-2 and a tokenizer trained on `texts`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer(texts, config.vocab_size)
    torch.manual_seed(seed)
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(model_config), tokenizer


def load_model(spec: str | os.PathLike, *, torch_dtype: torch.dtype | None = None):
    """Load `(model, tokenizer)` from a local directory or a hub id.

    The `tiny` preset is not loadable by name alone (its tokenizer is trained on a corpus): use
    `build_tiny(texts)`, or the cached base model that the collapse protocol builds.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(spec)
    if spec == "tiny":
        raise FortifaiError("model 'tiny' is built from a corpus: use build_tiny(texts) or a collapse task")
    path = Path(spec).expanduser()
    looks_local = path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local and not (path / "config.json").is_file():
        raise FortifaiError(f"model directory {spec} not found or has no config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if looks_local else spec)
        model = AutoModelForCausalLM.from_pretrained(
            str(path) if looks_local else spec, dtype=torch_dtype or torch.float32, use_safetensors=True
        )
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set)" if offline else " (is the Hugging Face Hub reachable from here?)"
        raise FortifaiError(f"cannot load model {spec!r}: not a local model directory and not on the hub{hint}: "
                            f"{str(exc).splitlines()[0]}") from exc
    return model, tokenizer


def save_model(model, tokenizer, path: str | os.PathLike) -> Path:
    """Save model (safetensors) and tokenizer into `path`, atomically."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(path)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def cache_argument(model) -> str:
    """The name under which `model.forward` takes, and its output returns, the KV cache: `cache` in
    transformers 5 (where `past_key_values` is deprecated and warns), `past_key_values` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
