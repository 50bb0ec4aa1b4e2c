"""The reference trainer: one stage of the collapse protocol, with any loss, on any causal LM.

`train(model, tokenizer, texts, loss, config)` tokenizes the texts with the tokenizer's defaults (the tiny
tokenizer prepends BOS), packs them into blocks of ``block_size`` tokens (or one text per row), and trains
with AdamW and a warmup + cosine/linear/constant schedule, gradient accumulation and clipping. After every
epoch it measures the validation loss and keeps the best checkpoint (the paper trains 10 epochs per stage
and keeps the best). It returns that checkpoint loaded into the model and a per-epoch history that
includes the loss's own statistics (masked fraction, mean p(correct)). Under ``torchrun`` it trains with
DistributedDataParallel; the step is the same whatever the number of processes.

The layers, one module each:

    config.py   TrainConfig (no torch needed: a collapse task's `train:` section is this dataclass)
    data.py     texts -> blocks: packing, one text per row, held-out texts
    loop.py     train(), evaluate(): the loop, DDP, token-weighted accumulation, best epoch
    save.py     the best checkpoint and train.json, atomically
    ../cli/train.py     `fortifai-bench train` / `python -m fortifai_bench.train`
    ../distributed.py   the process group and its collectives (shared with the collapse protocol)

Names are loaded lazily, so `from fortifai_bench.train.config import TrainConfig` imports no torch.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "config", "SCHEDULES": "config",
    "Blocks": "data", "IGNORE_INDEX": "data", "pack": "data", "rows": "data", "tokenize": "data",
    "split_texts": "data", "prepare": "data",
    "TrainResult": "loop", "train": "loop", "evaluate": "loop", "format_row": "loop",
    "save_run": "save",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"fortifai_bench.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fortifai_bench.train' has no attribute {name!r}")


__all__ = list(_EXPORTS)
