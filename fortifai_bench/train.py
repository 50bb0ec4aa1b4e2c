"""The reference trainer: one stage of the collapse protocol, with any loss, on any causal LM.

`train(model, tokenizer, texts, loss, config)` tokenizes the texts with the tokenizer's defaults
(the tiny tokenizer prepends BOS), packs them into blocks of ``block_size`` tokens, and trains with
AdamW and a warmup + cosine/linear/constant schedule, gradient accumulation and gradient clipping.
After every epoch it measures the validation loss and keeps the best checkpoint (the paper trains
10 epochs per stage and keeps the best). It returns that best checkpoint loaded into the model and
a per-epoch history that includes the loss's own statistics (masked fraction, mean p(correct)).

Conventions
-----------
* Packing: the token ids of all texts are concatenated and cut into blocks of ``block_size``. If the
  tokenizer does not itself start each text with BOS, EOS is appended after each text so texts stay
  separated. The last, partial block is kept (padded, with its padding masked out of attention and
  labels) so every text is trained on — a fact corpus loses no paragraph to packing. The pad id's
  value never matters (padding sits at the end of a causal block, masked everywhere), so a tokenizer
  without a pad token trains fine: we use pad, else eos, else 0.
* Labels are the input ids (``-100`` on padding); the loss shifts them (see `fortifai_bench.losses`).
* ``batch_size`` counts blocks per forward pass summed over all processes; one optimizer step sees
  ``batch_size * grad_accum`` blocks whatever the number of processes, so a 2-process run follows the
  1-process loss curve.
* The validation loss is plain cross-entropy per real token, whatever the training loss, so the best
  checkpoint is chosen the same way for CE, TCE and Focal (TCE's own value on held-out data shrinks
  as it masks more tokens, which would reward confidence, not fit).
* Validation texts: ``val_texts`` if given, else a seeded ``val_fraction`` of the texts (whole texts,
  so no paragraph is split between training and validation), else none (best = last epoch).
* Reproducible: with a given seed, two CPU runs give bit-identical weights (seeded shuffling through
  one ``torch.Generator``; dropout seeded with ``torch.manual_seed``).

Distributed training
--------------------
Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) the model is wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA) and each micro-batch is split across the
processes. We use this thin torch.distributed layer rather than `accelerate`: our loop already owns
everything Accelerator would add (autocast, accumulation, clipping), and Accelerator's prepared data
loader reseeds and reshards the sample order, which would break the exact agreement with the
single-process order that both the reproducibility guarantee and the DDP-vs-1-process test rely on.
The layer is ~40 lines: init, split, all-reduce of the logged numbers, rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses import CheckedLoss, FunctionLoss, Loss, load_loss, parse_loss_args, token_logprobs

IGNORE_INDEX = -100
SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


@dataclass
class TrainConfig:
    """Everything that decides a training run (recorded in ``train.json`` and run provenance)."""

    epochs: int = 3
    lr: float = 3e-4
    batch_size: int = 16  # blocks per forward pass, summed over processes
    block_size: int = 64
    grad_accum: int = 1  # forward passes per optimizer step
    warmup: float | int = 0.1  # float in [0, 1): fraction of optimizer steps; int: a number of steps
    schedule: str = "cosine"  # cosine | linear | constant (each after the warmup)
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # held-out share of the texts when no val_texts are given; 0 = none
    seed: int = 0
    bf16: bool | str = "auto"  # "auto": bf16 autocast on CUDA when supported; True: require it
    max_grad_norm: float | None = 1.0  # None or 0: no clipping
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int | None = None  # default: batch_size
    # True: texts are concatenated and cut into blocks (efficient for long text). False: one text per row,
    # truncated to block_size and padded, so every text starts at position 0 after BOS, as KR questions do.
    # A tiny GPT-2 learns short fact paragraphs only this way (KR 0.96 vs 0.59 packed: BENCHMARKS.md, Corpora).
    packing: bool = True

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise FortifaiError(f"train config: {what}")

        need(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be an integer >= 1, got {self.epochs!r}")
        need(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size!r}")
        need(isinstance(self.block_size, int) and self.block_size >= 2, f"block_size must be >= 2, got {self.block_size!r}")
        need(isinstance(self.grad_accum, int) and self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum!r}")
        if isinstance(self.warmup, float):
            need(0 <= self.warmup < 1, f"warmup as a float is a fraction in [0, 1), got {self.warmup!r}")
        else:
            need(isinstance(self.warmup, int) and self.warmup >= 0, f"warmup must be a step count >= 0 or a fraction, got {self.warmup!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        need(self.bf16 in ("auto", True, False), f"bf16 must be 'auto', true or false, got {self.bf16!r}")
        need(self.max_grad_norm is None or self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        need(self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"), f"unknown device {self.device!r}")
        need(self.eval_batch_size is None or self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size!r}")
        need(isinstance(self.packing, bool), f"packing must be true or false, got {self.packing!r}")


@dataclass
class TrainResult:
    """`model`: the best checkpoint, loaded, in eval mode. `history`: one dict per epoch."""

    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    seconds: float
    best_val_loss: float | None = None
    out_dir: Path | None = None
    loss: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data


@dataclass
class Blocks:
    """Packed training data: ``ids`` and ``mask`` of shape [n_blocks, block_size]."""

    ids: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.ids[index], self.mask[index]
        # Padding sits at the end of each row and is masked everywhere, so columns past the batch's
        # longest row change nothing but cost compute (one fact paragraph fills ~35 of 128 columns).
        width = max(2, int(mask.sum(dim=1).max())) if len(index) else ids.shape[1]
        ids, mask = ids[:, :width], mask[:, :width]
        return ids, mask, ids.masked_fill(mask == 0, IGNORE_INDEX)


def tokenize(tokenizer, texts: Sequence[str]) -> list[int]:
    """All texts as one stream of ids, each encoded with the tokenizer's defaults (see module doc)."""
    encoded = tokenizer(list(texts), verbose=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    starts_with_bos = bos is not None and all(ids[:1] == [bos] for ids in encoded if ids)
    sep = [] if starts_with_bos or eos is None else [eos]
    return [t for ids in encoded for t in (*ids, *sep)]


def pack(stream: list[int], block_size: int, pad_id: int) -> Blocks:
    """Cut a token stream into blocks; the partial tail (>= 2 tokens, so it has a target) is padded."""
    n_full, tail = divmod(len(stream), block_size)
    if tail < 2:
        stream, tail = stream[: n_full * block_size], 0
    n = n_full + (1 if tail else 0)
    ids = torch.full((n * block_size,), pad_id, dtype=torch.long)
    ids[: len(stream)] = torch.tensor(stream, dtype=torch.long)
    mask = torch.zeros(n * block_size, dtype=torch.long)
    mask[: len(stream)] = 1
    return Blocks(ids.view(n, block_size), mask.view(n, block_size))


def rows(tokenizer, texts: Sequence[str], block_size: int, pad_id: int) -> Blocks:
    """One text per row, truncated to ``block_size`` and padded (``packing=False``)."""
    encoded = [ids[:block_size] for ids in tokenizer(list(texts), verbose=False)["input_ids"]]
    encoded = [ids for ids in encoded if len(ids) >= 2]  # a row needs at least one target
    ids = torch.full((len(encoded), block_size), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), block_size), dtype=torch.long)
    for i, row in enumerate(encoded):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return Blocks(ids, mask)


