"""The training loop: AdamW with warmup and a cosine/linear/constant schedule, gradient accumulation,
clipping, bf16 autocast, DDP across processes, and the best epoch kept by validation loss.

Conventions
-----------
* ``batch_size`` counts blocks per forward pass summed over all processes; one optimizer step sees
  ``batch_size * grad_accum`` blocks whatever the number of processes (the paper's batch of 64 on 1 or 8
  GPUs). ``per_device_batch_size`` caps how many of them one device holds at once: a larger share is
  cut into chunks whose gradients accumulate, so memory changes and the step does not.
* Every chunk's loss is weighted by its share of the batch's target tokens, so the gradient of a step is
  that of the whole batch whatever the number of processes or chunks: exactly for losses that average
  over target tokens (CE, TCE with its default normalize=all, Focal); for others (normalize=kept) the
  batch is the mean of its chunks' losses, weighted by tokens. With one process and no chunking the
  weight is 1 and nothing changes.
* Each epoch's order is one seeded permutation. Under N processes it is wrapped to a multiple of N; the
  wrapped-in repeats carry no targets (their labels are masked), so no block counts twice.
* The validation loss is plain cross-entropy per real token, whatever the training loss, so the best
  checkpoint is chosen the same way for CE, TCE and Focal (TCE's own value on held-out data shrinks as
  it masks more tokens, which would reward confidence, not fit). No validation: the last epoch is kept.
* Token classes (`train(..., classes=...)`, see `train.data`): every step tallies, per class of target
  token, how many tokens the loss kept (the mask it returned, `LossOutput.kept`, as applied in that very
  step: train mode, its dropout draw) and their confidence (a histogram of p_t and its sum), from the
  loss's own per-token values: a few counters, no extra forward pass, no random draw
  (`TrainResult.tally`, a `train.tally.TokenTally`).
* Reproducible: with a given seed, two CPU runs give bit-identical weights (seeded shuffling through one
  ``torch.Generator``; dropout seeded with ``torch.manual_seed``). Dropout masks are drawn per process,
  so N processes and 1 agree in distribution, and in value only without dropout.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from fortifai_bench import threads
from fortifai_bench.distributed import Dist
from fortifai_bench.errors import FortifaiError
from fortifai_bench.kr.encode import model_window
from fortifai_bench.losses import CheckedLoss, FunctionLoss, Loss, load_loss, token_logprobs
from fortifai_bench.losses.checked import INPLACE_HINT, first_sentence
from fortifai_bench.train.config import SCHEDULES, TrainConfig
from fortifai_bench.train.data import IGNORE_INDEX, Blocks, prepare
from fortifai_bench.train.save import save_run
from fortifai_bench.train.tally import TokenTally

STATS = ("masked_fraction", "mean_p_correct")


@dataclass
class TrainResult:
    """`model`: the best checkpoint, loaded, in eval mode. `history`: one dict per epoch. `tally`: the loss's
    mask and confidence per token class over every step (when `classes` were given and the loss reports its
    mask; see module doc)."""

    model: Any
    history: list[dict[str, Any]]
    best_epoch: int
    seconds: float
    best_val_loss: float | None = None
    out_dir: Path | None = None
    loss: dict[str, Any] = field(default_factory=dict)
    tally: TokenTally | None = None


def as_checked(loss) -> CheckedLoss:
    if isinstance(loss, CheckedLoss):
        return loss
    if isinstance(loss, str):
        return load_loss(loss)
    if isinstance(loss, Loss):
        return CheckedLoss(type(loss).__name__, loss, {})
    if callable(loss):  # a plain f(logits, labels) -> Tensor
        return CheckedLoss(getattr(loss, "__name__", type(loss).__name__), FunctionLoss(loss), {})
    raise FortifaiError(f"loss must be a spec string, a Loss or a function, got {type(loss).__name__}")


def check_out_dir(out_dir) -> Path | None:
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FortifaiError(f"output directory {out} already holds another run (or is a file); "
                            "choose a new --out or remove it")
    return out


def use_bf16(config: TrainConfig, device: torch.device, model=None) -> bool:
    """bf16 autocast: on where the device supports it (config 'auto'), required (True) or off. A model whose
    weights are already 16-bit (model.dtype bfloat16/float16) runs in its own precision, without autocast."""
    if config.bf16 is False:
        return False
    ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if config.bf16 is True and not ok:
        raise FortifaiError(f"bf16=True needs a CUDA device with bf16 support; this run is on {device}")
    if model is not None and next(model.parameters()).dtype != torch.float32:
        return False
    return ok


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    return int(config.warmup * total_steps) if isinstance(config.warmup, float) else config.warmup


def optimizer_for(model, config: TrainConfig) -> torch.optim.Optimizer:
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
def evaluate(model, blocks: Blocks, batch_size: int, dist: Dist | None = None, bf16: bool = False) -> float:
    """Cross-entropy per real token over `blocks` (the validation loss; see module doc)."""
    dist = dist or Dist.start("cpu", single=True)  # called on its own: this process evaluates every block
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


def epoch_order(n: int, world: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation wrapped to a multiple of the world size, and which entries are the repeats."""
    order = torch.randperm(n, generator=generator)
    short = (-n) % world
    repeat = torch.zeros(n + short, dtype=torch.bool)
    repeat[n:] = True
    return (torch.cat([order, order[:short]]) if short else order), repeat


