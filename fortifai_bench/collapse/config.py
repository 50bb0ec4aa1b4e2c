"""A collapse task: a versioned YAML file loaded into a validated dataclass.

`load_task("collapse_facts")` (a shipped task name) or `load_task("path/to/task.yaml")`, with
overrides such as ``["train.epochs=3", "regenerate.temperature=0.7"]`` applied to the YAML before
validation, so an override is checked exactly like the file. Every error names the field
(``train.epochs``) and the file it came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from fortifai_bench.errors import FortifaiError

MODES = ("accumulate", "replace", "accumulate-subsample", "clean")
REGEN_MODES = ("sequential", "original")
DECODINGS = ("sample", "beam")
KR_METHODS = ("sum", "mean_shorter")


@dataclass
class TinySettings:
    """Architecture of the `tiny` preset (models.TinyConfig); smaller values make fast tests."""

    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 512


@dataclass
class TrainSettings:
    """One stage of training (mapped onto the trainer's TrainConfig; `seed` is set per stage)."""

    epochs: int = 20
    lr: float = 5e-3
    batch_size: int = 16
    block_size: int = 128
    grad_accum: int = 1
    warmup: int | float = 0.1          # a fraction of the steps in [0, 1), or an integer number of steps
    schedule: str = "cosine"
    weight_decay: float = 0.0
    val_fraction: float = 0.0          # 0: train on every paragraph, keep the last epoch
    bf16: bool | str = "auto"          # "auto": bf16 autocast where the device supports it (CUDA)
    max_grad_norm: Optional[float] = 1.0
    device: str = "auto"
    # true: all texts in one stream cut into blocks. false: one paragraph per row from position 0, which
    # fact recall needs: packed, the tiny model memorizes each paragraph in its packed neighbourhood and
    # KR-split-0 at M_0 stays near 0.58 (BENCHMARKS.md, Collapse).
    packing: bool = True

    def __post_init__(self):
        self.trainer_config(seed=0)  # the trainer's own checks, named as this task's fields

    def trainer_config(self, seed: int):
        from fortifai_bench.train import TrainConfig

        try:
            return TrainConfig(**dataclasses.asdict(self), seed=seed)
        except FortifaiError as exc:
            raise FortifaiError(f"train: {exc}") from exc


@dataclass
class PretrainSettings:
    """How the `tiny` base model M_0 is pretrained (once, then cached) on a disjoint corpus part."""

    corpus: str = "facts"
    part: str = "pretrain"
    paragraphs: Optional[int] = 1000   # None: every paragraph of that part
    train: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=30, lr=5e-3))
    seed: int = 0


@dataclass
class ModelSettings:
    name: str = "tiny"                 # "tiny", a hub id or a local HF directory
    tiny: TinySettings = field(default_factory=TinySettings)
    pretrain: Optional[PretrainSettings] = field(default_factory=PretrainSettings)  # only for `tiny`