def _pad_id(tokenizer) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0  # the value is never seen: padding is masked from attention and labels


def split_texts(texts: Sequence[str], val_fraction: float, generator: torch.Generator) -> tuple[list[str], list[str]]:
    """Hold out a seeded share of whole texts; both parts keep the original order."""
    if val_fraction == 0:
        return list(texts), []
    if len(texts) < 2:
        raise FortifaiError(f"cannot hold out val_fraction={val_fraction} of {len(texts)} text: "
                            "give at least 2 texts, pass val_texts, or set val_fraction=0")
    n_val = min(len(texts) - 1, max(1, round(val_fraction * len(texts))))
    held = set(torch.randperm(len(texts), generator=generator)[:n_val].tolist())
    return ([t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held])


def _prepare(tokenizer, texts, val_texts, config: TrainConfig, generator) -> tuple[Blocks, Blocks | None]:
    texts = [t for t in (texts or []) if t and t.strip()]
    if not texts:
        raise FortifaiError("no training texts: got 0 non-empty texts")
    if val_texts is not None:
        val_texts = [t for t in val_texts if t and t.strip()]
        if not val_texts:
            raise FortifaiError("val_texts was given but holds no non-empty text")
    else:
        texts, val_texts = split_texts(texts, config.val_fraction, generator)
    pad = _pad_id(tokenizer)
    if not config.packing:
        train_blocks = rows(tokenizer, texts, config.block_size, pad)
        if len(train_blocks) == 0:
            raise FortifaiError(f"none of the {len(texts)} training texts has 2 or more tokens")
        return train_blocks, (rows(tokenizer, val_texts, config.block_size, pad) if val_texts else None)
    stream = tokenize(tokenizer, texts)
    if len(stream) < config.block_size:
        raise FortifaiError(f"the {len(texts)} training texts give {len(stream)} tokens, fewer than one block of "
                            f"block_size={config.block_size}: lower the block size or add texts")
    train_blocks = pack(stream, config.block_size, pad)
    val_blocks = None
    if val_texts:
        val_stream = tokenize(tokenizer, val_texts)
        if len(val_stream) < 2:
            raise FortifaiError(f"the {len(val_texts)} validation texts give {len(val_stream)} token(s); need >= 2")
        val_blocks = pack(val_stream, config.block_size, pad)
    return train_blocks, val_blocks