@dataclass
class _Chunk:
    """One forward pass on this device: its rows, and its share of the batch's target tokens."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    share: float
    tokens: int  # real (not repeated) input tokens, for throughput
    classes: torch.Tensor | None = None  # the token classes (`train.data`), for the tally


def _chunks(blocks: Blocks, index, repeat, dist: Dist, cap: int | None) -> list[_Chunk]:
    """This process's part of one batch (`index`, all processes), cut into chunks of at most `cap` rows."""
    total = blocks.targets(index[~repeat])
    mine, mine_repeat = dist.shard(index), dist.shard(repeat)
    step = cap or max(1, len(mine))
    out = []
    for s in range(0, len(mine), step):
        rows, rep = mine[s : s + step], mine_repeat[s : s + step]
        ids, mask, labels = blocks.batch(rows)
        labels[rep] = IGNORE_INDEX  # a wrapped-in repeat: forwarded (DDP needs every process), never counted
        real = rows[~rep]
        out.append(_Chunk(ids, mask, labels, blocks.targets(real) / max(total, 1), int(blocks.mask[real].sum()),
                          blocks.classes_of(rows, ids.shape[1])))
    return out


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
    classes: Sequence[Sequence[int]] | None = None,
) -> TrainResult:
    """Train `model` on `texts` with `loss`; return the best epoch's checkpoint (see module doc). With
    `classes` (per text, one small integer per token), `TrainResult.tally` holds the loss's mask per class.

    With `out_dir`, the best checkpoint is saved there (safetensors + tokenizer, plus ``train.json``
    with the config, the loss and the history), atomically, by process 0, once training ends.

    The loop is written out here, down to the step that calls the loss (`_backward`), so that a reader
    follows a stage of the protocol to its loss in a few calls.
    """
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    config = config or TrainConfig()
    _check_window(model, tokenizer, config)
    checked = as_checked(loss)
    out = check_out_dir(out_dir)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    train_blocks, val_blocks = prepare(tokenizer, texts, val_texts, config, generator, classes)

    dist = Dist.start(config.device)
    if config.batch_size % dist.world:
        raise FortifaiError(f"batch_size={config.batch_size} is not divisible by the {dist.world} processes")
    model.to(dist.device)
    bf16 = use_bf16(config, dist.device, model)
    with _checkpointing(model, config):
        model.train()
        net = _distributed(model, dist)
        try:
            micro_per_epoch = math.ceil((len(train_blocks) + (-len(train_blocks)) % dist.world) / config.batch_size)
            total_steps = math.ceil(micro_per_epoch / config.grad_accum) * config.epochs
            optimizer = optimizer_for(model, config)
            scheduler = get_scheduler(SCHEDULES[config.schedule], optimizer, warmup_steps(config, total_steps),
                                      total_steps)
            eval_batch = max(1, (config.eval_batch_size or config.batch_size) // dist.world)
            if config.per_device_batch_size:
                eval_batch = min(eval_batch, config.per_device_batch_size)
            history: list[dict[str, Any]] = []
            best_state, best_val, best_epoch = None, math.inf, config.epochs
            tally = None
            if train_blocks.classes is not None:
                tally = TokenTally.empty(int(train_blocks.classes.max()) + 1, config.epochs)
            step = 0
            for epoch in range(1, config.epochs + 1):
                threads.refresh()  # a long run adapts to neighbours that come and go (a no-op unless the policy set it)
                order, repeat = epoch_order(len(train_blocks), dist.world, generator)
                batches = list(zip(order.split(config.batch_size), repeat.split(config.batch_size)))
                sums = {"loss": 0.0, "masked_fraction": 0.0, "mean_p_correct": 0.0, "tokens": 0.0}
                t0 = time.perf_counter()
                bar = tqdm(total=len(batches), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                           disable=not (progress and dist.main), leave=False, dynamic_ncols=True)
                for g in range(0, len(batches), config.grad_accum):  # one optimizer step per group of batches
                    group = batches[g : g + config.grad_accum]
                    for i, (index, rep) in enumerate(group):
                        chunks = _chunks(train_blocks, index, rep, dist, config.per_device_batch_size)
                        for c, chunk in enumerate(chunks):
                            sync = i == len(group) - 1 and c == len(chunks) - 1
                            with (net.no_sync() if dist.world > 1 and not sync else contextlib.nullcontext()):
                                value = _backward(net, chunk, checked, dist, bf16, len(group),
                                                  f"epoch {epoch} step {step + 1}", tally, epoch)
                            sums["loss"] += value["loss"] * chunk.share
                            for key in STATS:
                                sums[key] += value[key] * chunk.share
                            sums["tokens"] += chunk.tokens
                        bar.update(1)
                        bar.set_postfix(loss=f"{value['loss']:.4f}", refresh=False)
                    if config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                bar.close()
                train_seconds = time.perf_counter() - t0
                summed = dist.sum([sums["loss"], sums["masked_fraction"], sums["mean_p_correct"], sums["tokens"]])
                val_loss = evaluate(model, val_blocks, eval_batch, dist, bf16) if val_blocks is not None else None
                row = epoch_row(epoch, summed, len(batches), val_loss, train_seconds, step,
                                scheduler.get_last_lr()[0], t0)
                history.append(row)
                if progress and dist.main:
                    tqdm.write(format_row(row, config.epochs))
                if val_loss is not None and val_loss < best_val:
                    # A copy on the training device: cheap for the tiny model, one extra model on a GPU.
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best_val, best_epoch = val_loss, epoch
        finally:
            del net  # the DDP wrapper (and its hold on the process group) goes now, not at some later collection

    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if tally is not None:
        tally = tally.summed(dist)
        tally = tally if tally.counts.sum() > 0 else None  # the loss reported no mask (a plain function)
    result = TrainResult(model=model, history=history, best_epoch=best_epoch, seconds=time.perf_counter() - start,
                         best_val_loss=None if best_state is None else best_val, loss=checked.describe(),
                         tally=tally, out_dir=out)
    if out is not None:
        dist.on_main(save_run, result, tokenizer, config, out, progress)
    return result


def epoch_row(epoch: int, sums: list[float], micro: int, val_loss: float | None, train_seconds: float, step: int,
              lr: float, t0: float) -> dict[str, Any]:
    """An epoch's line of the history, from its sums over the processes (loss, masked fraction, mean
    p(correct), each weighted by its chunks' shares, and tokens) and its `micro` batches."""
    loss_sum, mf, pc, tokens = sums
    return {
        "epoch": epoch,
        "train_loss": loss_sum / micro,
        "val_loss": val_loss,
        "masked_fraction": mf / micro,
        "mean_p_correct": pc / micro,
        "tokens_per_s": tokens / train_seconds,
        "tokens": int(tokens),
        "steps": step,
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }


def _check_window(model, tokenizer, config: TrainConfig) -> None:
    """Rows are `block_size` tokens (a longer text is cut into blocks, or to its first block without
    packing); a row longer than the model's window has positions the model has no embedding for."""
    window = model_window(model, tokenizer)
    if config.block_size > window:
        raise FortifaiError(f"train.block_size={config.block_size} is longer than the model's {window}-token "
                            "window: lower train.block_size")


def _distributed(model, dist: Dist):
    """The model as DistributedDataParallel across the processes; the model itself in one process."""
    if dist.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)


