"""Loss specs: ``ce`` | ``tce`` | ``tce:0.9`` | ``focal`` | ``focal:2`` | ``package.module:Name``, into a `CheckedLoss`.

Keyword arguments come from ``--loss-args key=value[,key=value]`` (values parsed as YAML scalars). ``Name``
may be a `Loss` subclass (instantiated with the arguments), a `Loss` instance, or a plain function
``f(logits, labels) -> scalar Tensor`` (arguments bound as keywords). A `Loss` subclass overrides
`reduce` (a function of ``logp`` per token), or only `forward` when it needs the full logits.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from fortifai_bench.errors import FortifaiError
from fortifai_bench.io import parse_yaml  # bounded: an alias bomb in one line is one line too
from fortifai_bench.losses.base import FunctionLoss, Loss, overrides_loss
from fortifai_bench.losses.checked import CheckedLoss
from fortifai_bench.losses.registry import SHORT_NAMES, VALUE_KEYWORDS
from fortifai_bench.losses.user_import import import_object, module_source_sha256


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
        value = parse_yaml(text, f"--loss-args {key}={text!r}", lines=False)
    except FortifaiError as exc:  # "gamma=[1": say which argument, in one line
        raise FortifaiError(str(exc).replace(": invalid YAML: ", ": invalid YAML value: ", 1)) from exc
    if isinstance(value, dict):
        raise FortifaiError(f"--loss-args {key}={text!r}: a mapping is not a loss argument; give a "
                            "number, text, true/false or a list")
    return value


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
        cls, key = SHORT_NAMES.get(name.lower()), VALUE_KEYWORDS.get(name.lower())
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
    obj = import_object(spec)
    source = module_source_sha256(spec.partition(":")[0])
    if inspect.isclass(obj):
        if issubclass(obj, Loss) and not overrides_loss(obj):
            raise FortifaiError(f"loss spec {spec!r}: {obj.__name__} overrides neither reduce nor forward")
        if not issubclass(obj, Loss) and not callable(getattr(obj, "__call__", None)):
            raise FortifaiError(f"loss spec {spec!r}: {obj.__name__} is not callable")
        loss = _construct(spec, obj, kwargs)
        extra = kwargs  # recorded as given, whether or not the class reports them in config() (issue 20)
    elif callable(obj):
        if isinstance(obj, Loss) and not overrides_loss(type(obj)):
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