# ----------------------------------------------------------------------------- processes


class _Dist:
    """Who we are under torchrun, and the few collective operations the loop needs."""

    def __init__(self, device_pref: str, single: bool = False):
        self.world = 1 if single else int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0 if single else int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_pref == "auto":
            device_pref = "cuda" if torch.cuda.is_available() else "cpu"
        if device_pref == "cuda" and self.world > 1:
            device_pref = f"cuda:{local_rank}"
        self.device = torch.device(device_pref)
        self.owns_group = False
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group(backend)
            self.owns_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, values: list[float]) -> list[float]:
        """Sum numbers over processes (float64 on the training device)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        return index[self.rank :: self.world]

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def close(self):
        if self.owns_group:
            torch.distributed.destroy_process_group()


def _epoch_order(n: int, world: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation, wrapped to a multiple of the world size so every process gets a share."""
    order = torch.randperm(n, generator=generator)
    short = (-n) % world
    return torch.cat([order, order[:short]]) if short else order


# ----------------------------------------------------------------------------- training


def _as_checked(loss) -> CheckedLoss:
    if isinstance(loss, CheckedLoss):
        return loss
    if isinstance(loss, str):
        return load_loss(loss)
    if isinstance(loss, Loss):
        return CheckedLoss(type(loss).__name__, loss, {})
    if callable(loss):  # a plain f(logits, labels) -> Tensor
        return CheckedLoss(getattr(loss, "__name__", type(loss).__name__), FunctionLoss(loss), {})
    raise FortifaiError(f"loss must be a spec string, a Loss or a function, got {type(loss).__name__}")


def _check_out_dir(out_dir) -> Path | None:
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FortifaiError(f"output directory {out} already holds another run (or is a file); "
                            "choose a new --out or remove it")
    return out


def _use_bf16(config: TrainConfig, device: torch.device) -> bool:
    if config.bf16 is False:
        return False
    ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if config.bf16 is True and not ok:
        raise FortifaiError(f"bf16=True needs a CUDA device with bf16 support; this run is on {device}")
    return ok


def _warmup_steps(config: TrainConfig, total_steps: int) -> int:
    return int(config.warmup * total_steps) if isinstance(config.warmup, float) else config.warmup


def _optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    # Usual practice: no weight decay on biases and LayerNorm weights (the 1-d parameters).
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    # The fused kernel (as transformers.Trainer uses by default): one pass over all parameters,
    # measured ~5x less optimizer time than the foreach one on the tiny model (1.1 vs 5-7 ms a step).
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)


@torch.no_grad()
def evaluate(model, blocks: Blocks, batch_size: int, dist: _Dist | None = None, bf16: bool = False) -> float:
    """Cross-entropy per real token over `blocks` (the validation loss; see module doc)."""
    dist = dist or _Dist("cpu", single=True)  # called on its own: this process evaluates every block
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nll, count = 0.0, 0.0
    index = dist.shard(torch.arange(len(blocks)))
    for s in range(0, len(index), batch_size):
        ids, mask, labels = (t.to(device) for t in blocks.batch(index[s : s + batch_size]))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        logp, valid = token_logprobs(logits, labels)
        nll -= logp.sum().item()
        count += valid.sum().item()
    nll, count = dist.sum([nll, count])
    model.train(was_training)
    return nll / max(count, 1.0)


