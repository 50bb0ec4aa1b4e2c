"""What a collapse task costs, before it runs (`fortifai-bench collapse --plan`).

Per stage: tokens trained (epochs x the pool's training tokens), tokens generated (regeneration, times
the beams of beam search, plus the context tokens each block re-reads) and tokens scored (KR questions,
held-out text, the model's own rewrite, the corruption measure, the validation passes), each batch padded
to its longest row as the run pads it, then

    FLOPs = 6 x parameters x trained tokens + 2 x parameters x (generated + scored tokens)

(the usual dense-transformer approximation: forward 2 flops per parameter per token, backward twice
that; attention's own term is left out, small at 512 tokens for a 1B model) and the time this takes on
`devices` devices at `device_tflops` achieved TFLOP/s each.

Where the figures come from, in this order, and stated in the output:
* parameters: `--params`; else the model's config (the tiny preset's, a local directory's, a `gguf:` model's
  dequantised folder or, before it is built, the GGUF file's metadata, or the hub cache's when offline),
  counted on torch's meta device without reading weights; else the known count of a few public models
  below (from their published configs);
* tokens: the model's own tokenizer when it is available here (the tiny one is trained on the
  pretraining text, as the run does); else characters / 4, the rule of thumb for English text in
  OpenAI's tokenizer guide, labelled as such;
* time: the model built from its config with random weights and timed here at the run's shapes (a
  training step, a KR scoring batch, a regeneration batch's prefill and decoding), per phase as a run
  records them in its metrics (`seconds`: train, regenerate, evaluate); a model too large to time that way
  through its dominant matrix product (a lower bound).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from fortifai_bench.collapse.base import base_dir, pretrain_texts
from fortifai_bench.collapse.config import CollapseTask
from fortifai_bench.collapse.plan import StagePlan
from fortifai_bench.corpora import Paragraph
from fortifai_bench.errors import FortifaiError
from fortifai_bench.models import GGUF, count_parameters, gguf_file, has_dropout, resolve, train_tokenizer

# Achieved (not peak) TFLOP/s per device. 100 is about a third of an A100's dense bf16 peak of 312
# (NVIDIA's A100 datasheet), a common efficiency for fine-tuning a 1B model; decoding runs far below it
# (it is memory-bound), so the generation time printed is a lower bound. Pass your own --device-tflops.
DEFAULT_TFLOPS = 100.0
CHARS_PER_TOKEN = 4.0

# Parameter counts of public models from their published config.json, for the offline case only.
# meta-llama/Llama-3.2-1B: vocabulary 128,256, hidden 2,048, MLP 8,192, 16 layers, 32 query and 8 key/value
# heads of 64, tied embeddings: 262,668,288 (embeddings) + 16 x 60,821,504 (a layer) + 2,048 (final norm).
KNOWN_PARAMETERS = {"meta-llama/Llama-3.2-1B": 1_235_814_400}

PHASES = ("train", "regenerate", "evaluate")  # as a run's metrics name them (run._stage, `seconds`)


@dataclass
class StageCost:
    stage: int
    trained: int = 0        # tokens with a backward pass (epochs included)
    generated: int = 0      # new tokens, times the beams
    context: int = 0        # tokens re-read as the context of generated blocks, times the beams
    scored: int = 0         # tokens with a forward pass only, in any phase
    validated: int = 0      # of `scored`: in the train phase (validation after every epoch)
    evaluated: int = 0      # of `scored`: in the evaluate phase (KR, held-out text, confidence)

    def flops(self, params: float) -> float:
        return 6 * params * self.trained + 2 * params * (self.generated + self.context + self.scored)


@dataclass
class Rates:
    """Throughput measured here, on the device the run will use, for the task's model (`measure_rates`)."""

    train: float        # tokens per second trained (forward + backward + optimizer step)
    score: float        # tokens per second scored (forward only)
    generate: float     # tokens per second generated (one decoding step per token, a regeneration batch)
    stage: float        # seconds per stage spent saving and loading the model
    how: str
    start: float = 0.0  # seconds before a run's first stage: a fresh Python's imports, timed
    context: float = 0.0  # tokens per second read as a regeneration batch's context (its prefill); 0: `score`
    cpu_share: float | None = None  # CPU time / (wall time x threads) while timing on a CPU: < 1 when others share it

    def phases(self, s: StageCost) -> dict[str, float]:
        """Seconds per phase as a run records them (`PHASES`), and `other`: what no phase counts (the
        corruption measure around training, the base's KR at stage 0, saving and loading the model)."""
        out = {"train": s.trained / self.train + s.validated / self.score,
               "regenerate": s.generated / self.generate + s.context / (self.context or self.score),
               "evaluate": s.evaluated / self.score}
        out["other"] = (s.scored - s.validated - s.evaluated) / self.score + self.stage
        return out

    def seconds(self, s: StageCost) -> float:
        return sum(self.phases(s).values())


