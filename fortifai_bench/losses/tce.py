"""Truncated cross-entropy (the ForTIFAI paper's loss, `--loss tce:0.9`): no gradient from confident tokens."""

from __future__ import annotations

import math

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses.base import Loss, check_number, unchanged


class TCE(Loss):
    """Truncated cross-entropy: CE times the detached mask ``1[p_t <= gamma]``.

    Tokens the model already predicts with probability above ``gamma`` (likely its own output)
    get no gradient at all. ``normalize`` chooses the denominator:

    * ``"all"`` (default): divide by every real token, as the authors' code does (`clipped_loss` in
      src/losses.py of github.com/pedramaghazadeh/ForTIFAI: the masked CE with `.mean()`). This is the paper's
      loss, so ``tce:0.9`` on a leaderboard means it. Masking shrinks the *gradient* by the kept
      fraction, but hardly the AdamW *step*, which divides by the gradient's running RMS. Measured
      (``benchmarks/tce_step_size.py``, tiny GPT-2 on 32 memorized facts paragraphs, AdamW lr 5e-3,
      2026-12-01): TCE(0.9) masked 90.7% of tokens; its gradient norm was 0.094x that of ``"kept"``,
      its update 0.98x after one step and 0.95x after 8 (0.997x and 0.97x that of CE). The same CE loss
      scaled by 1/25 gave an update 0.92x as large on that memorized state (AdamW's eps matters only
      for coordinates whose gradient is below ~25 eps) and 0.995x on the untrained model. Only under
      plain SGD would the step shrink with the gradient.
    * ``"kept"``: divide by the unmasked tokens only (the same direction as ``"all"`` within a batch).
    """

    def __init__(self, gamma: float = 0.9, normalize: str = "all"):
        gamma = check_number("TCE", "gamma", gamma)
        if not 0.0 < gamma:
            raise FortifaiError(f"TCE gamma must be > 0, got {gamma}")
        if normalize not in ("all", "kept"):
            raise FortifaiError(f"TCE normalize must be 'all' or 'kept', got {normalize!r}")
        self.gamma, self.normalize = gamma, normalize

    def reduce(self, logp, valid):
        # gamma >= 1 keeps every token, exactly CE: p_t <= 1 always holds.
        kept = valid & (logp.detach() <= math.log(self.gamma)) if self.gamma < 1 else valid
        denom = (kept if self.normalize == "kept" else valid).sum().clamp_min(1)
        return -(logp * kept).sum() / denom, kept

    def config(self):
        return {"gamma": self.gamma, "normalize": self.normalize}

    def keeps_every_token(self):
        return self.gamma >= 1 and unchanged(self, TCE)