def train(
    model,
    tokenizer,
    texts: Sequence[str],
    loss: str | CheckedLoss | Loss | Callable[..., torch.Tensor],
    config: TrainConfig | None = None,
    *,
    val_texts: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on `texts` with `loss`; return the best epoch's checkpoint (see module doc).

    With `out_dir`, the best checkpoint is saved there (safetensors + tokenizer, plus ``train.json``
    with the config, the loss and the history), atomically, by process 0, once training ends.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    checked = _as_checked(loss)
    out = _check_out_dir(out_dir)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    train_blocks, val_blocks = _prepare(tokenizer, texts, val_texts, config, generator)

    dist = _Dist(config.device)
    if config.batch_size % dist.world:
        raise FortifaiError(f"batch_size={config.batch_size} is not divisible by the {dist.world} processes")
    bf16 = _use_bf16(config, dist.device)
    model.to(dist.device)
    model.train()
    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)

    from transformers import get_scheduler

    micro_per_epoch = math.ceil((len(train_blocks) + (-len(train_blocks)) % dist.world) / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = get_scheduler(SCHEDULES[config.schedule], optimizer, _warmup_steps(config, total_steps), total_steps)
    eval_batch = max(1, (config.eval_batch_size or config.batch_size) // dist.world)

    history: list[dict[str, Any]] = []
    best_state, best_val, best_epoch = None, math.inf, config.epochs
    step = 0
    try:
        for epoch in range(1, config.epochs + 1):
            order = _epoch_order(len(train_blocks), dist.world, generator)
            batches = list(order.split(config.batch_size))
            sums = {"loss": 0.0, "masked_fraction": 0.0, "mean_p_correct": 0.0, "micro": 0.0, "tokens": 0.0}
            t0 = time.perf_counter()
            bar = tqdm(total=len(batches), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                       disable=not (progress and dist.main), leave=False, dynamic_ncols=True)
            for g in range(0, len(batches), config.grad_accum):
                group = batches[g : g + config.grad_accum]
                for i, index in enumerate(group):
                    ids, mask, labels = (t.to(dist.device) for t in train_blocks.batch(dist.shard(index)))
                    sync = i == len(group) - 1
                    with (net.no_sync() if dist.world > 1 and not sync else contextlib.nullcontext()):
                        with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=bf16):
                            logits = net(input_ids=ids, attention_mask=mask).logits
                        try:
                            result = checked(logits, labels)
                        except FortifaiError as exc:
                            raise FortifaiError(f"epoch {epoch} step {step + 1}: {exc}") from exc
                        (result.loss / len(group)).backward()
                    value = result.loss.item()
                    sums["loss"] += value
                    for key in ("masked_fraction", "mean_p_correct"):
                        sums[key] += float(result.stats.get(key, math.nan))
                    sums["micro"] += 1
                    sums["tokens"] += float(mask.sum())
                    bar.update(1)
                    seconds = time.perf_counter() - t0
                    bar.set_postfix(loss=f"{value:.4f}", tok_s=f"{sums['tokens'] * dist.world / seconds:,.0f}",
                                    refresh=False)
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            bar.close()
            train_seconds = time.perf_counter() - t0
            loss_sum, mf, pc, micro, tokens = dist.sum(
                [sums["loss"], sums["masked_fraction"], sums["mean_p_correct"], sums["micro"], sums["tokens"]]
            )
            val_loss = evaluate(model, val_blocks, eval_batch, dist, bf16) if val_blocks is not None else None
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / micro,
                "val_loss": val_loss,
                "masked_fraction": mf / micro,
                "mean_p_correct": pc / micro,
                "tokens_per_s": tokens / train_seconds,
                "tokens": int(tokens),
                "steps": step,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            if progress and dist.main:
                tqdm.write(_format_row(row, config.epochs))
            if val_loss is not None and val_loss < best_val:
                # A copy on the training device: cheap for the tiny model, one extra model on a GPU.
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best_val, best_epoch = val_loss, epoch

        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        result = TrainResult(
            model=model,
            history=history,
            best_epoch=best_epoch,
            seconds=time.perf_counter() - start,
            best_val_loss=None if best_state is None else best_val,
            out_dir=out,
            loss=checked.describe(),
        )
        if out is not None:
            if dist.main:
                _save(result, tokenizer, config, out, progress)
            dist.barrier()
        return result
    finally:
        dist.close()


def _format_row(row: dict[str, Any], epochs: int) -> str:
    val = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f}"
    return (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  val_loss {val}  "
            f"masked {row['masked_fraction']:.3f}  p_correct {row['mean_p_correct']:.3f}  "
            f"{row['tokens_per_s']:,.0f} tok/s")


def _save(result: TrainResult, tokenizer, config: TrainConfig, out: Path, progress: bool) -> None:
    """Model, tokenizer and ``train.json`` appear together or not at all."""
    from transformers.utils import logging as hf_logging

    from fortifai_bench.io import atomic_dir, write_json
    from fortifai_bench.models import save_model

    bars = hf_logging.is_progress_bar_enabled()
    if not progress:  # save_pretrained draws its own bar
        hf_logging.disable_progress_bar()
    with atomic_dir(out) as tmp:
        try:
            save_model(result.model, tokenizer, tmp)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        write_json(tmp / "train.json", {
            "config": asdict(config),
            "loss": result.loss,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "history": result.history,
            "seconds": result.seconds,
        })