@dataclass
class Estimate:
    stages: list[StageCost]
    params: float | None
    params_source: str
    tokens_source: str
    notes: list[str] = field(default_factory=list)
    rates: Rates | None = None
    masks: bool = True  # for a loss whose mask is measured around training (`_stage`)


def estimate(task: CollapseTask, stages: list[StagePlan], data, params: float | None = None,
             notes: list[str] | None = None, measure: bool = True, masks: bool = True) -> Estimate:
    """Token counts per stage of the plan `stages`, on the task's `data` (`protocol.load_data`, or
    `recorded_data`), the parameter count (see module doc) and, with `measure`, the throughput measured
    here (`measure_rates`). `notes`: what the estimate leaves out (a KR set that cannot be read). `masks`:
    for a loss whose mask is measured around training (TCE; not CE or focal: `_stage`)."""
    counter, tokens_source = _counter(task) if not getattr(data, "recorded", False) else _chars_counter()
    count = functools.lru_cache(maxsize=None)(counter)  # every paragraph and question is counted once
    params, params_source = _parameters(task, params)
    passes, shared = _model_paths(task)
    est = Estimate([_stage(task, data, count, stage, passes, shared, masks) for stage in stages], params, params_source,
                   tokens_source, list(notes or []), masks=masks)
    if measure:
        lengths = [count(q.text) for q in data.splits[0]]
        kr = [count(q.context) + max(count(q.true), count(q.false)) for q in _kr_questions(task, data)]
        t = task.train
        row = t.block_size if t.packing else min(round(sum(lengths) / len(lengths)), t.block_size)
        est.rates = measure_rates(task, row=row, question=round(sum(kr) / len(kr)) if kr else 32,
                                  generation=_generation_shape(task.regenerate, lengths))
        if est.rates is not None:
            est.rates = dataclasses.replace(est.rates, start=_start_up_seconds())
    return est


@functools.lru_cache(maxsize=1)
def _start_up_seconds() -> float:
    """A run's start before its first stage, timed here: a fresh Python importing what a run imports."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers.models.gpt2.modeling_gpt2, "
                    "fortifai_bench.collapse.run, fortifai_bench.collapse.evaluate, fortifai_bench.train"],
                   check=False, capture_output=True)
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------- the model

def _model_key(task: CollapseTask) -> str:
    """What identifies the task's model besides its name: the tiny preset, or the revision."""
    return json.dumps(task.to_dict()["model"]["tiny"] if task.model.name == "tiny" else task.model.revision)


