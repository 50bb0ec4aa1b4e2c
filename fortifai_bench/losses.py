"""Confidence-aware losses behind one interface: CE, Truncated CE (TCE) and Focal.

The one convention, decided here for every loss
------------------------------------------------
A loss is called as ``loss(logits, labels) -> LossOutput`` with

* ``logits``: the model's output, shape ``[..., T, V]`` (any float dtype; computed in fp32),
* ``labels``: shape ``[..., T]``, in the Hugging Face convention: the *input ids themselves*, not
  shifted, with positions that must not count set to ``-100`` (``IGNORE_INDEX``).

The loss shifts the *labels* left by one (position t is scored on token t+1) and never slices the
logits, so no copy of the ``tokens x vocab`` tensor is made. The same holds for plain functions
``f(logits, labels) -> Tensor`` given as a loss spec: they receive the same unshifted pair.

Memory
------
Every built-in loss is a function of one number per token, the log-probability of the correct
token ``logp_t``. `token_logprobs` computes it with a custom autograd function that walks over the
tokens in chunks: the forward pass keeps only a log-sum-exp per token, and the backward pass
recomputes the softmax chunk by chunk straight into the logits' gradient. Beyond the logits and
their gradient, a loss therefore holds one chunk (``chunk_tokens x vocab``), not the full
``log_softmax`` that ``F.log_softmax(...).gather(...)`` keeps alive. Because the gradient of any
function of ``logp_t`` is ``dL/dlogp_t * (onehot - softmax)``, CE, TCE and Focal (with or without a
detached weight) all get exact gradients from the same kernel.

Loss specs
----------
``ce`` | ``tce`` | ``tce:0.9`` | ``focal`` | ``focal:2`` | ``package.module:Name``, plus keyword
arguments from ``--loss-args key=value[,key=value]`` (values parsed as YAML scalars). ``Name`` may
be a `Loss` subclass (instantiated with the arguments), a `Loss` instance, or a plain function
``f(logits, labels) -> scalar Tensor`` (arguments bound as keywords).
"""

from __future__ import annotations

import abc
import functools
import importlib
import inspect
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import yaml

from fortifai_bench.errors import FortifaiError

IGNORE_INDEX = -100
CHUNK_TOKENS = 1024  # rows of the softmax held at once; 1024 x 128,256 x 4 B = 0.5 GB at Llama 3 scale


class _TargetLogProb(torch.autograd.Function):
    """log p(target) per row of a ``[N, V]`` logits matrix, chunked over rows (see module doc)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        for s in range(0, n, chunk):
            x = logits[s : s + chunk].float()
            lse[s : s + chunk] = torch.logsumexp(x, dim=-1)
            out[s : s + chunk] = x.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(logits, targets, lse)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        g = grad_out.float()
        for s in range(0, logits.shape[0], ctx.chunk):
            e = s + ctx.chunk
            # d logp_y / d z = onehot(y) - softmax(z); scaled by the upstream gradient g.
            block = torch.sub(logits[s:e].float(), lse[s:e, None]).exp_().mul_(-g[s:e, None])
            block.scatter_add_(1, targets[s:e, None], g[s:e, None])
            grad[s:e] = block
        return grad, None, None


def shift_labels(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Targets aligned with the logits: position t is scored on token t+1; the last position on nothing."""
    pad = torch.full_like(labels[..., :1], ignore_index)
    return torch.cat([labels[..., 1:], pad], dim=-1)


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX, chunk: int = CHUNK_TOKENS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(logp, valid)``, both flat ``[N]``: log p of each next token, and which tokens count.

    ``logp`` is 0 where ``valid`` is False, and no gradient flows there.
    """
    if logits.shape[:-1] != labels.shape:
        raise FortifaiError(
            f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree: expected [..., T, V] and [..., T]"
        )
    targets = shift_labels(labels, ignore_index).reshape(-1)
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    flat = logits.reshape(-1, logits.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    logp = _TargetLogProb.apply(flat, safe, chunk)
    return torch.where(valid, logp, torch.zeros_like(logp)), valid


@dataclass
class LossOutput:
    """A scalar loss and this batch's statistics (detached scalars)."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def _stats(logp: torch.Tensor, valid: torch.Tensor, kept: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        n = valid.sum().clamp_min(1)
        return {
            "masked_fraction": 1.0 - (kept & valid).sum() / n,
            "mean_p_correct": (logp.exp() * valid).sum() / n,
        }