@dataclass
class RegenerateSettings:
    """How M_i rewrites a split: every block of `block` tokens after the first `prompt` tokens is replaced
    by the model's continuation of at most `context` preceding tokens."""

    mode: str = "sequential"           # sequential: context is the already-regenerated text; original: the real text
    block: int = 32
    context: int = 512
    prompt: int = 32                   # leading tokens kept verbatim (nothing precedes them to continue from)
    decoding: str = "sample"           # sample (temperature/top_p, Gumbel-max) | beam (num_beams, HF generate)
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 5
    repetition_penalty: float = 1.0
    batch_size: int = 64

    def __post_init__(self):
        _choice(self.mode, REGEN_MODES, "regenerate.mode")
        _choice(self.decoding, DECODINGS, "regenerate.decoding")
        _positive(self, "regenerate", "block", "context", "num_beams", "batch_size")
        if self.prompt < 0:
            raise FortifaiError(f"regenerate.prompt must be >= 0, got {self.prompt}")
        if self.context < self.block:
            raise FortifaiError(f"regenerate.context ({self.context}) must be >= regenerate.block ({self.block})")
        if self.temperature <= 0:
            raise FortifaiError(f"regenerate.temperature must be > 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise FortifaiError(f"regenerate.top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise FortifaiError(f"regenerate.repetition_penalty must be > 0, got {self.repetition_penalty}")


@dataclass
class EvalSettings:
    kr: Optional[str] = "auto"         # "auto": the corpus's shipped KR set; a path; or null for none
    kr_method: str = "sum"
    failure_threshold: float = 0.75
    heldout_part: Optional[str] = None # unseen real text for perplexity and confidence: None = the paragraphs
    heldout_paragraphs: int = 30       # after the splits; else the LAST ones of this part of the corpus
    confidence_bins: int = 20
    batch_size: int = 64
    lm_eval_tasks: list[str] = field(default_factory=list)

    def __post_init__(self):
        _choice(self.kr_method, KR_METHODS, "eval.kr_method")
        if self.heldout_paragraphs < 0:
            raise FortifaiError(f"eval.heldout_paragraphs must be >= 0, got {self.heldout_paragraphs}")
        if not 0.0 < self.failure_threshold < 1.0:
            raise FortifaiError(f"eval.failure_threshold must be in (0, 1), got {self.failure_threshold}")
        _positive(self, "eval", "confidence_bins", "batch_size")


@dataclass
class CollapseTask:
    task: str
    version: int = 1
    description: str = ""
    corpus: str = "facts"
    corpus_part: str = "main"
    stages: int = 6                    # N + 1: one fresh split per stage
    paragraphs_per_split: Optional[int] = 30   # None: the corpus (minus held-out) cut evenly
    mode: str = "accumulate"
    subsample: Optional[int] = None    # accumulate-subsample: paragraphs per stage (default: one split's worth)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    regenerate: RegenerateSettings = field(default_factory=RegenerateSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    seed: int = 0

    def __post_init__(self):
        _choice(self.mode, MODES, "mode")
        if self.stages < 1:
            raise FortifaiError(f"stages must be >= 1, got {self.stages}")
        if self.paragraphs_per_split is not None and self.paragraphs_per_split < 1:
            raise FortifaiError(f"paragraphs_per_split must be >= 1, got {self.paragraphs_per_split}")
        if self.subsample is not None and self.subsample < 1:
            raise FortifaiError(f"subsample must be >= 1, got {self.subsample}")

    source: str = field(default="default", repr=False, compare=False)  # where it was loaded from (not hashed)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def config_hash(self) -> str:
        """sha256 of the resolved config minus the seed: runs that differ only by seed share it."""
        d = self.to_dict()
        d.pop("seed")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------- loading

# Outside the folder lm-eval indexes (tasks/): these are not lm-eval tasks, and lm-eval would list them.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def task_path(name_or_path: str) -> Path:
    """A shipped task name (`collapse_facts`) or a path to a YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FortifaiError(f"collapse task file {path} not found")
        return path
    shipped = TASKS_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise FortifaiError(f"unknown collapse task {name_or_path!r}; shipped tasks: {', '.join(available_tasks())}")
    return shipped


def load_task(name_or_path: str = "collapse_facts", overrides: list[str] | dict | None = None) -> CollapseTask:
    path = task_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise FortifaiError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(raw, dict):
        raise FortifaiError(f"{path}: a collapse task must be a YAML mapping, got {type(raw).__name__}")
    return task_from_dict(raw, overrides, source=str(path))


def task_from_dict(raw: dict, overrides: list[str] | dict | None = None, source: str = "default") -> CollapseTask:
    raw = json.loads(json.dumps(raw, default=str))  # a deep copy with plain types
    for key, value in _parse_overrides(overrides):
        _set_path(raw, key, value, source)
    if "task" not in raw:
        raise FortifaiError(f"{source}: missing field 'task'")
    task = _build(CollapseTask, raw, "", source)
    task.source = source
    return task


def _parse_overrides(overrides) -> list[tuple[str, Any]]:
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return list(overrides.items())
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FortifaiError(f"bad override {item!r}: expected field.path=value (e.g. train.epochs=3)")
        # A YAML syntax error in the value (`train.epochs=[1,`) is one line naming the override.
        from fortifai_bench.io import parse_yaml

        out.append((key.strip(), parse_yaml(value, f"override {item!r}", lines=False) if value.strip() else None))
    return out


def _set_path(raw: dict, key: str, value: Any, source: str) -> None:
    node, parts = raw, key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise FortifaiError(f"override {key}: field {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
    node[parts[-1]] = value


# --------------------------------------------------------------------------------------------- validation

def _build(cls, data: Any, prefix: str, source: str):
    """Construct dataclass `cls` from `data`, checking every key and type; errors name the field."""
    where = prefix.rstrip(".") or "task"
    if not isinstance(data, dict):
        raise FortifaiError(f"{source}: field {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise FortifaiError(
            f"{source}: unknown field {prefix}{unknown[0]} (known in {where}: {', '.join(fields)})"
        )
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}", source) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except FortifaiError as exc:
        raise FortifaiError(f"{source}: {exc}") from exc


def _coerce(tp, value: Any, name: str, source: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(tp)):
                return None
            _bad(name, " or ".join(a.__name__ for a in args), value, source)
        errors = []
        for arg in args:  # the first type that accepts the value (int before float keeps 100 an int)
            try:
                return _coerce(arg, value, name, source)
            except FortifaiError as exc:
                errors.append(exc)
        if len(args) == 1:
            raise errors[0]
        _bad(name, " or ".join(getattr(a, "__name__", str(a)) for a in args), value, source)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{name}.", source)
    if origin is list:
        if not isinstance(value, list):
            _bad(name, "a list", value, source)
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{name}[{i}]", source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            _bad(name, "true or false", value, source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(name, "an integer", value, source)
        return value
    if tp is float:
        # YAML 1.1 reads `5e-3` (no dot) as a string: accept any text that is a number.
        if isinstance(value, str) and value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity"):
            try:
                return float(value)
            except ValueError:
                _bad(name, "a number", value, source)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(name, "a number", value, source)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _bad(name, "a string", value, source)
        return value
    return value


def _bad(name: str, expected: str, value: Any, source: str):
    raise FortifaiError(f"{source}: field {name} must be {expected}, got {value!r} ({type(value).__name__})")


def _positive(obj, section: str, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise FortifaiError(f"{section}.{name} must be >= 1, got {getattr(obj, name)}")


def _choice(value: str, choices: tuple, name: str) -> None:
    if value not in choices:
        raise FortifaiError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def describe_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Field paths whose values differ between two config dicts, as `path: a -> b`."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += describe_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return out
