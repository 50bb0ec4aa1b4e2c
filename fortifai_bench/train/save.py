"""Saving a training run: the best checkpoint (safetensors + tokenizer) and ``train.json``, atomically."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fortifai_bench.io import atomic_dir, write_json
from fortifai_bench.models import save_model
from fortifai_bench.train.config import TrainConfig


def save_run(result, tokenizer, config: TrainConfig, out: Path, progress: bool) -> None:
    """Model, tokenizer and ``train.json`` appear together or not at all (rank 0 calls this)."""
    from transformers.utils import logging as hf_logging


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
