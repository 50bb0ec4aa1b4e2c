"""Importing a user's loss module (``--loss my_module:MyLoss``) without side effects on the process.

A user's module is found in the working folder first, then on ``sys.path``; importing it leaves
``sys.path`` as it was and writes no ``__pycache__`` into the user's folder. The sha256 of its source
file is recorded, so the same spec with edited code is another loss.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from fortifai_bench.errors import FortifaiError
from fortifai_bench.losses.registry import short_name_hint
from fortifai_bench.registry import import_user_module as _import_user_module  # the one home of user imports


def import_object(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise FortifaiError(f"loss spec {spec!r}: expected a short name (ce, tce:0.9, focal:2) or module:Name"
                            f"{short_name_hint(spec)}")
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise FortifaiError(f"loss spec {spec!r}: {module_name!r} is not a module name (a.b.c, no path); "
                            "put the file in the working folder or on PYTHONPATH")
    try:
        module = _import_user_module(module_name)
    except (Exception, SystemExit) as exc:  # SystemExit: a module calling sys.exit() on import
        what = f"it called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        # no such module at all (not one failing inside): perhaps a short name, misspelt
        hint = short_name_hint(spec) if isinstance(exc, ModuleNotFoundError) and exc.name == module_name else ""
        raise FortifaiError(f"loss spec {spec!r}: cannot import {module_name!r}: {what}{hint}") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FortifaiError(f"loss spec {spec!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


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
