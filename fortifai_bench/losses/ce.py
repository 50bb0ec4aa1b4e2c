"""Cross-entropy, the baseline every other loss is compared with (`--loss ce`)."""

from __future__ import annotations

from fortifai_bench.losses.base import Loss, unchanged


class CE(Loss):
    """Plain cross-entropy, averaged over real tokens."""

    def reduce(self, logp, valid):
        return -logp.sum() / valid.sum().clamp_min(1), valid

    def keeps_every_token(self):
        return unchanged(self, CE)
