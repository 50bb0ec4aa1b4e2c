"""Where the shipped `tasks/` and `data/` folders are.

In the repository they sit at the top level; setup.cfg installs them as the packages
`fortifai_bench.tasks` and `fortifai_bench.data`, so an installed wheel carries them too.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from fortifai_bench.errors import FortifaiError


def _resource_dir(name: str) -> Path:
    try:
        path = Path(str(importlib.resources.files(f"fortifai_bench.{name}")))
        if path.is_dir():
            return path
    except ModuleNotFoundError:
        pass
    # Running from a source checkout that was not installed: the folder is beside the package.
    return Path(__file__).resolve().parent.parent / name


def tasks_dir() -> Path:
    """The folder of lm-eval task YAMLs (kr_*) and collapse tasks (collapse/*.yaml)."""
    return _resource_dir("tasks")


def data_dir() -> Path:
    """The folder of data the project generated and ships (facts corpus, its KR questions)."""
    return _resource_dir("data")


def cache_dir() -> Path:
    """The user's cache: base models, KR sets built on first use. FORTIFAI_CACHE overrides it."""
    root = os.environ.get("FORTIFAI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fortifai-bench"
    )
    path = Path(root)
    what = "FORTIFAI_CACHE" if os.environ.get("FORTIFAI_CACHE") else "the cache folder"
    if path.exists() and not path.is_dir():
        raise FortifaiError(f"{what} {path} is a file; the cache must be a folder (set FORTIFAI_CACHE to one)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FortifaiError(f"{what} {path}: cannot create it ({exc.strerror or exc}); set FORTIFAI_CACHE to a "
                            "folder you can write") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise FortifaiError(f"{what} {path} is read-only; set FORTIFAI_CACHE to a folder you can write")
    return path
