"""The package's one seed syntax: `0,1,2`, `0-4` or a mix, distinct non-negative integers, ranges ascending;
`format_seeds` writes it back, runs of three or more as ranges (`0-11`, `0,2,5-7`).

The CLI's `--seeds` (`cli.args.add_seeds`), the toys' `--seed`/`--seeds` and the benchmarks' sweeps read seeds
with `parse_seeds`; it lives in the library so that a library module never imports the CLI.
"""

from __future__ import annotations

import re

from fortifai_bench.errors import FortifaiError

MAX_SEEDS = 10_000     # seeds in one command: the paper uses 3 to 5
MAX_SEED = 2**32 - 1   # numpy's generators take seeds below 2^32


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


def format_seeds(seeds: list[int]) -> str:
    """Seeds in the syntax `parse_seeds` reads, in their order: three or more consecutive as a range (`0-11`),
    others listed (`0,2,5-7`), so that a board's twelve seeds stay one short cell."""
    parts, run = [], []
    for s in seeds:
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        parts.append(run)
        run = [s]
    parts.append(run)
    out = []
    for r in filter(None, parts):
        out += [f"{r[0]}-{r[-1]}"] if len(r) >= 3 else [str(x) for x in r]
    return ",".join(out)
