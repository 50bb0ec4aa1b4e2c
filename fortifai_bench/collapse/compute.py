"""What a collapse task costs, before it runs (`fortifai-bench collapse --plan`).

Per stage: tokens trained (epochs x the pool's training tokens), tokens generated (regeneration, times
the beams of beam search, plus the context tokens each block re-reads) and tokens scored (KR questions,
held-out text, the model's own rewrite, the corruption measure, the validation passes), then

    FLOPs = 6 x parameters x trained tokens + 2 x parameters x (generated + scored tokens)

(the usual dense-transformer approximation: forward 2 flops per parameter per token, backward twice
that; attention's own term is left out, small at 512 tokens for a 1B model) and the time this takes on
`devices` devices at `device_tflops` achieved TFLOP/s each.

Where the figures come from, in this order, and stated in the output:
* parameters: `--params`; else the model's config (the tiny preset's, or a local directory's, or the
  hub cache's when offline), counted on torch's meta device without reading weights; else the known
  count of a few public models below (from their published configs);
* tokens: the model's own tokenizer when it is available here (the tiny one is trained on the
  pretraining text, as the run does); else characters / 4, the rule of thumb for English text in
  OpenAI's tokenizer guide, labelled as such.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.plan import StagePlan
from fortifai_bench.errors import FortifaiError

# Achieved (not peak) TFLOP/s per device. 100 is about a third of an A100's dense bf16 peak of 312
# (NVIDIA's A100 datasheet), a common efficiency for fine-tuning a 1B model; decoding runs far below it
# (it is memory-bound), so the generation time printed is a lower bound. Pass your own --device-tflops.
DEFAULT_TFLOPS = 100.0
CHARS_PER_TOKEN = 4.0

# Parameter counts of public models from their published config.json, for the offline case only.
# meta-llama/Llama-3.2-1B: vocabulary 128,256, hidden 2,048, MLP 8,192, 16 layers, 32 query and 8 key/value
# heads of 64, tied embeddings: 262,668,288 (embeddings) + 16 x 60,821,504 (a layer) + 2,048 (final norm).
KNOWN_PARAMETERS = {"meta-llama/Llama-3.2-1B": 1_235_814_400}


@dataclass
class StageCost:
    stage: int
    trained: int = 0        # tokens with a backward pass (epochs included)
    generated: int = 0      # new tokens, times the beams
    context: int = 0        # tokens re-read as the context of generated blocks, times the beams
    scored: int = 0         # tokens with a forward pass only

    def flops(self, params: float) -> float:
        return 6 * params * self.trained + 2 * params * (self.generated + self.context + self.scored)


@dataclass
class Estimate:
    stages: list[StageCost]
    params: float | None
    params_source: str
    tokens_source: str
    notes: list[str] = field(default_factory=list)


def estimate(task: CollapseTask, stages: list[StagePlan], data, params: float | None = None,
             notes: list[str] | None = None) -> Estimate:
    """Token counts per stage of the plan `stages`, on the task's `data` (`protocol.load_data`), and the
    parameter count (see module doc). `notes`: what the estimate leaves out (a KR set that cannot be read)."""
    counter, tokens_source = _counter(task)
    count = functools.lru_cache(maxsize=None)(counter)  # every paragraph and question is counted once
    params, params_source = _parameters(task, params)
    return Estimate([_stage(task, data, count, stage) for stage in stages], params, params_source, tokens_source,
                    list(notes or []))


def _stage(task: CollapseTask, data, count, stage: StagePlan) -> StageCost:
    t, r = task.train, task.regenerate
    cost = StageCost(stage.stage)
    train_on = stage.pool
    lengths = [count(q.text) for k, _ in train_on for q in data.splits[k]]
    if t.packing is False:
        lengths = [min(n, t.block_size) for n in lengths]
    pool_tokens = sum(lengths)
    if task.mode == "accumulate-subsample":  # the plan's seeded sample of paragraphs: their mean length
        pool_tokens = round(pool_tokens * stage.size / max(1, len(lengths)))
    epochs = stage.epochs
    cost.trained = round(epochs * (1 - t.val_fraction) * pool_tokens)
    cost.scored += round(epochs * t.val_fraction * pool_tokens)             # validation after every epoch
    beams = r.num_beams if r.decoding == "beam" else 1
    rewritten = 0
    for k, _ in train_on:                                                   # every split of the pool is regenerated
        for p in data.splits[k]:
            n = count(p.text)
            first = 1 + min(r.prompt, (n - 1) // 2)                         # BOS + the kept prompt
            cost.generated += beams * max(0, n - first)
            cost.context += beams * _context_tokens(n, first, r)
            rewritten += n
    cost.scored += rewritten                                                # confidence on its own rewrite
    if any(g > 0 for _, g in train_on):
        cost.scored += 2 * sum(count(p.text) for k, g in train_on if g > 0 for p in data.splits[k])  # corruption
    kr = sum(count(q.context) + count(q.true) + count(q.false) for q in data.questions)
    cost.scored += kr + sum(count(h) for h in data.heldout)
    if stage.stage == 0:
        cost.scored += kr                                                   # the base model's KR (chance.json)
    return cost


def _context_tokens(n: int, first: int, r) -> int:
    """Tokens fed as context (not generated) to rewrite one paragraph of n tokens."""
    if r.mode == "original":  # every block re-reads up to context - block tokens of the original
        return sum(min(s, r.context - r.block) for s in range(first, n, r.block))
    if n <= r.context:        # sequential, one continuous generation with the KV cache
        return first
    rebuilds = -(-(n - r.context) // r.block)  # past the window: the cache is rebuilt before each block
    return first + rebuilds * (r.context - r.block)


def _counter(task: CollapseTask):
    """A function text -> token count, and where it comes from."""
    tokenizer = None
    try:
        if task.model.name == "tiny":
            from fortifai_bench.collapse.base import base_dir, pretrain_texts
            from fortifai_bench.models import train_tokenizer

            cached = base_dir(task) / "model"
            if (cached / "tokenizer.json").is_file():
                from transformers import AutoTokenizer

                tokenizer, source = AutoTokenizer.from_pretrained(str(cached)), "the cached tiny base's tokenizer"
            elif task.model.pretrain is not None:
                tokenizer = train_tokenizer(pretrain_texts(task), task.model.tiny.vocab_size)
                source = "the tiny tokenizer, trained on the pretraining text as the run does"
        else:
            from transformers import AutoTokenizer

            from fortifai_bench.models import resolve

            tokenizer = AutoTokenizer.from_pretrained(resolve(task.model.name, build=False), revision=task.model.revision,
                                                      trust_remote_code=False, local_files_only=True)
            source = f"{task.model.name}'s tokenizer"
    except (OSError, ValueError, FortifaiError):
        tokenizer = None
    if tokenizer is None:
        return (lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))), \
            f"estimated at {CHARS_PER_TOKEN:g} characters per token (the model's tokenizer is not available here)"
    return (lambda text: len(tokenizer(text)["input_ids"])), source


def _parameters(task: CollapseTask, given: float | None) -> tuple[float | None, str]:
    if given is not None:
        if given <= 0:
            raise FortifaiError(f"--params must be > 0, got {given:g}")
        return given, "--params"
    m = task.model
    if m.name == "tiny":
        return _tiny_parameters(m.tiny), "the tiny preset's config"
    from fortifai_bench.models import parameters_from_config

    counted = parameters_from_config(m.name, m.revision)
    if counted is not None:
        return counted, f"{m.name}'s config"
    if m.name in KNOWN_PARAMETERS:
        return KNOWN_PARAMETERS[m.name], f"known count for {m.name}, from its published config, not read here"
    return None, f"unknown: {m.name}'s config is not available here; pass --params"


def _tiny_parameters(tiny) -> int:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from fortifai_bench.models import count_parameters

    # no tokenizer here, so no special-token ids (GPT-2's own 50256 lies outside a tiny vocabulary)
    config = GPT2Config(vocab_size=tiny.vocab_size, n_positions=tiny.n_positions, n_embd=tiny.n_embd,
                        n_layer=tiny.n_layer, n_head=tiny.n_head, bos_token_id=None, eos_token_id=None)
    with torch.device("meta"):
        return count_parameters(GPT2LMHeadModel(config))


# --------------------------------------------------------------------------------------------- text

def _n(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return f"{x:.0f}"


def _time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(est: Estimate, devices: int = 1, device_tflops: float | None = None) -> list[str]:
    tflops = DEFAULT_TFLOPS if device_tflops is None else device_tflops
    if tflops <= 0:
        raise FortifaiError(f"--device-tflops must be > 0, got {tflops:g}")
    rate = devices * tflops * 1e12
    p = est.params
    lines = [f"compute, per run (one loss, one seed): parameters {_n(p) if p else '?'} ({est.params_source}); tokens {est.tokens_source}",
             f"  FLOPs = 6 x params x trained + 2 x params x (generated + context + scored) tokens; time at "
             f"{tflops:g} TFLOP/s achieved per device x {devices} device{'s' if devices > 1 else ''}"
             f"{' (--device-tflops)' if device_tflops is not None else ' (default; --device-tflops)'}"]
    for note in est.notes:
        lines.append(f"  note: {note}")
    total = StageCost(-1)
    for s in est.stages:
        for f in ("trained", "generated", "context", "scored"):
            setattr(total, f, getattr(total, f) + getattr(s, f))
        lines.append(_line(f"stage {s.stage}", s, p, rate))
    lines.append(_line("total", total, p, rate))
    lines.append("  generation is memory-bound and runs below the device's matmul rate: its time is a lower bound")
    return lines


def _line(label: str, s: StageCost, params: float | None, rate: float) -> str:
    text = (f"  {label}: trained {_n(s.trained)}, generated {_n(s.generated)} (+{_n(s.context)} context), "
            f"scored {_n(s.scored)} tokens")
    if params:
        flops = s.flops(params)
        text += f" -> {flops:.2e} FLOPs, {_time(flops / rate)}"
    return text
