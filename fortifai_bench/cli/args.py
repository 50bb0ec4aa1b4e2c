"""Argument conventions shared by every subcommand: one seed syntax, one progress switch.

    --seeds 0,1,2   --seeds 0-4   --seeds 0-2,7     (distinct non-negative integers, ranges ascending)
    --seeds 0 --seeds 1                             (repeated: merged, = --seeds 0,1; a seed given twice is refused)
    -q, --quiet                                     (no progress bars; --no-progress is an alias)
"""

from __future__ import annotations

import re

from fortifai_bench.errors import FortifaiError


def parse_seeds(text: str | list[str] | None, default: int = 0) -> list[int]:
    """`0,1,2`, `0-4` or a mix; None gives `[default]`. A list (a repeated `--seeds`) is merged in order, as one
    comma-separated text, so a seed named in two of them is refused like one named twice in one. Errors name
    the offending part."""
    if text is None:
        return [int(default)]
    if isinstance(text, (list, tuple)):
        text = ",".join(str(t) for t in text)
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
    # append: `--seeds 0 --seeds 1` is 0,1 (a plain store would silently keep only the last one)
    parser.add_argument("--seeds", action="append", default=None, metavar="0,1,2|0-2",
                        help=f"seeds: a list (0,1,2), a range (0-2) or both; repeated, the lists are merged "
                             f"(default: {default_text})")


def add_quiet(parser) -> None:
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars (default: shown)")