@functools.lru_cache(maxsize=8)
def model_config(name: str, key: str):
    """(The transformers config of a task's model, where it was read) without loading weights, or (None,
    why not). `key`: `_model_key`. A `gguf:` model's config is its dequantised folder's once built, else
    the GGUF file's metadata (read in a few seconds; the folder is built by the run, not by planning)."""
    from transformers import AutoConfig, GPT2Config

    if name == "tiny":
        tiny = json.loads(key)
        # no tokenizer here, so no special-token ids (GPT-2's own 50256 lies outside a tiny vocabulary)
        return GPT2Config(vocab_size=tiny["vocab_size"], n_positions=tiny["n_positions"], n_embd=tiny["n_embd"],
                          n_layer=tiny["n_layer"], n_head=tiny["n_head"], resid_pdrop=tiny["dropout"],
                          embd_pdrop=tiny["dropout"], attn_pdrop=tiny["dropout"], bos_token_id=None,
                          eos_token_id=None), "the tiny preset's config"
    try:
        spec = resolve(name, build=False)
        if spec.startswith(GGUF):
            path = gguf_file(spec)
            return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name), \
                f"{name}'s GGUF metadata (not dequantised here yet)"
        return AutoConfig.from_pretrained(spec, revision=json.loads(key), trust_remote_code=False,
                                          local_files_only=True), f"{name}'s config"
    except (OSError, ValueError, FortifaiError) as exc:
        return None, f"{name}'s config is not available here ({str(exc).splitlines()[0]})"


def _model_paths(task: CollapseTask) -> tuple[int, bool]:
    """What the run's model makes it do, read from its config (the model built on the meta device): the Fig. 1
    confidence's passes (2: eval and train mode; 1 without dropout, `models.has_dropout`) and whether
    `original` blocks continue a shared prefix (`regenerate.shares_prefix`). A config not readable here: two
    passes and no shared prefix, the costlier case."""
    import torch
    from transformers import AutoModelForCausalLM

    from fortifai_bench.collapse.regenerate import shares_prefix

    config, _ = model_config(task.model.name, _model_key(task))
    if config is None:
        return 2, False
    with torch.device("meta"):
        dropout = has_dropout(AutoModelForCausalLM.from_config(config, trust_remote_code=False))
    return (2 if dropout else 1), task.regenerate.decoding != "beam" and shares_prefix(config)


