"""`CheckedLoss`: a loaded loss that checks every result and describes itself for a run's records."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import torch

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses.base import FunctionLoss, Loss, LossOutput, describe_value


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
            raise FortifaiError(f"loss {self.spec!r} returned {describe_value(value)}, expected a scalar Tensor "
                                "computed from the logits (a Python number carries no gradient)")
        if out.loss.dim() != 0:
            raise FortifaiError(f"loss {self.spec!r} returned shape {tuple(out.loss.shape)}, expected a scalar")
        if logits.requires_grad and out.loss.grad_fn is None:
            raise FortifaiError(f"loss {self.spec!r} returned a tensor with no gradient path to the logits")
        if not torch.isfinite(out.loss.detach()):
            raise FortifaiError(f"loss {self.spec!r} returned {out.loss.item()} (not finite)")
        return out

    def rehearse(self) -> None:
        """One forward and backward on a tiny random batch, before a run creates anything: a loss that fails
        only in backward (it changed in place a tensor its gradient needs) fails here, in one line. The
        random state is restored, so the run draws exactly what it would have, and the rehearsal runs on a copy
        of the loss, so a loss with state (a step counter, a schedule) starts the run as it would have. A loss
        that cannot be copied is not rehearsed: the trainer gives the same one line at its first step."""
        try:
            probe = copy.deepcopy(self)
        except Exception:  # noqa: BLE001 -- any failure to copy a user's object means: do not rehearse
            return
        with torch.random.fork_rng(devices=[]):
            gen = torch.Generator().manual_seed(0)
            logits = (torch.randn(2, 5, 11, generator=gen) * 1.0).requires_grad_()
            labels = torch.randint(0, 11, (2, 5), generator=gen)
            labels[:, 0] = -100  # a masked position, as padding gives
            out = probe(logits * 1.0, labels)  # a non-leaf tensor, as a model's output is
            try:
                out.loss.backward()
            except RuntimeError as exc:
                raise FortifaiError(f"loss {self.spec!r}: its backward pass failed: {first_sentence(exc)}"
                                    + INPLACE_HINT * ("inplace" in str(exc))) from exc

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
            "target": _address(target),
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


def _address(target: Any) -> str:
    """``module:Name`` of a loss's class or function. A built-in loss is given at its public home
    (``fortifai_bench.losses:TCE``, not the submodule that defines it): the address a spec names, and the
    one recorded by every run and board made before `losses` became a package, which a board compares."""
    module, name = target.__module__, target.__qualname__
    public = sys.modules.get("fortifai_bench.losses")
    if module.startswith("fortifai_bench.losses.") and getattr(public, name, None) is target:
        module = "fortifai_bench.losses"
    return f"{module}:{name}"


INPLACE_HINT = " (does the loss change the logits, or a tensor made from them, in place?)"


def first_sentence(exc: Exception) -> str:
    """torch's autograd errors are a paragraph with a hint about anomaly detection: their first line, up to it."""
    return str(exc).splitlines()[0].split(" Hint:")[0]
