"""`TrainConfig`: everything that decides a training run. Importing it needs neither torch nor
transformers, so a collapse task (whose ``train:`` section *is* this dataclass) validates without them.

The defaults are the standalone trainer's (`fortifai-bench train`); the collapse protocol's own choices
are stated once, in ``fortifai_bench/collapse/tasks/_base.yaml``. Every field's help text below is also
its ``--flag`` help (`fortifai_bench.configs.add_arguments`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fortifai_bench.errors import FortifaiError

SCHEDULES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    """Recorded in ``train.json`` and in a collapse run's config (its hash)."""

    epochs: int = _help("passes over the training texts", 3)
    lr: float = _help("AdamW peak learning rate", 3e-4)
    batch_size: int = _help("blocks per forward pass summed over all processes; one optimizer step sees "
                            "batch_size x grad_accum blocks whatever the number of processes", 16)
    per_device_batch_size: Optional[int] = _help(
        "at most this many blocks per forward pass on one device: a larger share is split into chunks whose "
        "gradients accumulate, so the step is the same (null: batch_size / processes in one pass)", None)
    block_size: int = _help("tokens per block (row)", 64)
    grad_accum: int = _help("forward passes of batch_size blocks per optimizer step", 1)
    warmup: float | int = _help("warmup: a fraction of the optimizer steps in [0, 1) (0.1) or a number of steps (100)",
                                0.1)
    schedule: str = _help("learning-rate schedule after the warmup: cosine, linear or constant", "cosine")
    weight_decay: float = _help("AdamW weight decay (not on biases and norms)", 0.0)
    val_fraction: float = _help("held-out share of whole texts for the validation loss when no validation "
                                "texts are given; 0: none, the last epoch is kept", 0.1)
    seed: int = _help("seed of the data order, the held-out texts and dropout", 0)
    bf16: bool | str = _help("bf16 autocast: auto (on CUDA devices that support it), true (required) or false",
                             "auto")
    max_grad_norm: Optional[float] = _help("gradient clipping norm; 0: none", 1.0)
    device: str = _help("auto, cpu, cuda or cuda:N (under torchrun: each process's own GPU)", "auto")
    eval_batch_size: Optional[int] = _help("blocks per validation forward pass, all processes (null: batch_size)",
                                           None)
    # True: texts are concatenated and cut into blocks (efficient for long text). False: one text per row,
    # truncated to block_size and padded, so every text starts at position 0 after BOS, as KR questions do.
    # A tiny GPT-2 learns short fact paragraphs only this way (KR 0.96 vs 0.59 packed: BENCHMARKS.md, Corpora).
    packing: bool = _help("concatenate the texts and cut blocks (true), or one text per row from position 0 "
                          "(false)", True)
    gradient_checkpointing: bool = _help("recompute activations in the backward pass (less memory, ~30% "
                                         "more compute; Hugging Face models only)", False)

    def __post_init__(self):
        def need(ok: bool, what: str):
            if not ok:
                raise FortifaiError(f"train config: {what}")

        def whole(name: str, low: int):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= low,
                 f"{name} must be an integer >= {low}, got {value!r}")

        whole("epochs", 1)
        need(isinstance(self.lr, (int, float)) and self.lr > 0, f"lr must be > 0, got {self.lr!r}")
        whole("batch_size", 1)
        whole("block_size", 2)
        whole("grad_accum", 1)
        if self.per_device_batch_size is not None:
            whole("per_device_batch_size", 1)
        if self.eval_batch_size is not None:
            whole("eval_batch_size", 1)
        if isinstance(self.warmup, float):
            need(0 <= self.warmup < 1, f"warmup as a float is a fraction in [0, 1), got {self.warmup!r}")
        else:
            need(isinstance(self.warmup, int) and self.warmup >= 0,
                 f"warmup must be a step count >= 0 or a fraction, got {self.warmup!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        need(self.bf16 in ("auto", True, False), f"bf16 must be 'auto', true or false, got {self.bf16!r}")
        need(self.max_grad_norm is None or self.max_grad_norm >= 0,
             f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        need(isinstance(self.device, str) and (self.device == "auto"
                                               or self.device.split(":")[0] in ("cpu", "cuda", "mps")),
             f"unknown device {self.device!r}")
        need(isinstance(self.packing, bool), f"packing must be true or false, got {self.packing!r}")
        need(isinstance(self.gradient_checkpointing, bool),
             f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")

    def micro_chunks(self, world: int) -> int:
        """Forward passes per device for one batch of `batch_size` blocks (1 unless per_device_batch_size
        caps the share)."""
        share = -(-self.batch_size // world)
        cap = self.per_device_batch_size
        return 1 if cap is None or cap >= share else -(-share // cap)