def _count(config) -> int:
    """Parameters of a model with this config, built on torch's meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return count_parameters(AutoModelForCausalLM.from_config(config, trust_remote_code=False))


def _parameters(task: CollapseTask, given: float | None) -> tuple[float | None, str]:
    if given is not None:
        if given <= 0:
            raise FortifaiError(f"--params must be > 0, got {given:g}")
        return given, "--params"
    name = task.model.name
    config, source = model_config(name, _model_key(task))
    if config is not None:
        return _count(config), source
    if name in KNOWN_PARAMETERS:
        return KNOWN_PARAMETERS[name], f"known count for {name}, from its published config, not read here"
    return None, f"unknown: {source}; pass --params"


# --------------------------------------------------------------------------------------------- throughput

# Models up to this size (parameters) are built here from their config (random weights, no download) and
# timed as the run uses them: a CPU thread trains SmolLM2-135M on 8 x 128 tokens in a few seconds. A larger
# model is timed through its dominant matrix product (hidden x 4 hidden) at the run's batch shapes.
BUILD_LIMIT = {"cpu": 300e6, "cuda": 3e9}
# A call that takes longer than this is timed once, its first run counting as the measurement (on a CPU
# the first call's extra cost, allocation, is small next to it); a quicker one is warmed up and repeated.
ONCE_SECONDS = 3.0
# Below this share of the CPU while timing, --plan says the machine is busy and what the run would take alone.
BUSY_SHARE = 0.8
# Hidden sizes of public models from their published config.json, for the offline case only.
KNOWN_HIDDEN = {"meta-llama/Llama-3.2-1B": 2048}


def measure_rates(task: CollapseTask, row: int, question: int, generation: tuple[int, int] = (4, 64)) -> "Rates | None":
    """Tokens per second for training, scoring and generating, measured on this machine's device (the
    task's train.device) at the run's shapes: `row` tokens per training row, `question` per KR sequence,
    `generation` = (context, new) tokens per row of a regeneration batch (`_generation_shape`). Cached
    per (model, shapes). None when nothing could be timed here."""
    r = task.regenerate
    return _rates(task.model.name, _model_key(task), task.model.dtype, task.model.attn_implementation,
                  task.train.device, task.train.batch_size, task.train.per_device_batch_size, task.eval.batch_size,
                  r.batch_size, r.num_beams if r.decoding == "beam" else 1, r.decoding, row, question,
                  tuple(generation))


def _generation_shape(r, lengths: list[int]) -> tuple[int, int]:
    """(Context, new) tokens of a regeneration batch's row, averaged over the calls that rewrite
    paragraphs of these token `lengths` (`regenerate`): in `original` mode one row per block (its preceding
    original text, at most context - block tokens, then `block` new ones); in `sequential` mode one row per
    paragraph (its kept prompt, then the rest in one generation, up to the context)."""
    calls = []
    for n in lengths:
        first = 1 + min(r.prompt, (n - 1) // 2)
        if r.mode == "original":
            calls += [(min(s, r.context - r.block), r.block) for s in range(first, n, r.block)]
        elif n > first:
            calls.append((first, min(n, r.context) - first))
    if not calls:
        return 4, r.block
    return (max(1, round(sum(c for c, _ in calls) / len(calls))),
            max(2, round(sum(k for _, k in calls) / len(calls))))


@functools.lru_cache(maxsize=8)
def _rates(name, key, dtype, attn, device, batch, per_device, eval_batch, gen_batch, beams, decoding, row, question,
           generation):
    import torch

    began = time.perf_counter()
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    torch_dtype = getattr(torch, dtype)
    config, _ = model_config(name, key)
    if config is None:
        return _matmul_rates(name, dev, torch_dtype, dtype, batch, per_device, eval_batch, gen_batch, beams, row,
                             question)
    params = _count(config)
    if params > BUILD_LIMIT.get(dev.type, BUILD_LIMIT["cuda"]):
        return _matmul_rates(name, dev, torch_dtype, dtype, batch, per_device, eval_batch, gen_batch, beams, row,
                             question, config, params)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, **({"attn_implementation": attn} if attn else {}))
    model = model.to(device=dev, dtype=torch_dtype)
    rows = min(batch, per_device or batch)
    vocab = model.config.vocab_size

    spent = [0.0, 0.0]  # wall and CPU seconds of every timed call: the share of the CPU this process got

    def timed(fn, repeats: int = 2) -> float:
        def once() -> float:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            spent[0] += time.perf_counter() - start
            spent[1] += time.process_time() - cpu
            return time.perf_counter() - start

        first = once()  # warm-up: allocations, kernels chosen
        if first > ONCE_SECONDS and dev.type == "cpu":
            return first
        return min(once() for _ in range(repeats))  # the least disturbed of a few: others share this machine

    ids = torch.randint(3, vocab, (rows, row), device=dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step():
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train = rows * row / timed(step)
    optimizer.state.clear()  # its moments: twice the model's memory, not needed past this step
    model.eval()
    kr_ids = torch.randint(3, vocab, (eval_batch, question), device=dev)
    context, new = generation
    prompt = torch.randint(3, vocab, (gen_batch, context), device=dev)
    steps = min(new, 32)  # decoding's rate changes little as the cache grows by a block: time up to 32 steps

    def generate(n: int):
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                       do_sample=decoding == "sample", num_beams=beams, pad_token_id=0)

    with torch.inference_mode():
        score = eval_batch * question / timed(lambda: model(input_ids=kr_ids))
        prefill = timed(lambda: generate(1))
        decode = max(timed(lambda: generate(steps)) - prefill, 1e-9)
    stage = _save_load_seconds(model)
    how = (f"on {dev.type} with {torch.get_num_threads()} thread(s), the task's model ({_n(params)} parameters, "
           f"random weights) trained on {rows} x {row} tokens, scoring {eval_batch} x {question}, regenerating "
           f"{gen_batch} rows{f' x {beams} beams' if beams > 1 else ''} of {context} context + {new} new tokens; "
           f"plus saving and loading it per stage (timing took {time.perf_counter() - began:.0f} s)")
    share = spent[1] / (spent[0] * torch.get_num_threads()) if dev.type == "cpu" else None
    return Rates(train, score, gen_batch * beams * (steps - 1) / decode, stage, how,
                 context=gen_batch * beams * context / prefill, cpu_share=share)


def _matmul_rates(name, dev, torch_dtype, dtype, batch, per_device, eval_batch, gen_batch, beams, row, question,
                  config=None, params=None) -> "Rates | None":
    """A model too large to build here: one layer's dominant product, [m, hidden] x [hidden, 4 hidden], at
    the run's row counts: its achieved FLOP/s, applied to the whole model's 6 (train) or 2 (forward) x
    parameters FLOPs per token. None when neither its hidden size nor its parameter count is known."""
    import torch

    hidden = (getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)) if config is not None \
        else KNOWN_HIDDEN.get(name)
    params = params or KNOWN_PARAMETERS.get(name)
    if hidden is None or params is None:
        return None
    weight = torch.randn(hidden, 4 * hidden, dtype=torch_dtype, device=dev)

    def rate(m: int) -> float:
        m = min(m, 512)  # past a few hundred rows the product's rate no longer grows: keep the timing short
        small = product_rate(min(m, 16))
        # where the dtype is emulated (bfloat16 on a CPU without it: 512 rows took minutes a product), the small
        # product's rate stands for all: a lower bound, as the whole estimate is
        return product_rate(m) if m > 16 and 2 * m * hidden * 4 * hidden / small < 1.0 else small

    def product_rate(m: int) -> float:
        x = torch.randn(m, hidden, dtype=torch_dtype, device=dev)
        x @ weight  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(2):
            x @ weight
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return 2 * m * hidden * 4 * hidden / ((time.perf_counter() - start) / 2)

    rows = min(batch, per_device or batch)
    how = (f"on {dev.type} with {torch.get_num_threads()} thread(s), the model's dominant matrix product ({hidden} x "
           f"{4 * hidden}, {dtype}) at the run's row counts; the whole model's FLOPs at that rate (attention, memory "
           f"traffic and overheads not counted: a lower bound)")
    return Rates(rate(rows * row) / (6 * params), rate(eval_batch * question) / (2 * params),
                 rate(gen_batch * beams) / (2 * params), 0.0, how)


def _save_load_seconds(model) -> float:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # as the run does: no "Loading weights" bar in the plan
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model.save_pretrained(tmp)
        AutoModelForCausalLM.from_pretrained(tmp)
        return time.perf_counter() - start


# --------------------------------------------------------------------------------------------- offline

# The sizes of corpus parts that --plan uses when the corpus is not on this machine (no network call):
# paragraphs and characters as `get_corpus` reads them. wikitext-2-raw-v1 valid and test: counted from the
# wiki.*.raw files (2026-12-04); train: the valid part scaled by the dataset's word counts (Merity et al.
# 2016, Table 1: train 2,088,628, valid 217,646 words; test/valid agree with it: 1.124x the characters for
# 1.128x the words), so 17,667 paragraphs of 10.7 M characters.
RECORDED_SIZES = {
    ("wikitext-2-raw-v1", "valid"): (1841, 1_118_654, "counted from wiki.valid.raw"),
    ("wikitext-2-raw-v1", "test"): (2185, 1_257_882, "counted from wiki.test.raw"),
    ("wikitext-2-raw-v1", "train"): (round(1841 * 2_088_628 / 217_646), round(1_118_654 * 2_088_628 / 217_646),
                                     "the valid part scaled by the dataset's word counts (train/valid 9.60)"),
}
RECORDED_SIZES[("wikitext-2-raw-v1", "main")] = RECORDED_SIZES[("wikitext-2-raw-v1", "train")]
RECORDED_SIZES[("wikitext-2-raw-v1", "validation")] = RECORDED_SIZES[("wikitext-2-raw-v1", "valid")]


def recorded_data(task: CollapseTask):
    """The task's splits and held-out text as paragraphs of the corpus's recorded mean length (`RECORDED_SIZES`),
    for --plan when the corpus is not here; no KR questions (their count needs the corpus). None when the
    corpus's size is not recorded."""
    size = RECORDED_SIZES.get((task.corpus, task.corpus_part))
    if size is None:
        return None
    n, chars, _ = size
    text = "x" * round(chars / n)
    per = task.paragraphs_per_split or n // task.stages
    splits = [[Paragraph(id=f"{k}/{j}", text=text) for j in range(per)] for k in range(task.stages)]
    held = RECORDED_SIZES.get((task.corpus, task.eval.heldout_part or task.corpus_part), size)
    heldout = ["x" * round(held[1] / held[0])] * task.eval.heldout_paragraphs
    return RecordedData(splits, heldout)