class Loss(abc.ABC):
    """Base class for every loss. Subclasses implement `reduce` (a function of ``logp`` per token),
    or override `forward` entirely when they need the full logits."""

    ignore_index: int = IGNORE_INDEX

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return self.forward(logits, labels)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logp, valid = token_logprobs(logits, labels, self.ignore_index)
        loss, kept = self.reduce(logp, valid)
        return LossOutput(loss, _stats(logp.detach(), valid, kept))

    @abc.abstractmethod
    def reduce(self, logp: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From per-token ``logp`` (with gradient) and ``valid``, return (scalar loss, tokens that got gradient)."""

    def config(self) -> dict[str, Any]:
        """Constructor arguments, recorded in run provenance and leaderboard entries."""
        return {}


class CE(Loss):
    """Plain cross-entropy, averaged over real tokens."""

    def reduce(self, logp, valid):
        return -logp.sum() / valid.sum().clamp_min(1), valid


class TCE(Loss):
    """Truncated cross-entropy: CE times the detached mask ``1[p_t <= gamma]``.

    Tokens the model already predicts with probability above ``gamma`` (likely its own output)
    get no gradient at all. ``normalize`` chooses the denominator:

    * ``"all"`` (default): divide by every real token, as the authors' code does. Masking then
      shrinks the update: on memorized data, where TCE(0.9) masks ~96% of tokens, the step is ~25x
      smaller than CE's. This is the paper's loss, so ``tce:0.9`` on a leaderboard means it.
    * ``"kept"``: divide by the unmasked tokens only: the kept tokens get CE-sized updates.
    """

    def __init__(self, gamma: float = 0.9, normalize: str = "all"):
        if not 0.0 < float(gamma):
            raise FortifaiError(f"TCE gamma must be > 0, got {gamma}")
        if normalize not in ("all", "kept"):
            raise FortifaiError(f"TCE normalize must be 'all' or 'kept', got {normalize!r}")
        self.gamma, self.normalize = float(gamma), normalize

    def reduce(self, logp, valid):
        # gamma >= 1 keeps every token, exactly CE: p_t <= 1 always holds.
        kept = valid & (logp.detach() <= math.log(self.gamma)) if self.gamma < 1 else valid
        denom = (kept if self.normalize == "kept" else valid).sum().clamp_min(1)
        return -(logp * kept).sum() / denom, kept

    def config(self):
        return {"gamma": self.gamma, "normalize": self.normalize}


class Focal(Loss):
    """Focal loss ``-(1 - p_t)^gamma log p_t``, averaged over real tokens.

    ``detach_weight=True`` treats ``(1 - p_t)^gamma`` as a constant (a soft version of TCE's mask);
    the default differentiates through it, as in Lin et al. (2017).
    """

    def __init__(self, gamma: float = 2.0, detach_weight: bool = False):
        if float(gamma) < 0:
            raise FortifaiError(f"Focal gamma must be >= 0, got {gamma}")
        self.gamma, self.detach_weight = float(gamma), bool(detach_weight)

    def reduce(self, logp, valid):
        p = logp.detach().exp() if self.detach_weight else logp.exp()
        # clamp: d/dx x^g at x = 0 is inf for g < 1 (and 0 * inf for g = 0) -> NaN otherwise
        weight = (1.0 - p).clamp_min(1e-12) ** self.gamma
        return -(weight * logp).sum() / valid.sum().clamp_min(1), valid

    def config(self):
        return {"gamma": self.gamma, "detach_weight": self.detach_weight}


class FunctionLoss(Loss):
    """Wraps a plain ``f(logits, labels) -> Tensor`` so it reports the same statistics."""

    def __init__(self, fn: Callable[..., torch.Tensor]):
        self.fn = fn

    def forward(self, logits, labels):
        loss = self.fn(logits, labels)
        with torch.no_grad():
            logp, valid = token_logprobs(logits.detach(), labels, self.ignore_index)
        return LossOutput(loss, _stats(logp, valid, valid))

    def reduce(self, logp, valid):  # pragma: no cover - forward is overridden
        raise NotImplementedError


SHORT_NAMES: dict[str, tuple[type[Loss], str | None]] = {
    # name -> (class, keyword that "name:value" sets)
    "ce": (CE, None),
    "tce": (TCE, "gamma"),
    "focal": (Focal, "gamma"),
}


class CheckedLoss:
    """A loaded loss that checks every result: scalar, finite, with a gradient path.

    Errors name the spec, so a user knows which of several losses misbehaved.
    """

    def __init__(self, spec: str, loss: Loss, args: dict[str, Any]):
        self.spec, self.loss, self.args = spec, loss, args

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        try:
            out = self.loss(logits, labels)
        except FortifaiError:
            raise
        except Exception as exc:  # a user's loss raising: say whose
            raise FortifaiError(f"loss {self.spec!r} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(out, torch.Tensor):
            out = LossOutput(out)
        if not isinstance(out, LossOutput) or not isinstance(out.loss, torch.Tensor):
            raise FortifaiError(f"loss {self.spec!r} returned {type(out).__name__}, expected a scalar Tensor")
        if out.loss.dim() != 0:
            raise FortifaiError(f"loss {self.spec!r} returned shape {tuple(out.loss.shape)}, expected a scalar")
        if logits.requires_grad and out.loss.grad_fn is None:
            raise FortifaiError(f"loss {self.spec!r} returned a tensor with no gradient path to the logits")
        if not torch.isfinite(out.loss.detach()):
            raise FortifaiError(f"loss {self.spec!r} returned {out.loss.item()} (not finite)")
        return out

    def describe(self) -> dict[str, Any]:
        """What a run records about its loss: the spec, the resolved class and its arguments."""
        target = self.loss.fn if isinstance(self.loss, FunctionLoss) else type(self.loss)
        target = getattr(target, "func", target)  # a function given keyword arguments is a functools.partial
        if not hasattr(target, "__qualname__"):  # an instance of a user's callable class
            target = type(target)
        return {
            "spec": self.spec,
            "target": f"{target.__module__}:{target.__qualname__}",
            "args": {**self.loss.config(), **self.args},
        }


def parse_loss_args(text: str | list[str] | None) -> dict[str, Any]:
    """``"gamma=0.8,normalize=kept"`` (or a list of ``key=value``) -> ``{"gamma": 0.8, "normalize": "kept"}``."""
    if not text:
        return {}
    items = text if isinstance(text, list) else [text]
    pairs = [p for item in items for p in item.split(",") if p.strip()]
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise FortifaiError(f"bad --loss-args item {pair!r}: expected key=value")
        args[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else ""
    return args


def _import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise FortifaiError(f"loss spec {spec!r}: expected a short name (ce, tce:0.9, focal:2) or module:Name")
    if os.getcwd() not in sys.path:  # `--loss my_module:MyLoss` finds my_module.py in the working folder
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise FortifaiError(f"loss spec {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FortifaiError(f"loss spec {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_loss(spec: str, **kwargs: Any) -> CheckedLoss:
    """Resolve a loss spec (see module doc) into a checked, callable loss."""
    name, _, value = spec.partition(":")
    if name.lower() in SHORT_NAMES and (not value or _is_number(value)):
        cls, key = SHORT_NAMES[name.lower()]
        args = dict(kwargs)
        if value:
            if key is None:
                raise FortifaiError(f"loss spec {spec!r}: {name} takes no value")
            args[key] = float(value)
        return CheckedLoss(spec, _construct(spec, cls, args), {})
    obj = _import_object(spec)
    if inspect.isclass(obj):
        if not issubclass(obj, Loss) and not callable(getattr(obj, "__call__", None)):
            raise FortifaiError(f"loss spec {spec!r}: {obj.__name__} is not callable")
        loss = _construct(spec, obj, kwargs)
        extra = {} if isinstance(loss, Loss) else kwargs
    elif callable(obj):
        loss = obj if isinstance(obj, Loss) else functools.partial(obj, **kwargs) if kwargs else obj
        extra = kwargs
    else:
        raise FortifaiError(f"loss spec {spec!r}: {type(obj).__name__} object is not callable")
    if not isinstance(loss, Loss):
        if not callable(loss):
            raise FortifaiError(f"loss spec {spec!r}: {type(loss).__name__} object is not callable")
        loss = FunctionLoss(loss)
    return CheckedLoss(spec, loss, extra)


def _construct(spec: str, cls: type, args: dict[str, Any]) -> Any:
    try:
        return cls(**args)
    except FortifaiError:
        raise
    except TypeError as exc:
        raise FortifaiError(f"loss spec {spec!r}: bad arguments {args}: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
