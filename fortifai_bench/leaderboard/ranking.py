"""A board as shown: entries best first, each tested against the best entry and against CE.

Ranked by the restricted mean time to failure, then AUC; the tests are the exact permutation test over seeds
(`metrics.compare_failures`), Holm-adjusted over all of a board's comparisons at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from fortifai_bench.metrics import ALPHA, Failure, compare_failures, holm

TIE_ALPHA = ALPHA  # Holm-adjusted exact p at or above it: indistinguishable


def rank_entries(entries: Iterable[dict]) -> list[dict]:
    """Best first: longest restricted mean time to failure, then AUC; the clean control (a ceiling, not a
    loss) after the ranked entries."""

    def key(e):
        auc = e["auc"]["mean"]
        return (bool(e.get("control")), -e["time_to_failure"]["rank_value"],
                -(auc if auc is not None and not math.isnan(auc) else -1e9), e["name"])

    return sorted(entries, key=key)


@dataclass
class Ranked:
    """One row of a shown board. `label`: "1" for the best entry, "=1" for an entry indistinguishable from it,
    else its position ("4"); "control" for the clean control. `vs_best` and `vs_ce`: `metrics.compare_failures`
    of this entry against the best entry and against CE (ratio = this entry / the other), each with `p_holm`,
    its p adjusted over all the board's comparisons; `vs_ce` also has `verdict`."""

    label: str
    entry: dict
    vs_best: dict | None = None
    vs_ce: dict | None = None


BASELINE_SPECS = ("ce", "mle")  # cross-entropy: `ce` for text, `mle` (maximum likelihood) for the toys


def baseline_of(entries: Iterable[dict], entry: dict) -> dict | None:
    """The CE entry an entry is compared with: loss spec `ce` (the toys: `mle`), not the control, the same
    model; of several, the one with the most seeds."""
    found = [e for e in entries if e["loss"]["spec"] in BASELINE_SPECS and not e.get("control")
             and e["model"] == entry["model"]]
    return max(found, key=lambda e: (len(e["seeds"]), e["name"])) if found else None


def verdict(test: dict | None) -> str:
    """better / worse (Holm-adjusted exact p < ALPHA, by the sign of the difference) or indistinguishable."""
    if test is None or test.get("p_holm") is None or test["p_holm"] >= ALPHA:
        return "indistinguishable"
    return "better" if test["diff"] > 0 else "worse"


def _seed_failures(entry: dict) -> list[Failure]:
    return [Failure.from_dict(d) for d in entry["time_to_failure"]["per_seed"]]


def ranking(entries: Iterable[dict]) -> list[Ranked]:
    """The board as shown, best first (`rank_entries`), every entry tested against the best entry and against
    CE (the exact permutation test over seeds, `metrics.compare_failures`), the p-values Holm-adjusted over
    all these comparisons at once. The best entry's group, the entries whose adjusted p against it is
    >= ALPHA (or that have too few seeds to test), share its rank as "=1": one group, not a chain of
    neighbours. The clean control is not compared."""
    ranked = rank_entries(entries)
    losses = [e for e in ranked if not e.get("control")]
    best = losses[0] if losses else None
    rows = [Ranked("control", e) for e in ranked if e.get("control")]
    family: dict[frozenset, float | None] = {}
    out = []
    for i, e in enumerate(losses):
        row = Ranked("1" if e is best else str(i + 1), e)
        for attr, other in (("vs_best", best), ("vs_ce", baseline_of(losses, e))):
            if other is not None and other is not e:
                test = compare_failures(_seed_failures(e), _seed_failures(other))
                family[frozenset((e["name"], other["name"]))] = test["p_value"]
                setattr(row, attr, {**test, "other": other["name"]})
        out.append(row)
    adjusted = dict(zip(family, holm(list(family.values()))))
    for row in out:
        for test in (row.vs_best, row.vs_ce):
            if test is not None:
                test["p_holm"] = adjusted[frozenset((row.entry["name"], test["other"]))]
        if row.vs_ce is not None:
            row.vs_ce["verdict"] = verdict(row.vs_ce)
        if row.vs_best is not None and verdict(row.vs_best) == "indistinguishable":
            row.label = "=1"
    return out + rows
