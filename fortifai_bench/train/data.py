"""Training data: texts -> token ids -> blocks of `block_size` (packed) or one text per row.

* Packing: the token ids of all texts are concatenated and cut into blocks of ``block_size``. If the
  tokenizer does not itself start each text with BOS, EOS is appended after each text so texts stay
  separated. The last, partial block is kept (padded, with its padding masked out of attention and
  labels) so every text is trained on: a fact corpus loses no paragraph to packing. The pad id's
  value never matters (padding sits at the end of a causal block, masked everywhere), so a tokenizer
  without a pad token trains fine: we use pad, else eos, else 0.
* ``packing=False``: one text per row, truncated to ``block_size`` and padded.
* Labels are the input ids (``-100`` on padding); the loss shifts them (see `fortifai_bench.losses`).
* Validation texts: ``val_texts`` if given, else a seeded ``val_fraction`` of the texts (whole texts,
  so no paragraph is split between training and validation), else none.
* Token classes (optional): one small integer per token of each training text (as the tokenizer encodes
  it alone), carried through packing or rows into ``Blocks.classes`` (0 on padding and separators), so
  the trainer can tally the loss's mask per class of token (`train.loop`; the collapse protocol's
  classes: regenerated-corrupted, regenerated-faithful, fresh real, `collapse.corruption`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.train.config import TrainConfig

IGNORE_INDEX = -100


@dataclass
class Blocks:
    """Packed training data: ``ids`` and ``mask`` of shape [n_blocks, block_size], and optionally each
    token's class (``classes``, same shape; 0 where no class was given)."""

    ids: torch.Tensor
    mask: torch.Tensor
    classes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.ids.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.ids[index], self.mask[index]
        # Padding sits at the end of each row and is masked everywhere, so columns past the batch's
        # longest row change nothing but cost compute (one fact paragraph fills ~35 of 128 columns).
        width = max(2, int(mask.sum(dim=1).max())) if len(index) else ids.shape[1]
        ids, mask = ids[:, :width], mask[:, :width]
        return ids, mask, ids.masked_fill(mask == 0, IGNORE_INDEX)

    def classes_of(self, index: torch.Tensor, width: int) -> torch.Tensor | None:
        """The token classes of rows `index`, cut to the `width` that `batch` gave them."""
        return None if self.classes is None else self.classes[index, :width]

    def targets(self, index: torch.Tensor) -> int:
        """How many next-token targets the rows `index` hold (every real token after a row's first)."""
        return int((self.mask[index, 1:] != 0).sum())


