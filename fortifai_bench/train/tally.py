"""`TokenTally`: the loss's mask and confidence per class of target token, as the trainer applied them.

The trainer (`train.loop`) adds every chunk it trains on when the training texts came with token classes
(`train.data`): the loss's own kept mask and log-probabilities of that very step (train mode, its dropout
draw), so a tally costs a few `bincount`s per step and no forward pass or random draw. What a class means
is the caller's (the collapse protocol's: `collapse.corruption`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fortifai_bench.distributed import Dist
from fortifai_bench.losses import IGNORE_INDEX, shift_labels

BINS = 100  # confidence histogram of the tally: bin b holds p_t in (b / 100, (b + 1) / 100] (bin 0 also 0)


@dataclass
class TokenTally:
    """The loss's mask and confidence per class of target token, as training applied them.

    ``counts[c, k, b]``: target tokens of class c, kept (k = 1) or masked (k = 0), with p_t in bin b (`BINS`);
    ``p_sum[c]``: the sum of their p_t; ``epochs[e, c, k]``: the counts of epoch e + 1 alone."""

    counts: torch.Tensor
    p_sum: torch.Tensor
    epochs: torch.Tensor

    @classmethod
    def empty(cls, n_classes: int, epochs: int) -> "TokenTally":
        return cls(torch.zeros(n_classes, 2, BINS, dtype=torch.long), torch.zeros(n_classes, dtype=torch.float64),
                   torch.zeros(epochs, n_classes, 2, dtype=torch.long))

    @torch.no_grad()
    def add(self, epoch: int, classes: torch.Tensor, labels: torch.Tensor, kept: torch.Tensor,
            logp: torch.Tensor) -> None:
        """One chunk: its token classes and labels [rows, T] and the loss's flat kept mask and logp."""
        n = self.p_sum.numel()
        target = shift_labels(classes.to(kept.device), 0).reshape(-1)  # the class of the token each position predicts
        real = (shift_labels(labels, IGNORE_INDEX).reshape(-1) != IGNORE_INDEX) & (target > 0)
        c, k, p = target[real], kept[real].long(), logp[real].float().exp()
        b = (torch.ceil(p * BINS).long() - 1).clamp(0, BINS - 1)
        self.counts += torch.bincount((c * 2 + k) * BINS + b, minlength=n * 2 * BINS).view(n, 2, BINS).cpu()
        self.p_sum += torch.bincount(c, weights=p.double(), minlength=n).cpu()
        self.epochs[epoch - 1] += torch.bincount(c * 2 + k, minlength=n * 2).view(n, 2).cpu()

    def summed(self, dist: Dist) -> "TokenTally":
        """Added over processes."""
        if dist.world == 1:
            return self
        parts = [t.double().flatten() for t in (self.counts, self.p_sum, self.epochs)]
        total = torch.tensor(dist.sum(torch.cat(parts).tolist()), dtype=torch.float64)
        counts, p_sum, epochs = total.split([t.numel() for t in parts])
        return TokenTally(counts.round().long().view_as(self.counts), p_sum, epochs.round().long().view_as(self.epochs))
