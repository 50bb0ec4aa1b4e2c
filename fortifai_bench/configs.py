"""Dataclass configs from mappings and command lines, with errors that name the field.

One dataclass is the whole description of a concept (the trainer's `TrainConfig`, a collapse task's
sections); this module turns a YAML mapping or a set of command-line flags into it without restating
a field or a default anywhere else:

* `build(cls, data, prefix, source)`: the dataclass from a mapping, every key and type checked
  (``train.epochs must be an integer, got 'three'``), nested dataclasses included.
* `add_arguments(parser, cls)` adds one ``--field-name`` flag per field, its help from the field's
  ``metadata["help"]`` and its default shown from the dataclass itself; `given(args, cls)` returns only
  the flags the user passed, so the dataclass (or a task file) supplies every other value.

Importing it needs neither torch nor transformers.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from fortifai_bench.errors import FortifaiError, did_you_mean
from fortifai_bench.io import parse_yaml


def build(cls, data: Any, prefix: str = "", source: str = "config"):
    """Construct dataclass `cls` from `data`, checking every key and type; errors name the field."""
    where = prefix.rstrip(".") or "task"
    if not isinstance(data, dict):
        raise FortifaiError(f"{source}: field {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise FortifaiError(
            f"{source}: unknown field {prefix}{unknown[0]}{did_you_mean(unknown[0], fields, prefix)} "
            f"(known in {where}: {', '.join(fields)})"
        )
    kwargs = {name: coerce(hints[name], value, f"{prefix}{name}", source) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except FortifaiError as exc:
        text = str(exc)
        # A section's own check ("train config: lr must be > 0") gets the section's name in front.
        named = f"{prefix.rstrip('.')}: {text}" if prefix and not text.startswith(prefix.rstrip(".")) else text
        raise FortifaiError(f"{source}: {named}") from exc


def coerce(tp, value: Any, name: str, source: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(tp)):
                return None
            _bad(name, " or ".join(a.__name__ for a in args), value, source)
        errors = []
        for arg in args:  # the first type that accepts the value (int before float keeps 100 an int)
            try:
                return coerce(arg, value, name, source)
            except FortifaiError as exc:
                errors.append(exc)
        if len(args) == 1:
            raise errors[0]
        _bad(name, " or ".join(getattr(a, "__name__", str(a)) for a in args), value, source)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, f"{name}.", source)
    if origin is list:
        if not isinstance(value, list):
            _bad(name, "a list", value, source)
        (item,) = typing.get_args(tp)
        return [coerce(item, v, f"{name}[{i}]", source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            _bad(name, "true or false", value, source)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _bad(name, "an integer", value, source)
        return value
    if tp is float:
        # YAML 1.1 reads `5e-3` (no dot) as a string: accept any text that is a number.
        if isinstance(value, str) and value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity"):
            try:
                return float(value)
            except ValueError:
                _bad(name, "a number", value, source)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _bad(name, "a number", value, source)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _bad(name, "a string", value, source)
        return value
    return value


def _bad(name: str, expected: str, value: Any, source: str):
    raise FortifaiError(f"{source}: field {name} must be {expected}, got {value!r} ({type(value).__name__})")


# --------------------------------------------------------------------------------------------- flags

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of `cls`; values are YAML scalars (``--warmup 100``, ``--bf16 auto``) checked by
    `build`, booleans also as ``--x/--no-x``. Defaults are None here: `given` passes only what was typed."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        help_text = f.metadata.get("help", "")
        shown = getattr(defaults, f.name)
        help_text = f"{help_text} (default: {shown})".strip().replace("%", "%%")  # argparse formats help with %
        if typing.get_type_hints(cls)[f.name] is bool:
            parser.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag(f.name), dest=f.name, default=None, metavar=f.name.upper(),
                                type=_yaml_scalar, help=help_text)


def given(args: argparse.Namespace, cls, *, skip: tuple[str, ...] = ()) -> dict:
    """The fields of `cls` the user set on the command line (name -> parsed value)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.init and f.name not in skip and getattr(args, f.name, None) is not None}


def from_flags(args: argparse.Namespace, cls, *, source: str = "command line", **extra):
    """`cls` from the given flags (checked like a config file, errors naming the flag) plus `extra`."""
    values = {**given(args, cls), **extra}
    try:
        return build(cls, values, "", source)
    except FortifaiError as exc:
        # "command line: field lr must be ..." reads better as the flag the user typed
        text = str(exc)
        for name in values:
            text = text.replace(f"field {name} ", f"{flag(name)} ")
        raise FortifaiError(text) from exc


def _yaml_scalar(text: str):

    value = parse_yaml(text, f"value {text!r}", lines=False)
    return text if value is None and text.strip() not in ("null", "~", "") else value
