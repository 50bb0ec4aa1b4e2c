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
``f(logits, labels) -> scalar Tensor`` (arguments bound as keywords). A `Loss` subclass overrides
`reduce` (a function of ``logp`` per token), or only `forward` when it needs the full logits.

A user's module is found in the working folder first, then on ``sys.path``; importing it leaves
``sys.path`` as it was and writes no ``__pycache__`` into the user's folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import yaml

from fortifai_bench.errors import FortifaiError, did_you_mean

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


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """log p(targets) for logits ``[..., V]`` and aligned integer targets ``[...]`` (no shifting), in float32:
    the one per-token log-probability of the package (losses, the KR scorer, the stage evaluation), chunked
    so that no second vocabulary-sized tensor is kept (see module doc)."""
    flat = logits.reshape(-1, logits.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return _TargetLogProb.apply(flat, targets.reshape(-1), chunk).view(targets.shape)


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
    logp = target_logprobs(logits.reshape(-1, logits.shape[-1]), safe, chunk)
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
                                f"{_describe_value(kept)}, expected a bool tensor of shape {tuple(valid.shape)}")
        return LossOutput(loss, _stats(logp.detach(), valid, kept.bool()))

    def reduce(self, logp: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """From per-token ``logp`` (with gradient) and ``valid``, return (scalar loss, tokens that got gradient)."""
        raise NotImplementedError(f"{type(self).__name__} overrides neither reduce nor forward")

    def config(self) -> dict[str, Any]:
        """Constructor arguments, recorded in run provenance and leaderboard entries."""
        return {}


def _overrides_loss(cls: type) -> bool:
    return cls.forward is not Loss.forward or cls.reduce is not Loss.reduce


def _number(owner: str, name: str, value: Any) -> float:
    """A finite real number (an int or float, not a bool or text): the checks name the loss and field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FortifaiError(f"{owner} {name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise FortifaiError(f"{owner} {name} must be a finite number, got {value}")
    return value


def _flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):  # bool("false") is True: refuse text rather than guess
        raise FortifaiError(f"{owner} {name} must be true or false, got {value!r} ({type(value).__name__})")
    return value


class CE(Loss):
    """Plain cross-entropy, averaged over real tokens."""

    def reduce(self, logp, valid):
        return -logp.sum() / valid.sum().clamp_min(1), valid


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
        gamma = _number("TCE", "gamma", gamma)
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


class Focal(Loss):
    """Focal loss ``-(1 - p_t)^gamma log p_t``, averaged over real tokens.

    ``detach_weight=True`` treats ``(1 - p_t)^gamma`` as a constant (a soft version of TCE's mask);
    the default differentiates through it, as in Lin et al. (2017).
    """

    def __init__(self, gamma: float = 2.0, detach_weight: bool = False):
        gamma = _number("Focal", "gamma", gamma)
        if gamma < 0:
            raise FortifaiError(f"Focal gamma must be >= 0, got {gamma}")
        self.gamma, self.detach_weight = gamma, _flag("Focal", "detach_weight", detach_weight)

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
        if isinstance(loss, LossOutput):  # a function that returns what a Loss returns: keep its statistics
            return loss
        with torch.no_grad():
            logp, valid = token_logprobs(logits.detach(), labels, self.ignore_index)
        return LossOutput(loss, _stats(logp, valid, valid))


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

    def __init__(self, spec: str, loss: Loss, args: dict[str, Any], source_sha256: str | None = None):
        self.spec, self.loss, self.args = spec, loss, args
        self.source_sha256 = source_sha256  # a user's module file (`module_source_sha256`); None for ours

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        try:
            out = self.loss(logits, labels)
        except FortifaiError as exc:
            if repr(self.spec) in str(exc):
                raise
            raise FortifaiError(f"loss {self.spec!r}: {exc}") from exc
        except (Exception, SystemExit) as exc:  # a user's loss raising (or calling sys.exit): say whose
            raise FortifaiError(f"loss {self.spec!r} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(out, torch.Tensor):
            out = LossOutput(out)
        value = out.loss if isinstance(out, LossOutput) else out
        if not isinstance(value, torch.Tensor):
            raise FortifaiError(f"loss {self.spec!r} returned {_describe_value(value)}, expected a scalar Tensor "
                                "computed from the logits (a Python number carries no gradient)")
        if out.loss.dim() != 0:
            raise FortifaiError(f"loss {self.spec!r} returned shape {tuple(out.loss.shape)}, expected a scalar")
        if logits.requires_grad and out.loss.grad_fn is None:
            raise FortifaiError(f"loss {self.spec!r} returned a tensor with no gradient path to the logits")
        if not torch.isfinite(out.loss.detach()):
            raise FortifaiError(f"loss {self.spec!r} returned {out.loss.item()} (not finite)")
        return out

    def describe(self) -> dict[str, Any]:
        """What a run records about its loss: the spec, the resolved class and its arguments (what `config()`
        reports, then every argument the user gave, so a class without `config()` loses none), and for a
        user's module the sha256 of its source file: the same spec and arguments with edited code is
        another loss."""
        target = self.loss.fn if isinstance(self.loss, FunctionLoss) else type(self.loss)
        target = getattr(target, "func", target)  # a function given keyword arguments is a functools.partial
        if not hasattr(target, "__qualname__"):  # an instance of a user's callable class
            target = type(target)
        try:
            config = self.loss.config()
        except Exception as exc:
            raise FortifaiError(f"loss {self.spec!r}: config() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(config, dict):
            raise FortifaiError(f"loss {self.spec!r}: config() returned {type(config).__name__}, expected a dict")
        out = {
            "spec": self.spec,
            "target": f"{target.__module__}:{target.__qualname__}",
            "args": {**config, **self.args},
        }
        if self.source_sha256 is not None:
            out["source_sha256"] = self.source_sha256
        return out

    def check_describable(self) -> None:
        """The description goes into results.json: refuse, before any training, what JSON cannot hold."""
        args = self.describe()["args"]
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FortifaiError(f"loss {self.spec!r}: its arguments {args!r} cannot be recorded as JSON "
                                f"({exc}); use numbers, text, true/false or lists of them") from exc


def _describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (int, float)):
        return f"a Python {type(value).__name__} ({value!r})"
    return f"{type(value).__name__}"


def parse_loss_args(text: str | list[str] | None) -> dict[str, Any]:
    """``"gamma=0.8,normalize=kept"`` (or a list of ``key=value``) -> ``{"gamma": 0.8, "normalize": "kept"}``."""
    if not text:
        return {}
    items = text if isinstance(text, list) else [text]
    pairs = [p for item in items for p in item.split(",") if p.strip()]
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise FortifaiError(f"bad --loss-args item {pair!r}: expected key=value")
        if key in args:
            raise FortifaiError(f"--loss-args: {key} given twice ({key}={args[key]!r} and {pair.strip()!r})")
        args[key] = _yaml_scalar(key, value.strip()) if value.strip() else ""
    return args


def _yaml_scalar(key: str, text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # "gamma=[1": say which argument, in one line
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
        raise FortifaiError(f"--loss-args {key}={text!r}: invalid YAML value: {problem}") from exc
    if isinstance(value, dict):
        raise FortifaiError(f"--loss-args {key}={text!r}: a mapping is not a loss argument; give a "
                            "number, text, true/false or a list")
    return value


def _short_name_hint(spec: str) -> str:
    """`; did you mean tce:0.9?` for a misspelt short name (`tec:0.9`), else ""."""
    name, sep, value = spec.partition(":")
    hint = did_you_mean(name.lower(), SHORT_NAMES)
    return hint[:-1] + f"{sep}{value}?" if hint else ""


def _import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise FortifaiError(f"loss spec {spec!r}: expected a short name (ce, tce:0.9, focal:2) or module:Name"
                            f"{_short_name_hint(spec)}")
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise FortifaiError(f"loss spec {spec!r}: {module_name!r} is not a module name (a.b.c, no path); "
                            "put the file in the working folder or on PYTHONPATH")
    try:
        module = _import_user_module(module_name)
    except (Exception, SystemExit) as exc:  # SystemExit: a module calling sys.exit() on import
        what = f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        # no such module at all (not one failing inside): perhaps a short name, misspelt
        hint = _short_name_hint(spec) if isinstance(exc, ModuleNotFoundError) and exc.name == module_name else ""
        raise FortifaiError(f"loss spec {spec!r}: cannot import {module_name!r}: {what}{hint}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FortifaiError(f"loss spec {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import_user_module(module_name: str):
    """Import `module_name`, its top-level package looked up in the working folder first.

    `--loss my_module:MyLoss` finds my_module.py in the working folder (also when `fortifai-bench`
    runs as an installed script, whose sys.path lacks it) without putting that folder on sys.path
    for the rest of the process: a `matplotlib.py` lying there must not replace the real one later.
    While the user's module runs its imports, the folder is at the *end* of sys.path, so it can
    import its siblings but never shadows an installed package."""
    cwd = os.getcwd()
    top = module_name.partition(".")[0]
    with _user_import(cwd):
        if top not in sys.modules:
            spec = importlib.machinery.PathFinder.find_spec(top, [cwd])
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[top] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(top, None)
                    raise
        return importlib.import_module(module_name)


@contextlib.contextmanager
def _user_import(folder: str):
    added = folder not in sys.path
    bytecode = sys.dont_write_bytecode
    if added:
        sys.path.append(folder)
    sys.dont_write_bytecode = True  # no __pycache__ left in the user's folder
    try:
        yield
    finally:
        sys.dont_write_bytecode = bytecode
        if added and folder in sys.path:
            del sys.path[len(sys.path) - 1 - sys.path[::-1].index(folder)]


def load_loss(spec: str, **kwargs: Any) -> CheckedLoss:
    """Resolve a loss spec (see module doc) into a checked, callable loss."""
    loss = _resolve(spec, kwargs)
    loss.check_describable()
    return loss


def _resolve(spec: str, kwargs: dict[str, Any]) -> CheckedLoss:
    if not isinstance(spec, str) or not spec.strip():
        raise FortifaiError(f"loss spec {spec!r}: expected a short name (ce, tce:0.9, focal:2) or module:Name")
    name, _, value = spec.partition(":")
    if name.lower() in SHORT_NAMES:
        cls, key = SHORT_NAMES[name.lower()]
        args = dict(kwargs)
        if value:
            if key is None:
                raise FortifaiError(f"loss spec {spec!r}: {name} takes no value")
            if not _is_number(value):
                raise FortifaiError(f"loss spec {spec!r}: the value after ':' is {key}, a number (e.g. {name}:0.9)")
            if key in args:
                raise FortifaiError(f"loss spec {spec!r}: {key} given twice, in the spec and in the loss "
                                    f"arguments ({key}={args[key]!r})")
            args[key] = float(value)
        return CheckedLoss(spec, _construct(spec, cls, args), {})
    obj = _import_object(spec)
    source = module_source_sha256(spec.partition(":")[0])
    if inspect.isclass(obj):
        if issubclass(obj, Loss) and not _overrides_loss(obj):
            raise FortifaiError(f"loss spec {spec!r}: {obj.__name__} overrides neither reduce nor forward")
        if not issubclass(obj, Loss) and not callable(getattr(obj, "__call__", None)):
            raise FortifaiError(f"loss spec {spec!r}: {obj.__name__} is not callable")
        loss = _construct(spec, obj, kwargs)
        extra = kwargs  # recorded as given, whether or not the class reports them in config() (issue 20)
    elif callable(obj):
        if isinstance(obj, Loss) and not _overrides_loss(type(obj)):
            raise FortifaiError(f"loss spec {spec!r}: {type(obj).__name__} overrides neither reduce nor forward")
        if isinstance(obj, Loss) and kwargs:
            raise FortifaiError(f"loss spec {spec!r}: an instance takes no loss arguments (got {kwargs})")
        loss = obj if isinstance(obj, Loss) else functools.partial(obj, **kwargs) if kwargs else obj
        extra = kwargs
    else:
        raise FortifaiError(f"loss spec {spec!r}: {type(obj).__name__} object is not callable")
    if not isinstance(loss, Loss):
        if not callable(loss):
            raise FortifaiError(f"loss spec {spec!r}: {type(loss).__name__} object is not callable")
        loss = FunctionLoss(loss)
    return CheckedLoss(spec, loss, extra, source)


def module_source_sha256(module_name: str) -> str | None:
    """sha256 of an imported user module's source file; None for this package's own modules (the git
    commit in the provenance pins those) and for modules without a file."""
    if module_name.partition(".")[0] == "fortifai_bench":
        return None
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if not path or not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _construct(spec: str, cls: type, args: dict[str, Any]) -> Any:
    try:
        return cls(**args)
    except FortifaiError as exc:
        raise FortifaiError(f"loss spec {spec!r}: {exc}") from exc
    except TypeError as exc:
        raise FortifaiError(f"loss spec {spec!r}: bad arguments {args}: {exc}") from exc
    except (Exception, SystemExit) as exc:  # a user's constructor rejecting its arguments its own way
        raise FortifaiError(f"loss spec {spec!r}: {cls.__name__}({_call_args(args)}) raised "
                            f"{type(exc).__name__}: {exc}") from exc


def _call_args(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