# ----------------------------------------------------------------------------- command line


def _read_lines(path: str, option: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FortifaiError(f"cannot read {option} {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return [line for line in lines if line.strip()]


def _texts_from_args(args: argparse.Namespace) -> list[str]:
    if args.text_file:
        return _read_lines(args.text_file, "--text-file")
    try:
        from fortifai_bench.corpora import get_corpus
    except ImportError as exc:
        raise FortifaiError("--corpus needs fortifai_bench.corpora, which is not installed here; use --text-file") from exc
    return [p.text for p in get_corpus(args.corpus).paragraphs]


def _bool_or_auto(text: str) -> bool | str:
    value = text.strip().lower()
    if value in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[value]
    raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")


def _warmup(text: str) -> float | int:
    return float(text) if any(c in text for c in ".eE") else int(text)


def register(subparsers) -> None:
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a model for one stage with any loss (best checkpoint by validation loss)",
        description="Train a causal LM on a corpus with a loss spec; keep the epoch with the lowest "
                    "validation cross-entropy. Runs under `torchrun --nproc_per_node N -m fortifai_bench.train`.",
    )
    p.add_argument("--model", default="tiny", help="local model directory, hub id, or 'tiny' (built on the corpus)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="a registered corpus name (facts, wikitext-2-raw-v1, text:PATH, ...)")
    src.add_argument("--text-file", help="a UTF-8 text file, one training text per non-empty line")
    p.add_argument("--val-text-file", help="validation texts, one per non-empty line (default: --val-fraction)")
    p.add_argument("--loss", default="ce", help="ce | tce:0.9 | focal:2 | package.module:Name (default ce)")
    p.add_argument("--loss-args", action="append", default=[], metavar="K=V[,K=V]",
                   help="keyword arguments for the loss, e.g. gamma=0.8,normalize=kept")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="blocks per forward pass, all processes")
    p.add_argument("--block-size", type=int, default=d.block_size)
    p.add_argument("--no-packing", dest="packing", action="store_false",
                   help="one text per row (truncated to --block-size) instead of packed blocks")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--warmup", type=_warmup, default=d.warmup, help="fraction (0.1) or steps (100)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=d.schedule)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    p.add_argument("--bf16", type=_bool_or_auto, default=d.bf16, help="auto | true | false")
    p.add_argument("--device", default=d.device)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", help="save the best checkpoint and train.json here (must not hold another run)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice); on a busy "
                   "shared machine 1 can be many times faster")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, block_size=args.block_size,
        grad_accum=args.grad_accum, warmup=args.warmup, schedule=args.schedule, weight_decay=args.weight_decay,
        val_fraction=args.val_fraction, seed=args.seed, bf16=args.bf16, max_grad_norm=args.max_grad_norm,
        device=args.device, packing=args.packing,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise FortifaiError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    loss = load_loss(args.loss, **parse_loss_args(args.loss_args))
    _check_out_dir(args.out)  # before the (possibly slow) model load
    texts = _texts_from_args(args)
    if args.model == "tiny":
        from fortifai_bench.models import build_tiny

        if not texts:
            raise FortifaiError("no training texts: got 0 non-empty texts")
        model, tokenizer = build_tiny(texts, seed=args.seed)
    else:
        from fortifai_bench.models import load_model

        model, tokenizer = load_model(args.model)
    val_texts = _read_lines(args.val_text_file, "--val-text-file") if args.val_text_file else None
    result = train(model, tokenizer, texts, loss, config, val_texts=val_texts, out_dir=args.out,
                   progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        if args.no_progress:  # with progress on, train() already wrote each epoch's line
            for row in result.history:
                print(_format_row(row, config.epochs))
        val = "no validation" if result.best_val_loss is None else f"val_loss {result.best_val_loss:.4f}"
        where = f"; saved to {result.out_dir}" if result.out_dir else ""
        print(f"best epoch {result.best_epoch} ({val}) in {result.seconds:.1f} s{where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m fortifai_bench.train ARGS` = `fortifai-bench train ARGS`, for torchrun."""
    parser = argparse.ArgumentParser(prog="python -m fortifai_bench.train")
    register(parser.add_subparsers())
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except FortifaiError as exc:
        print(f"fortifai-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # torchrun --nproc_per_node 2 -m fortifai_bench.train --text-file ...
    sys.exit(main())
