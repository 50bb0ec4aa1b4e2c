"""A collapse task: a versioned YAML file loaded into a validated dataclass.

`load_task("collapse_facts")` (a shipped task name) or `load_task("path/to/task.yaml")`, with
overrides such as ``["train.epochs=3", "regenerate.temperature=0.7"]`` applied to the YAML before
validation, so an override is checked exactly like the file. Every error names the field
(``train.epochs``) and the file it came from.

One configuration per concept: a task's ``train:`` section *is* the trainer's `TrainConfig` and
``model.tiny`` *is* `models.TinyConfig` (both importable without torch, so validating a task imports
none). A task file states only what differs from a base it names with ``include:`` (lm-eval's idiom):
the shipped tasks include ``_base.yaml``, which holds the protocol's own training choices (where they
differ from the trainer's defaults); a file of yours can include a shipped task by name
(``include: collapse_facts``), the shipped base by its file name (``include: _base.yaml``), or any YAML
file by a path relative to it. Mappings merge key by key, the
including file winning; anything else (lists, scalars, null) replaces.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from fortifai_bench.configs import build as _build
from fortifai_bench.errors import FortifaiError, did_you_mean
from fortifai_bench.io import parse_yaml, read_yaml
from fortifai_bench.kr.methods import METHODS as KR_METHODS  # the scorer's rules, checked without torch
from fortifai_bench.metrics import DEFAULT_THRESHOLD
from fortifai_bench.models import ATTENTION, DTYPES, GGUF, TinyConfig, gguf_spec
from fortifai_bench.registry import Registry
from fortifai_bench.results import BASE_SEED_RUN, config_hash, without_added_defaults
from fortifai_bench.train.config import TrainConfig

MODES = ("accumulate", "replace", "accumulate-subsample", "clean")
MAX_STAGES = 1000  # the paper runs 10; a stage's plan lists every earlier split, so the plan grows as stages^2
BUDGETS = ("epochs", "steps")
REGEN_MODES = ("sequential", "original")
DECODINGS = ("sample", "greedy", "beam")
KR_SPLITS = ("all", "first")


def _seed_not_set(train: TrainConfig, where: str, instead: str) -> None:
    """Each stage's training seed is derived from the task's seed (plan.stage_seed): a seed in a
    `train:` section would be silently ignored, so it is refused."""
    if train.seed != 0:
        raise FortifaiError(f"{where}.seed is derived from {instead} for every stage; set {instead} instead")


@dataclass
class PretrainSettings:
    """How the `tiny` base model M_0 is pretrained (once, then cached) on a disjoint corpus part."""

    corpus: str = "facts"
    part: str = "pretrain"
    paragraphs: Optional[int] = 1000   # None: every paragraph of that part
    train: TrainConfig = field(default_factory=TrainConfig)
    # An integer: every run starts from the one base of that seed (the shipped collapse_facts base is seed 0).
    # "run": every run pretrains its own base with the run's seed, so seeds sample bases too (issue 26 item 3;
    # the run of seed 0 gets the base of seed 0). Each run records its base's sha256 in results.json.
    seed: Union[int, str] = 0

    def __post_init__(self):
        _seed_not_set(self.train, "model.pretrain.train", "model.pretrain.seed")
        if isinstance(self.seed, str) and self.seed != BASE_SEED_RUN:
            raise FortifaiError(f"model.pretrain.seed must be an integer or {BASE_SEED_RUN!r} (the run's seed), "
                                f"got {self.seed!r}")


@dataclass
class ModelSettings:
    name: str = "tiny"                 # "tiny", a hub id, a local HF directory or gguf:PACKAGE/FILE.gguf
    revision: Optional[str] = None     # hub branch, tag or commit of `name` (pin a commit to reproduce a run)
    dtype: str = "float32"             # weights as loaded: float32, bfloat16 or float16 (train.bf16 autocasts float32)
    attn_implementation: Optional[str] = None  # eager, sdpa, flash_attention_2 (installed); null: transformers' pick
    tiny: TinyConfig = field(default_factory=TinyConfig)
    pretrain: Optional[PretrainSettings] = field(default_factory=PretrainSettings)  # only for `tiny`

    def __post_init__(self):
        _choice(self.dtype, DTYPES, "model.dtype")
        if self.attn_implementation is not None:
            _choice(self.attn_implementation, ATTENTION, "model.attn_implementation")
        if self.revision is not None and self.name == "tiny":
            raise FortifaiError("model.revision applies to a hub model; the tiny preset is built here")
        if self.name.startswith(GGUF):
            gguf_spec(self.name)  # its shape; whether it is installed, when a run starts (`models.require_model`)


@dataclass
class RegenerateSettings:
    """How M_i rewrites a split: every block of `block` tokens after the first `prompt` tokens is replaced
    by the model's continuation of at most `context` preceding tokens."""

    mode: str = "sequential"           # sequential: context is the already-regenerated text; original: the real text
    block: int = 32
    context: int = 512
    prompt: int = 32                   # leading tokens kept verbatim (nothing precedes them to continue from)
    decoding: str = "sample"           # sample (temperature/top_p, Gumbel-max) | greedy (argmax) | beam (num_beams, HF generate)
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
    failure_threshold: float = DEFAULT_THRESHOLD
    # The headline score (time to failure, boards) is KR-split-0 on every question, or with a tag on that
    # tag's questions only (a tagged KR set: collapse_facts_longtail fails when the tail facts are lost).
    score_tag: Optional[str] = None
    heldout_part: Optional[str] = None # unseen real text for perplexity and confidence: None = the paragraphs
    heldout_paragraphs: int = 30       # after the splits; else the LAST ones of this part of the corpus
    confidence_bins: int = 20
    batch_size: int = 64
    lm_eval_tasks: list[str] = field(default_factory=list)
    # Which splits' KR questions every stage scores. all: every split (KR per split, KR-total, KR over the
    # splits seen). first: split 0 only, the headline score and its per-question bits, at about 1/(N+1) of the
    # scoring: for pretrained models on a CPU, where KR on every split was the largest part of a stage;
    # KR-total and the other splits are then not measured (null), never estimated.
    kr_splits: str = "all"

    def __post_init__(self):
        _choice(self.kr_method, KR_METHODS, "eval.kr_method")
        _choice(self.kr_splits, KR_SPLITS, "eval.kr_splits")
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
    # epochs: every stage makes `train.epochs` passes over its whole pool, so compute grows with the pool
    # (1, 2, ..., N+1 splits). steps: every stage makes the optimizer steps of `train.epochs` passes over
    # one split, i.e. round(train.epochs x split / pool) passes (at least 1) over the whole pool: constant
    # compute per stage, and no stage memorizes its predecessor's rewrite for as many passes as M_0 did.
    budget: str = "epochs"
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    regenerate: RegenerateSettings = field(default_factory=RegenerateSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    seed: int = 0

    def __post_init__(self):
        _choice(self.mode, MODES, "mode")
        _choice(self.budget, BUDGETS, "budget")
        if not 1 <= self.stages <= MAX_STAGES:
            raise FortifaiError(f"stages must be between 1 and {MAX_STAGES}, got {self.stages}")
        if self.paragraphs_per_split is not None and self.paragraphs_per_split < 1:
            raise FortifaiError(f"paragraphs_per_split must be >= 1, got {self.paragraphs_per_split}")
        if self.subsample is not None and self.subsample < 1:
            raise FortifaiError(f"subsample must be >= 1, got {self.subsample}")
        _seed_not_set(self.train, "train", "seed")

    def stage_train(self, seed: int, share: float = 1.0) -> TrainConfig:
        """The trainer's config for one stage: the `train:` section with the stage's own seed and, under
        ``budget: steps``, its epochs scaled by `share` (one split's paragraphs / the stage's pool)."""
        epochs = self.train.epochs
        if self.budget == "steps":
            epochs = max(1, round(epochs * share))
        return dataclasses.replace(self.train, seed=seed, epochs=epochs)

    source: str = field(default="default", repr=False, compare=False)  # where it was loaded from (not hashed)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def config_hash(self, loss: dict | None = None) -> str:
        """The experiment's identity, `results.config_hash` of the resolved config (the one definition:
        minus the seed and the prose description, plus a user loss module's source when `loss`, a loss
        description, has one). Written to config.yaml, results.json, the summary and the boards."""
        return config_hash(self.to_dict(), loss=loss)

    def to_yaml(self) -> str:
        """The resolved task as a YAML file that `load_task` reads back to the same task (and hash):
        `fortifai-bench collapse --print-config`."""
        head = f"# {self.task} v{self.version}, resolved from {self.source}; config hash {self.config_hash()}\n"
        return head + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------------------------- loading

# Outside the folder lm-eval indexes (tasks/): these are not lm-eval tasks, and lm-eval would list them.
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml") if not p.stem.startswith("_"))


# Tasks of other installed projects: entry points of this group name a YAML file (a path, or an object whose
# str() is one), e.g. `collapse_my_notes = "my_notes:TASK"` with TASK = Path(__file__).parent / "task.yaml";
# `module:Name` names one the same way from the working folder. A shipped name wins over a plug-in's.
PLUGINS = Registry("collapse task", group="fortifai_bench.collapse_tasks", specs=True)


def task_path(name_or_path: str) -> Path:
    """A shipped task name (`collapse_facts`), a plug-in's name or `module:Name` (see PLUGINS), or a path to a
    YAML file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FortifaiError(f"collapse task file {path} not found")
        return path
    shipped = TASKS_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    if name_or_path in PLUGINS:
        target = PLUGINS.get(name_or_path)
        found = Path(target).expanduser() if isinstance(target, (str, os.PathLike)) else None
        if found is None or not found.is_file():
            raise FortifaiError(f"collapse task {name_or_path!r} names {target!r}, not a YAML file that exists")
        return found
    known = available_tasks() + PLUGINS.names()
    raise FortifaiError(f"unknown collapse task {name_or_path!r}{did_you_mean(name_or_path, known)}; "
                        f"tasks: {', '.join(known)}, a YAML file or module:Name")


def load_task(name_or_path: str = "collapse_facts", overrides: list[str] | dict | None = None) -> CollapseTask:
    path = task_path(name_or_path)
    return task_from_dict(read_task_file(path), overrides, source=str(path))


def read_task_file(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A task file as a mapping, its `include:` chain resolved (see module doc)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise FortifaiError(f"{path}: a collapse task must be a YAML mapping, got {type(raw).__name__}")
    include = raw.pop("include", None)
    if include is None:
        return raw
    if not isinstance(include, str) or not include.strip():
        raise FortifaiError(f"{path}: field include must be a file name or a shipped task name, got {include!r}")
    beside, shipped = (path.parent / include).expanduser(), TASKS_DIR / include
    # a file beside this one, a shipped file by name (_base.yaml), or a shipped task name (collapse_facts)
    base = (beside if beside.is_file() else shipped if shipped.is_file() else task_path(include)).resolve()
    if base in chain or base == path.resolve():
        raise FortifaiError(f"{path}: include {include!r} includes itself (through {' -> '.join(p.name for p in chain)})")
    return merge(read_task_file(base, (*chain, path.resolve())), raw)


def merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


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

def _positive(obj, section: str, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise FortifaiError(f"{section}.{name} must be >= 1, got {getattr(obj, name)}")


def _choice(value: str, choices: tuple, name: str) -> None:
    if value not in choices:
        raise FortifaiError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def describe_differences(a: dict, b: dict, prefix: str = "", *, shown: tuple[dict, dict] | None = None) -> list[str]:
    """Field paths whose values differ between two config dicts, as `path: a -> b`. A field added after one
    side was recorded (`results.ADDED_FIELDS`) counts as equal when it is absent on one side and at its
    old-behaviour default on the other, as the config hash has it (`results.without_added_defaults`); the
    values shown are the recorded ones (`shown`: the dicts before that rule, on the recursion)."""
    raw_a, raw_b = shown or (a, b)
    a, b = without_added_defaults(a), without_added_defaults(b)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        ra, rb = raw_a.get(key, "<absent>"), raw_b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += describe_differences(va, vb, f"{prefix}{key}.", shown=(ra, rb))
        elif va != vb:
            out.append(f"{prefix}{key}: {ra!r} -> {rb!r}")
    return out
