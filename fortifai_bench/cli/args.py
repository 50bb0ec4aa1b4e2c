"""Argument conventions shared by every subcommand: one seed syntax (parsed by `fortifai_bench.seeds`), one
progress switch.

    --seeds 0,1,2   --seeds 0-4   --seeds 0-2,7     (distinct non-negative integers, ranges ascending)
    --seeds 0 --seeds 1                             (repeated: merged, = --seeds 0,1; a seed given twice is refused)
    -q, --quiet                                     (no progress bars; --no-progress is an alias)
"""

from __future__ import annotations

from fortifai_bench.errors import FortifaiError


def at_least(value, flag: str, low: int = 1) -> None:
    """A count given on the command line (--nproc, --n-boot, ...) below `low`: one line naming the flag."""
    if value is not None and value < low:
        raise FortifaiError(f"{flag} must be >= {low}, got {value}")


def run_path(value: str | None, flag: str) -> str | None:
    """A folder named on the command line; an empty one ("") is refused rather than read as "not given"."""
    if value is not None and not value.strip():
        raise FortifaiError(f"{flag}: an empty path; give a run folder")
    return value


def add_seeds(parser, default_text: str = "the task's seed") -> None:
    # append: `--seeds 0 --seeds 1` is 0,1 (a plain store would silently keep only the last one)
    parser.add_argument("--seeds", action="append", default=None, metavar="0,1,2|0-2",
                        help=f"seeds: a list (0,1,2), a range (0-2) or both; repeated, the lists are merged "
                             f"(default: {default_text})")


def add_quiet(parser) -> None:
    parser.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                        help="no progress bars (default: shown)")
