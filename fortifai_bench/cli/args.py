"""Argument conventions shared by every subcommand: one seed syntax, one progress switch.

    --seeds 0,1,2   --seeds 0-4   --seeds 0-2,7     (distinct non-negative integers, ranges ascending)
    --seeds 0 --seeds 1                             (repeated: merged, = --seeds 0,1; a seed given twice is refused)
    -q, --quiet                                     (no progress bars; --no-progress is an alias)
"""

from __future__ import annotations

import re

from fortifai_bench.errors import FortifaiError


MAX_SEEDS = 10_000     # seeds in one command: the paper uses 3 to 5
MAX_SEED = 2**32 - 1   # numpy's generators take seeds below 2^32


def at_least(value, flag: str, low: int = 1) -> None:
    """A count given on the command line (--nproc, --n-boot, ...) below `low`: one line naming the flag."""
    if value is not None and value < low:
        raise FortifaiError(f"{flag} must be >= {low}, got {value}")


def run_path(value: str | None, flag: str) -> str | None:
    """A folder named on the command line; an empty one ("") is refused rather than read as "not given"."""
    if value is not None and not value.strip():
        raise FortifaiError(f"{flag}: an empty path; give a run folder")
    return value


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
            if hi - lo + 1 + len(out) > MAX_SEEDS:  # checked before the list is built: 0-99999999999 is 10^11 ints
                raise FortifaiError(f"--seeds: '{part}' is {hi - lo + 1:,} seeds; at most {MAX_SEEDS:,} in all")
            out.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise FortifaiError(f"--seeds: '{part}' is not a non-negative integer or a range like 0-4")
    if not out:
        raise FortifaiError(f"--seeds: {text!r} holds no seed; give e.g. 0,1,2 or 0-2")
    if len(out) > MAX_SEEDS:
        raise FortifaiError(f"--seeds: {len(out):,} seeds; at most {MAX_SEEDS:,} in all")
    if max(out) > MAX_SEED:
        raise FortifaiError(f"--seeds: {max(out)} is above {MAX_SEED}, the largest seed torch and numpy take alike")
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