@dataclass
class RecordedData:
    """What --plan reads of a task's data (as `protocol.Data`), made up from the corpus's recorded size."""

    splits: list[list]
    heldout: list[str]
    questions: list = field(default_factory=list)
    kr_source: str | None = None
    recorded: bool = True


def recorded_note(task: CollapseTask) -> str:
    n, chars, how = RECORDED_SIZES[(task.corpus, task.corpus_part)]
    return (f"the corpus is not on this machine: its recorded size, {n:,} paragraphs of {chars / n:.0f} characters "
            f"on average ({how}); KR questions not counted")


def _chars_counter():
    return (lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))), \
        f"estimated at {CHARS_PER_TOKEN:g} characters per token (the corpus's recorded size)"


def _kr_questions(task: CollapseTask, data) -> list:
    """The KR questions every stage scores (eval.kr_splits: all, or split 0's only)."""
    return [q for q in data.questions if task.eval.kr_splits != "first" or getattr(q, "split", 0) == 0]


def _stage(task: CollapseTask, data, count, stage: StagePlan, passes: int = 2, shared: bool = False,
           masks: bool = True) -> StageCost:
    """The positions one stage runs the model over, by phase as the run spends them (`run._stage`): every
    batch of sequences padded to its longest row, as the run pads them (on WikiText's paragraphs of 4 to 330
    tokens that doubles the held-out text's positions). `passes`: the Fig. 1 confidence's, 2 (eval and train
    mode) or 1 (a model without dropout, whose train mode computes what eval mode did). `shared`: `original`
    regeneration reads each paragraph's prefix once (`_rewrite`). `masks`: the loss's mask is measured with the
    model around training (a loss that keeps every token, `Loss.keeps_every_token`, needs no pass)."""
    t, r, eb = task.train, task.regenerate, task.eval.batch_size
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
    cost.validated = round(epochs * t.val_fraction * pool_tokens)         # validation after every epoch
    beams = r.num_beams if r.decoding == "beam" else 1
    for k, _ in train_on:                                                   # every split of the pool is regenerated
        generated, context = _rewrite([count(p.text) for p in data.splits[k]], r, shared)
        cost.generated += beams * generated
        cost.context += beams * context

    def kr(questions) -> int:
        return _padded([count(q.context) + count(q.true) + count(q.false) for q in questions], eb)

    rewritten = _padded([count(p.text) for k, _ in train_on for p in data.splits[k]], eb)
    real = _padded([count(data.splits[k][j].text) for (k, g), chosen in zip(train_on, stage.paragraphs) if g == 0
                    for j in chosen], eb)
    heldout = _padded([count(h) for h in data.heldout], eb)
    # evaluate: KR; then the Fig. 1 confidence in eval and (where dropout makes it differ) in train mode,
    # each on the model's own rewrite, the real text it trained on and the held-out text
    # (evaluate._confidence; the first held-out pass is also the perplexity's)
    cost.evaluated = kr(_kr_questions(task, data)) + passes * (rewritten + real + heldout)
    cost.scored = cost.validated + cost.evaluated
    regenerated = [count(p.text) for k, g in train_on if g > 0 for p in data.splits[k]]
    if masks and regenerated:  # the corruption measure, outside training's time (corruption.gradient_split):
        fresh = [count(p.text) for k, g in train_on if g == 0 for p in data.splits[k]]  # the pool and D_i, read
        cost.scored += 2 * (_padded(regenerated, eb) + _padded(fresh, eb))           # by M_{i-1} and by M_i
    if stage.stage == 0:
        cost.scored += kr(data.questions)                                  # the base's KR (chance.json)
    return cost