@contextlib.contextmanager
def _checkpointing(model, config: TrainConfig):
    """Activation checkpointing for the run (transformers 5 calls it activation_checkpointing_*, 4 gradient_*)."""
    if not config.gradient_checkpointing:
        yield
        return
    # Non-reentrant checkpointing works with DDP and with inputs that need no gradient.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        raise FortifaiError(f"gradient_checkpointing: {type(model).__name__} is not a Hugging Face model")
    try:
        yield
    finally:
        if hasattr(model, "activation_checkpointing_disable"):
            model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_disable()


def _backward(net, chunk: _Chunk, checked, dist: Dist, bf16: bool, group: int, where: str,
              tally: TokenTally | None = None, epoch: int = 0) -> dict[str, float]:
    """Forward and backward of one chunk, its loss weighted by its token share (see module doc); the loss's
    value and statistics. An error in any process's chunk (a NaN) stops every process with its message."""
    device = dist.device
    ids, mask, labels = chunk.ids.to(device), chunk.mask.to(device), chunk.labels.to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = net(input_ids=ids, attention_mask=mask).logits
    error, result = None, None
    if chunk.share > 0:
        try:
            result = checked(logits, labels)
        except FortifaiError as exc:
            error = f"{where}: {exc}"
    error = dist.agree(error)
    if error is not None:
        raise FortifaiError(error)
    if result is None:  # only repeats: no targets, but DDP needs this process's (zero) gradient
        (logits.sum() * 0.0).backward()
        return {"loss": 0.0, **{k: 0.0 for k in STATS}}
    try:
        (result.loss * (chunk.share * dist.world / group)).backward()
    except RuntimeError as exc:  # e.g. a loss that changed in place a tensor its own gradient needs
        raise FortifaiError(f"{where}: loss {checked.spec!r}: its backward pass failed: {first_sentence(exc)}"
                            + INPLACE_HINT * ("inplace" in str(exc))) from exc
    if tally is not None and chunk.classes is not None and result.kept is not None:
        tally.add(epoch, chunk.classes, labels, result.kept, result.logp)
    return {"loss": result.loss.item(), **{k: float(result.stats.get(k, math.nan)) for k in STATS}}


def format_row(row: dict[str, Any], epochs: int) -> str:
    val = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f}"
    return (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  val_loss {val}  "
            f"masked {row['masked_fraction']:.3f}  p_correct {row['mean_p_correct']:.3f}  "
            f"{row['tokens_per_s']:,.0f} tok/s")
