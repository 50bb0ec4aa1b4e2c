"""Focal loss (Lin et al., 2017; `--loss focal:2`): confident tokens down-weighted rather than masked."""

from __future__ import annotations

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses.base import Loss, check_flag, check_number, unchanged


class Focal(Loss):
    """Focal loss ``-(1 - p_t)^gamma log p_t``, averaged over real tokens.

    ``detach_weight=True`` treats ``(1 - p_t)^gamma`` as a constant (a soft version of TCE's mask);
    the default differentiates through it, as in Lin et al. (2017).
    """

    def __init__(self, gamma: float = 2.0, detach_weight: bool = False):
        gamma = check_number("Focal", "gamma", gamma)
        if gamma < 0:
            raise FortifaiError(f"Focal gamma must be >= 0, got {gamma}")
        self.gamma, self.detach_weight = gamma, check_flag("Focal", "detach_weight", detach_weight)

    def reduce(self, logp, valid):
        p = logp.detach().exp() if self.detach_weight else logp.exp()
        # clamp: d/dx x^g at x = 0 is inf for g < 1 (and 0 * inf for g = 0) -> NaN otherwise
        weight = (1.0 - p).clamp_min(1e-12) ** self.gamma
        return -(weight * logp).sum() / valid.sum().clamp_min(1), valid

    def config(self):
        return {"gamma": self.gamma, "detach_weight": self.detach_weight}

    def keeps_every_token(self):  # it weights confident tokens down, it does not mask them
        return unchanged(self, Focal)
