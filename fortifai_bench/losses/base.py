"""The interface every loss implements (`Loss`, returning a `LossOutput`), and its shared checks.

A subclass overrides `Loss.reduce` (a function of ``logp`` per token, see `logprobs`), or only
`Loss.forward` when it needs the full logits. `FunctionLoss` gives a plain ``f(logits, labels)`` the same
statistics. `check_number` and `check_flag` validate constructor arguments with one-line errors naming the loss.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses.logprobs import IGNORE_INDEX, token_logprobs


@dataclass
class LossOutput:
    """A scalar loss and this batch's statistics (detached scalars). A `Loss` also gives, per target token
    (flat, as `token_logprobs` returns them), the mask it applied (`kept`: which tokens got gradient) and
    ``logp`` (detached): what the trainer tallies per token class (`train.loop`); None where unknown."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    kept: torch.Tensor | None = None
    logp: torch.Tensor | None = None


def _stats(logp: torch.Tensor, valid: torch.Tensor, kept: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        n = valid.sum().clamp_min(1)
        return {
            "masked_fraction": 1.0 - (kept & valid).sum() / n,
            "mean_p_correct": (logp.exp() * valid).sum() / n,
        }


class Loss:
    """Base class for every loss. Subclasses override `reduce` (a function of ``logp`` per token), or
    `forward` alone when they need the full logits; `load_loss` refuses a subclass that does neither."""

    ignore_index: int = IGNORE_INDEX

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return self.forward(logits, labels)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logp, valid = token_logprobs(logits, labels, self.ignore_index)
        result = self.reduce(logp, valid)
        # (loss, kept) as documented; a bare loss means every real token got gradient.
        if isinstance(result, tuple) and len(result) == 2:
            loss, kept = result
        elif isinstance(result, (tuple, list)):
            raise FortifaiError(f"{type(self).__name__}.reduce returned {len(result)} values, expected "
                                "(scalar loss, tokens that got gradient)")
        else:
            loss, kept = result, valid
        if not isinstance(kept, torch.Tensor) or kept.shape != valid.shape:
            raise FortifaiError(f"{type(self).__name__}.reduce returned a kept mask of "
                                f"{describe_value(kept)}, expected a bool tensor of shape {tuple(valid.shape)}")
        kept = kept.detach().bool() & valid
        return LossOutput(loss, _stats(logp.detach(), valid, kept), kept, logp.detach())

    def reduce(self, logp: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From per-token ``logp`` (with gradient) and ``valid``, return (scalar loss, tokens that got gradient)."""
        raise NotImplementedError(f"{type(self).__name__} overrides neither reduce nor forward")

    def config(self) -> dict[str, Any]:
        """Constructor arguments, recorded in run provenance and leaderboard entries."""
        return {}

    def keeps_every_token(self) -> bool:
        """True when the loss gives every real token gradient whatever the model predicts (CE, focal, TCE with
        gamma >= 1): its mask is then known without running the model (`collapse.corruption`). The default
        promises nothing, so a loss's mask is measured."""
        return False


def unchanged(loss: Loss, cls: type) -> bool:
    """`loss` computes exactly what `cls` does: a subclass that overrides `reduce` or `forward` may mask
    differently, so it inherits none of `cls`'s promises about its mask."""
    return type(loss).reduce is cls.reduce and type(loss).forward is cls.forward


def overrides_loss(cls: type) -> bool:
    return cls.forward is not Loss.forward or cls.reduce is not Loss.reduce


def check_number(owner: str, name: str, value: Any) -> float:
    """A finite real number (an int or float, not a bool or text): the checks name the loss and field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FortifaiError(f"{owner} {name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise FortifaiError(f"{owner} {name} must be a finite number, got {value}")
    return value


def check_flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):  # bool("false") is True: refuse text rather than guess
        raise FortifaiError(f"{owner} {name} must be true or false, got {value!r} ({type(value).__name__})")
    return value


class FunctionLoss(Loss):
    """Wraps a plain ``f(logits, labels) -> Tensor`` so it reports the same statistics."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self.fn = fn

    def forward(self, logits, labels):
        loss = self.fn(logits, labels)
        if isinstance(loss, LossOutput):  # a function that returns what a Loss returns: keep its statistics
            return loss
        with torch.no_grad():
            logp, valid = token_logprobs(logits.detach(), labels, self.ignore_index)
        return LossOutput(loss, _stats(logp, valid, valid))


def describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (int, float)):
        return f"a Python {type(value).__name__} ({value!r})"
    return f"{type(value).__name__}"