def _padded(lengths: list[int], batch: int) -> int:
    """Positions the model runs over for sequences of these lengths in batches of `batch`, longest with
    longest (as `probs.token_probs` and the KR scorer order them), each row padded to its batch's longest."""
    ordered = sorted(lengths)
    return sum(len(ordered[i : i + batch]) * max(ordered[i : i + batch]) for i in range(0, len(ordered), batch))


def _rewrite(lengths: list[int], r, shared: bool = False) -> tuple[int, int]:
    """(Generated, context) positions to rewrite one split of paragraphs of these token lengths
    (`regenerate`): one row per block in `original` mode (its preceding original text, at most context -
    block tokens), one per paragraph in `sequential` mode; rows batched as `regenerate` orders them, each
    left-padded to its batch's longest context and decoding as many steps as its longest row needs. `shared`
    (`regenerate.shares_prefix`): a block whose context is its paragraph's prefix reads none of it, and each
    paragraph's prefix is read once instead, in groups of `batch_size` paragraphs, longest with longest."""
    rows, prefixes = [], []  # (context, new) per row; per paragraph, the prefix its blocks share
    reach = r.context - r.block
    for n in lengths:
        first = 1 + min(r.prompt, (n - 1) // 2)                             # BOS + the kept prompt
        if r.mode == "original":
            starts = list(range(first, n, r.block))
            own = [s for s in starts if not (shared and 1 < s <= reach)]
            rows += [(min(s, reach), min(r.block, n - s)) for s in own]
            rows += [(0, min(r.block, n - s)) for s in starts if s not in own]
            prefixes += [max(s for s in starts if s not in own) - 1] if len(own) < len(starts) else []
        elif n > first:
            rows.append((_context_tokens(n, first, r), n - first))
    rows.sort(key=lambda row: row[0] if r.mode == "original" else row[1])
    batches = [rows[i : i + r.batch_size] for i in range(0, len(rows), r.batch_size)]
    return (sum(len(b) * max(new for _, new in b) for b in batches),
            sum(len(b) * max(context for context, _ in b) for b in batches) + _padded(prefixes, r.batch_size))


def _context_tokens(n: int, first: int, r) -> int:
    """Tokens fed as context (not generated) to rewrite one paragraph of n tokens in sequential mode."""
    if n <= r.context:        # one continuous generation with the KV cache
        return first
    rebuilds = -(-(n - r.context) // r.block)  # past the window: the cache is rebuilt before each block
    return first + rebuilds * (r.context - r.block)


def _counter(task: CollapseTask):
    """A function text -> token count, and where it comes from."""
    from transformers import AutoTokenizer

    tokenizer = None
    try:
        if task.model.name == "tiny":
            cached = base_dir(task) / "model"
            if (cached / "tokenizer.json").is_file():
                tokenizer, source = AutoTokenizer.from_pretrained(str(cached)), "the cached tiny base's tokenizer"
            elif task.model.pretrain is not None:
                tokenizer = train_tokenizer(pretrain_texts(task), task.model.tiny.vocab_size)
                source = "the tiny tokenizer, trained on the pretraining text as the run does"
        elif (spec := resolve(task.model.name, build=False)).startswith(GGUF):
            path = gguf_file(spec)  # not dequantised yet: the tokenizer the GGUF file carries
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            source = f"{task.model.name}'s tokenizer (from the GGUF file)"
        else:
            tokenizer = AutoTokenizer.from_pretrained(spec, revision=task.model.revision, trust_remote_code=False,
                                                      local_files_only=True)
            source = f"{task.model.name}'s tokenizer"
    except (OSError, ValueError, FortifaiError):
        tokenizer = None
    if tokenizer is None:
        return (lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))), \
            f"estimated at {CHARS_PER_TOKEN:g} characters per token (the model's tokenizer is not available here)"
    return (lambda text: len(tokenizer(text)["input_ids"])), source