def tokenize(tokenizer, texts: Sequence[str], classes: Sequence[Sequence[int]] | None = None):
    """All texts as one stream of ids, each encoded with the tokenizer's defaults (see module doc); with
    `classes`, (ids, their classes) as two aligned streams (a separator's class is 0)."""
    encoded = tokenizer(list(texts), verbose=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    starts_with_bos = bos is not None and all(ids[:1] == [bos] for ids in encoded if ids)
    sep = [] if starts_with_bos or eos is None else [eos]
    stream = [t for ids in encoded for t in (*ids, *sep)]
    if classes is None:
        return stream
    _check_classes(encoded, classes)
    return stream, [c for cs in classes for c in (*cs, *[0] * len(sep))]


def _check_classes(encoded: list[list[int]], classes: Sequence[Sequence[int]]) -> None:
    bad = next((i for i, (ids, cs) in enumerate(zip(encoded, classes)) if len(ids) != len(cs)), None)
    if len(encoded) != len(classes) or bad is not None:
        what = (f"{len(classes)} class lists for {len(encoded)} texts" if len(encoded) != len(classes) else
                f"text {bad} has {len(encoded[bad])} tokens and {len(classes[bad])} classes")
        raise FortifaiError(f"token classes do not match the training texts: {what}")


def pack(stream: list[int], block_size: int, pad_id: int, classes: list[int] | None = None) -> Blocks:
    """Cut a token stream into blocks; the partial tail (>= 2 tokens, so it has a target) is padded."""
    n_full, tail = divmod(len(stream), block_size)
    if tail < 2:
        stream, tail = stream[: n_full * block_size], 0
    n = n_full + (1 if tail else 0)
    ids = torch.full((n * block_size,), pad_id, dtype=torch.long)
    ids[: len(stream)] = torch.tensor(stream, dtype=torch.long)
    mask = torch.zeros(n * block_size, dtype=torch.long)
    mask[: len(stream)] = 1
    cls = None
    if classes is not None:
        cls = torch.zeros(n * block_size, dtype=torch.long)
        cls[: len(stream)] = torch.tensor(classes[: len(stream)], dtype=torch.long)
        cls = cls.view(n, block_size)
    return Blocks(ids.view(n, block_size), mask.view(n, block_size), cls)


def rows(tokenizer, texts: Sequence[str], block_size: int, pad_id: int,
         classes: Sequence[Sequence[int]] | None = None) -> Blocks:
    """One text per row, truncated to ``block_size`` and padded (``packing=False``)."""
    encoded = tokenizer(list(texts), verbose=False)["input_ids"]
    if classes is not None:
        _check_classes(encoded, classes)
    keep = [i for i, ids in enumerate(encoded) if len(ids[:block_size]) >= 2]  # a row needs at least one target
    ids = torch.full((len(keep), block_size), pad_id, dtype=torch.long)
    mask = torch.zeros((len(keep), block_size), dtype=torch.long)
    cls = None if classes is None else torch.zeros((len(keep), block_size), dtype=torch.long)
    for i, j in enumerate(keep):
        row = encoded[j][:block_size]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
        if cls is not None:
            cls[i, : len(row)] = torch.tensor(list(classes[j][:block_size]), dtype=torch.long)
    return Blocks(ids, mask, cls)


def pad_id(tokenizer) -> int:
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


def prepare(tokenizer, texts, val_texts, config: TrainConfig, generator,
            classes: Sequence[Sequence[int]] | None = None) -> tuple[Blocks, Blocks | None]:
    """Training and validation blocks from texts (see module doc); empty or too short input is one line.
    `classes` (one list per text, see module doc) follow their texts into the training blocks."""
    texts = list(texts or [])
    if classes is not None:  # checked against the texts as given, so an error names the caller's index
        _check_classes(tokenizer(texts, verbose=False)["input_ids"] if texts else [], classes)
    items = [(t, None if classes is None else classes[i]) for i, t in enumerate(texts) if t and t.strip()]
    if not items:
        raise FortifaiError("no training texts: got 0 non-empty texts")
    if val_texts is not None:
        val_texts = [t for t in val_texts if t and t.strip()]
        if not val_texts:
            raise FortifaiError("val_texts was given but holds no non-empty text")
    else:
        items, held = split_texts(items, config.val_fraction, generator)
        val_texts = [t for t, _ in held]
    texts = [t for t, _ in items]
    classes = None if classes is None else [c for _, c in items]
    pad = pad_id(tokenizer)
    if not config.packing:
        train_blocks = rows(tokenizer, texts, config.block_size, pad, classes)
        if len(train_blocks) == 0:
            raise FortifaiError(f"none of the {len(texts)} training texts has 2 or more tokens")
        return train_blocks, (rows(tokenizer, val_texts, config.block_size, pad) if val_texts else None)
    stream, stream_classes = tokenize(tokenizer, texts, classes) if classes is not None else \
        (tokenize(tokenizer, texts), None)
    if len(stream) < config.block_size:
        raise FortifaiError(f"the {len(texts)} training texts give {len(stream)} tokens, fewer than one block of "
                            f"block_size={config.block_size}: lower the block size or add texts")
    train_blocks = pack(stream, config.block_size, pad, stream_classes)
    val_blocks = None
    if val_texts:
        val_stream = tokenize(tokenizer, val_texts)
        if len(val_stream) < 2:
            raise FortifaiError(f"the {len(val_texts)} validation texts give {len(val_stream)} token(s); need >= 2")
        val_blocks = pack(val_stream, config.block_size, pad)
    return train_blocks, val_blocks
