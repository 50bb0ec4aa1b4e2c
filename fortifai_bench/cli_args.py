"""Argument conventions shared by every subcommand: one seed syntax, one progress switch.

    --seeds 0,1,2   --seeds 0-4   --seeds 0-2,7     (distinct non-negative integers, ranges ascending)
    --quiet                                         (no progress bars; --no-progress is an alias)
"""

from __future__ import annotations

import re

from fortifai_bench.errors import FortifaiError


def parse_seeds(text: str | None, default: int = 0) -> list[int]:
    """`0,1,2`, `0-4` or a mix; None gives `[default]`. Errors name the offending part."""
    if text is None:
        return [int(default)]
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise FortifaiError(f"--seeds: range '{part}' runs backwards; write {hi}-{lo}")
            out.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise FortifaiError(f"--seeds: '{part}' is not a non-negative integer or a range like 0-4")
    if not out:
        raise FortifaiError(f"--seeds: {text!r} holds no seed; give e.g. 0,1,2 or 0-2")
    if len(set(out)) != len(out):
        raise FortifaiError(f"--seeds: {text!r} repeats a seed; seeds must be distinct")
    return out


def add_seeds(parser, default_text: str = "the task's seed") -> None:
    parser.add_argument("--seeds", default=None, metavar="0,1,2|0-2",
                        help=f"seeds: a list (0,1,2), a range (0-2) or both (default: {default_text})")


def add_quiet(parser) -> None:
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars (default: shown)")