# --------------------------------------------------------------------------------------------- text

def _n(x: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.2f}{unit}"
    return f"{x:.0f}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(est: Estimate, devices: int = 1, device_tflops: float | None = None) -> list[str]:
    """The estimate as text: tokens and FLOPs per stage, and the time, from the throughput measured here
    (`est.rates`), or from `device_tflops` achieved TFLOP/s per device when given (another machine)."""
    measured = device_tflops is None and est.rates is not None
    tflops = DEFAULT_TFLOPS if device_tflops is None else device_tflops
    if tflops <= 0:
        raise FortifaiError(f"--device-tflops must be > 0, got {tflops:g}")
    rate = devices * tflops * 1e12
    p = est.params
    loss = "whose mask is measured, as TCE's" if est.masks else "that keeps every token, as CE"
    lines = [f"compute, per run (one loss {loss}, one seed): parameters {_n(p) if p else '?'} ({est.params_source}); "
             f"tokens {est.tokens_source}",
             "  FLOPs = 6 x params x trained + 2 x params x (generated + context + scored) tokens"]
    if measured:
        split = f", split evenly over {devices} devices" if devices > 1 else ""
        lines.append(f"  time: tokens / the throughput measured here: {est.rates.how}{split} (--device-tflops N: "
                     "at N TFLOP/s instead)")
    else:
        lines.append(f"  time at {tflops:g} TFLOP/s achieved per device x {devices} device{'s' if devices > 1 else ''}"
                     f"{' (--device-tflops)' if device_tflops is not None else ' (default: no throughput measured here)'}")
    for note in est.notes:
        lines.append(f"  note: {note}")
    total = StageCost(-1)
    seconds = 0.0
    for s in est.stages:
        for f in ("trained", "generated", "context", "scored"):
            setattr(total, f, getattr(total, f) + getattr(s, f))
        sec = est.rates.seconds(s) / devices if measured else None
        seconds += sec or 0.0
        lines.append(_line(f"stage {s.stage}", s, p, rate, sec))
        if measured:  # as the run's metrics record them (stage_i/metrics.json, `seconds`)
            lines.append("    " + ", ".join(f"{k} {duration(v / devices)}" for k, v in est.rates.phases(s).items()))
    if measured:
        lines.append(f"  start-up (a fresh Python importing what a run imports, timed here): {duration(est.rates.start)}")
    lines.append(_line("total", total, p, rate, seconds + est.rates.start if measured else None))
    share = est.rates.cpu_share if measured else None
    if share is not None and share < BUSY_SHARE:  # the time above assumes the load stays as it was
        lines.append(f"  the machine is busy: the timing had {share:.0%} of its CPU threads' time, so these times assume "
                     f"that load lasts; alone, about {duration(share * (seconds + est.rates.start))}")
    if not measured:
        lines.append("  generation is memory-bound and runs below the device's matmul rate: its time is a lower bound")
    return lines


def run_seconds(est: Estimate, devices: int = 1) -> float | None:
    """One run's wall time from the measured throughput, or None."""
    if est.rates is None:
        return None
    return est.rates.start + sum(est.rates.seconds(s) for s in est.stages) / devices


def _line(label: str, s: StageCost, params: float | None, rate: float, seconds: float | None = None) -> str:
    text = (f"  {label}: trained {_n(s.trained)}, generated {_n(s.generated)} (+{_n(s.context)} context), "
            f"scored {_n(s.scored)} tokens")
    if params:
        flops = s.flops(params)
        text += f" -> {flops:.2e} FLOPs, {duration(flops / rate if seconds is None else seconds)}"
    elif seconds is not None:
        text += f" -> {duration(seconds)}"
    return text
