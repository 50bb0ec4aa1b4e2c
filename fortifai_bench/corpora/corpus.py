"""`Paragraph` and `Corpus`: what every corpus loader returns, in a module of its own so that the registry
(`fortifai_bench.corpora`) and the loaders it lists (`files`, `facts`, ...) import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fortifai_bench.errors import FortifaiError


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of a corpus. `id` is stable across runs (e.g. `facts/p0012`)."""

    id: str
    text: str
    meta: dict = field(default_factory=dict, hash=False, compare=True)


@dataclass(frozen=True)
class Corpus:
    """A named, ordered list of paragraphs. `source` says where they came from (file, hub, seed);
    `part` which part of the named corpus it is ("main", "pretrain", "valid", ...)."""

    name: str
    source: str
    paragraphs: tuple[Paragraph, ...]
    part: str = "main"

    def __post_init__(self):
        # Accept any sequence but store a tuple: a corpus is shared by many users and must not change.
        object.__setattr__(self, "paragraphs", tuple(self.paragraphs))
        if not self.paragraphs:
            raise FortifaiError(f"corpus {self.name} ({self.source}) has no paragraphs")
        seen = set()
        for p in self.paragraphs:
            if p.id in seen:
                raise FortifaiError(f"corpus {self.name}: duplicate paragraph id {p.id}")
            seen.add(p.id)

    def __len__(self) -> int:
        return len(self.paragraphs)

    def texts(self) -> list[str]:
        return [p.text for p in self.paragraphs]

    def split_bounds(self, n: int) -> list[tuple[int, int]]:
        """[start, end) paragraph indices of `n` contiguous splits of (almost) equal size.

        With P paragraphs, every split has P // n paragraphs and the first P % n splits get one
        more (the same rule as numpy.array_split), so sizes differ by at most one and nothing is
        dropped.
        """
        if not isinstance(n, int) or n < 1:
            raise FortifaiError(f"number of splits must be a positive integer, got {n!r}")
        if n > len(self.paragraphs):
            raise FortifaiError(
                f"corpus {self.name} has {len(self.paragraphs)} paragraphs, fewer than the {n} splits asked for"
            )
        size, extra = divmod(len(self.paragraphs), n)
        bounds, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            bounds.append((start, end))
            start = end
        return bounds

    def splits(self, n: int) -> list[list[Paragraph]]:
        """The even contiguous cut into `n` splits (see `split_bounds` for the remainder rule)."""
        return [list(self.paragraphs[a:b]) for a, b in self.split_bounds(n)]

    def split_of(self, n: int) -> list[int]:
        """The split number of every paragraph (by index) under the cut into `n` splits."""
        out = []
        for k, (a, b) in enumerate(self.split_bounds(n)):
            out.extend([k] * (b - a))
        return out
