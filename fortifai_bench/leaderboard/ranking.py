"""A board as shown: entries best first, each entry's claim against CE, and the group tied with the best.

Ranked by the restricted mean time to failure, then AUC. Two families of tests, both the exact permutation
test over seeds (`metrics.compare_failures`), each Holm-adjusted on its own:

- **the claims**: each entry against CE (same model), one per entry. Only these say better / worse; the
  family is as large as the board's list of losses, so a verdict does not depend on how the table is read.
  A board created with planned claims (``publish --planned-claims``, its `planned_claims` field) adjusts over
  the plan from the first entry on: a planned loss not yet tested counts as p = 1, so a verdict read before
  every arm has run is the one the design set (Holm over all of them) and can only strengthen as they land.
- **the group tied with the best**: each entry against the entry with the longest mean. Descriptive: the
  best is picked after looking at the data, so these tests make no claim; they only decide which entries
  share the top rank ("=1"). Where the pair is also one of the claims (the best and its CE), the claim
  decides, so a rank never reads against a verdict. A lone "1" is shown only when the best entry is apart
  from every other; it is then also apart from CE by the claim (better, or CE itself with every claim of
  its model "worse").

A board's `claims` field says what its tests compare (`CLAIMS`): times to failure (the default), or, on a
board published with ``--claims retention``, the AUC of the score over stages (`metrics.compare_retention`,
ranked by AUC first): for regimes where CE never falls below the threshold within the stages, so that every
seed is censored and times cannot separate losses (the WikiText boards on SmolLM2), or where CE's times spread too
widely for the power a design needs (`collapse_facts_smol`: CE sits on the threshold). It is fixed when the board is
created, before its runs are seen, and the page says which. There, where the board has a clean control of the
model, each claim also says what share of CE's AUC gap to the control the loss closes (`metrics.gap_recovered`):
descriptive, the unit of "does it prevent collapse?", not a test. A board created with ``--paired`` (its `pairing`
field, fixed the same way) tests the same quantity with the runs paired by seed (`metrics.compare_paired`):
every entry holds the same seeds, and a seed gives every loss the same base and data order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from fortifai_bench.metrics import Failure, compare_failures, compare_paired, compare_retention, gap_recovered
from fortifai_bench.stats import ALPHA, format_p, holm

TIE_ALPHA = ALPHA  # adjusted exact p at or above it: indistinguishable
TIME, RETENTION = "time_to_failure", "retention"
CLAIMS = (TIME, RETENTION)  # what a board's tests compare (its `claims` field; absent: time to failure)
PAIRING = "seed"  # a board's `pairing` field: runs paired by seed (absent: unpaired)


def board_test(board: dict) -> dict:
    """The test a board was created with, as `ranking`'s keyword arguments: what its claims compare and
    whether its runs are paired by seed, and the claims planned when it was created."""
    return {"claims": board.get("claims", TIME), "paired": board.get("pairing") == PAIRING,
            "planned": tuple(board.get("planned_claims", ()))}


def rank_entries(entries: Iterable[dict], claims: str = TIME) -> list[dict]:
    """Best first: longest restricted mean time to failure, then AUC (a retention board: AUC, then time); the
    clean control (a ceiling, not a loss) after the ranked entries."""

    def key(e):
        auc = e["auc"]["mean"]
        auc = -(auc if auc is not None and not math.isnan(auc) else -1e9)
        time = -e["time_to_failure"]["rank_value"]
        return (bool(e.get("control")), *((auc, time) if claims == RETENTION else (time, auc)), e["name"])

    return sorted(entries, key=key)


@dataclass
class Ranked:
    """One row of a shown board. `label`: "=1" for the entries indistinguishable from the best (the best
    included), "1" for a best entry apart from all others, else its position ("4"); "control" for the clean
    control. `vs_ce`: the claim, `metrics.compare_failures` of this entry against CE (ratio = this entry /
    CE) with `p_holm` adjusted over the board's claims, `family` (how many claims) and `verdict`. `vs_best`:
    the same test against the best entry, `p_holm` adjusted over the tests against the best (descriptive).
    `tie`: the test that put the entry in the best's group or apart from it (`tie_test`)."""

    label: str
    entry: dict
    vs_best: dict | None = None
    vs_ce: dict | None = None
    tie: dict | None = None


BASELINE_SPECS = ("ce", "mle")  # cross-entropy: `ce` for text, `mle` (maximum likelihood) for the toys


def control_of(entries: Iterable[dict], entry: dict) -> dict | None:
    """The clean control of an entry's model; of several, the one with the most seeds."""
    found = [e for e in entries if e.get("control") and e["model"] == entry["model"]]
    return max(found, key=lambda e: (len(e["seeds"]), e["name"])) if found else None


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


def _seed_aucs(entry: dict) -> dict[int, float]:
    return {s: v for s, v in zip(entry["seeds"], entry["auc"]["per_seed"]) if v is not None}


def _seed_times(entry: dict) -> dict[int, float]:
    """seed -> restricted time to failure, the seeds that never learned left out."""
    times = {s: f.restricted() for s, f in zip(entry["seeds"], _seed_failures(entry))}
    return {s: t for s, t in times.items() if t is not None}


def compare_entries(a: dict, b: dict, claims: str = TIME, paired: bool = False) -> dict:
    """The board's test of entry `a` against entry `b`: times to failure, or AUCs on a retention board;
    paired by seed on a paired board."""
    if paired:
        return (compare_paired(_seed_aucs(a), _seed_aucs(b), "difference") if claims == RETENTION else
                compare_paired(_seed_times(a), _seed_times(b), "ratio"))
    if claims == RETENTION:
        return compare_retention(_seed_aucs(a), _seed_aucs(b))
    return compare_failures(_seed_failures(a), _seed_failures(b))


def _family(tests: list[dict], untested: int = 0) -> None:
    """Holm over one family, in place: each test gets `p_holm` and `family` (the number of tests in it).
    `untested`: planned tests without a p yet, in the family at p = 1 (so Holm adjusts over the whole plan)."""
    tested = [t for t in tests if t["p_value"] is not None]
    family = len(tested) + untested
    for t, p in zip(tested, holm([t["p_value"] for t in tested], untested)):
        t["p_holm"], t["family"] = p, family
    for t in tests:
        t.setdefault("p_holm", None)
        t.setdefault("family", family)


def untested_claims(rows: Iterable[Ranked], planned: Iterable[str]) -> list[str]:
    """The planned claims (loss specs against CE) that no ranked entry tests yet (absent, or too few seeds)."""
    tested = {r.entry["loss"]["spec"] for r in rows if r.vs_ce is not None and r.vs_ce["p_value"] is not None}
    return [spec for spec in planned if spec not in tested]


def ranking(entries: Iterable[dict], claims: str = TIME, paired: bool = False,
            planned: Iterable[str] = ()) -> list[Ranked]:
    """The board as shown, best first (`rank_entries`). Each entry's claim against CE (Holm over the claims,
    one per entry with a CE to compare with), and each entry's test against the best entry (Holm over those,
    a family of its own). The best entry's group, the entries whose adjusted p against it is >= ALPHA (or
    that have too few seeds to test), share the label "=1" with it: one group, not a chain of neighbours;
    for the pair that is also a claim (the best and its CE) the claim decides (`tie_test`). The clean
    control is not compared. `claims` and `paired`: the board's test (`compare_entries`); `planned`: the claims
    planned when the board was created, each untested one in the claims' family at p = 1."""
    ranked = rank_entries(entries, claims)
    losses = [e for e in ranked if not e.get("control")]
    best = losses[0] if losses else None
    out = [Ranked(str(i + 1), e) for i, e in enumerate(losses)]
    for row in out:
        ce = baseline_of(losses, row.entry)
        if ce is not None and ce is not row.entry:
            row.vs_ce = {**compare_entries(row.entry, ce, claims, paired), "other": ce["name"]}
            if claims == RETENTION and (control := control_of(ranked, row.entry)) is not None:
                row.vs_ce["gap"] = gap_recovered(_seed_aucs(row.entry), _seed_aucs(ce), _seed_aucs(control))
        if row.entry is not best:
            row.vs_best = {**compare_entries(row.entry, best, claims, paired), "other": best["name"]}
    _family([r.vs_ce for r in out if r.vs_ce is not None], len(untested_claims(out, planned)))
    _family([r.vs_best for r in out if r.vs_best is not None])
    for row in out:
        if row.vs_ce is not None:
            row.vs_ce["verdict"] = verdict(row.vs_ce)
    for row in out[1:]:
        row.tie = tie_test(row, out[0])
    tied = [r for r in out[1:] if verdict(r.tie) == "indistinguishable"]
    for row in tied + (out[:1] if tied else []):
        row.label = "=1"
    return out + [Ranked("control", e) for e in ranked if e.get("control")]


def tie_test(row: Ranked, best: Ranked) -> dict | None:
    """The test that decides whether `row` shares the best entry's rank: the board's claim where the pair is
    one (`row` against CE when the best is its CE; the best's claim when `row` is the best's CE), so that a
    rank never reads against a verdict (CE "3" beside the best's "indistinguishable", or CE "=1" beside the
    best's "better"); else the descriptive test against the best."""
    if row.vs_ce is not None and row.vs_ce["other"] == best.entry["name"]:
        return row.vs_ce
    if best.vs_ce is not None and best.vs_ce["other"] == row.entry["name"]:
        return best.vs_ce
    return row.vs_best


@dataclass
class Claim:
    """A claim against CE in parts, for a table cell: `effect` '0.65x [0.50, 0.83]' (ratio to CE, 95%
    bootstrap interval over seeds, unadjusted), `verdict`, `raw` 'p = 0.024', `adjusted` the Holm-adjusted p
    over the board's `family` of claims (None when the board has one claim: nothing to adjust, or when
    there are too few seeds to test), `why`: where the interval and the verdict seem to disagree, the
    reason ('' otherwise), and `gap`: on a retention board with a clean control, the share of CE's gap to
    it the loss closes, '-2% [-19%, +11%]' ('' otherwise)."""

    effect: str
    verdict: str
    raw: str | None
    adjusted: str | None
    family: int
    why: str
    gap: str = ""


def gap_text(gap: dict | None) -> str:
    """The share of CE's gap to the clean control a loss closes (`metrics.gap_recovered`'s result) with its
    interval, '-2% [-19%, +11%]'; '' where there is none (no control, or no gap measured)."""
    gap = gap or {}
    if gap.get("share") is None:
        return ""
    lo, hi = gap["share_ci"]
    interval = f" [{lo:+.0%}, {hi:+.0%}]" if lo is not None and lo != hi else ""
    return f"{gap['share']:+.0%}{interval}"


def _effect(test: dict) -> tuple[str, list, int] | None:
    """The claim's effect as shown ('0.65x [0.50, 0.83]' for a ratio of times, 'AUC +0.050 [+0.021, +0.079]' for
    a difference of AUCs), its interval and the value of no effect; None when there is none to show."""
    if test.get("effect") == "difference":
        if test["diff"] is None:
            return None
        lo, hi = test["diff_ci"]
        interval = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and lo != hi else ""
        return f"AUC {test['diff']:+.3f}{interval}", [lo, hi], 0
    if test["ratio"] is None:
        return None
    lo, hi = test["ratio_ci"]
    digits = 2 if test["ratio"] < 10 else 1  # 31.2x, not 31.15x: seeds do not support four digits
    interval = f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None and lo != hi else ""
    return f"{test['ratio']:.{digits}f}x{interval}", [lo, hi], 1


def claim_parts(test: dict) -> Claim | None:
    """`test` (an entry's `vs_ce`) as a `Claim`; None when there is no effect to show."""
    shown = _effect(test)
    if shown is None:
        return None
    effect, (lo, hi), null = shown
    if test["p_value"] is None:
        return Claim(effect, test["verdict"], None, None, test["family"], "too few seeds", gap_text(test.get("gap")))
    why = ""
    excludes = lo is not None and (lo > null or hi < null)
    if test["verdict"] == "indistinguishable" and excludes and test["min_p"] >= ALPHA:
        seeds = (f"{test['pairs']} paired seeds" if test.get("pairs") is not None else
                 f"{test['n_a']} vs {test['n_b']} seeds")
        why = f"the interval excludes {null}, but {seeds} cannot reach p < {ALPHA:g} (smallest p {test['min_p']:.2g})"
    elif test["verdict"] == "indistinguishable" and excludes:
        why = (f"the interval excludes {null} and the raw p is below {ALPHA:g}, but not after the adjustment"
               if test["p_value"] < ALPHA else
               f"the bootstrap interval excludes {null} but the exact test does not reject even unadjusted "
               f"(a {min(test['n_a'], test['n_b'])}-seed percentile bootstrap runs narrow)")
    elif test["verdict"] != "indistinguishable" and not excludes and lo is not None:
        why = f"the exact test rejects though the bootstrap interval includes {null}"
    adjusted = f"{test['p_holm']:.2g}" if test["family"] > 1 else None
    return Claim(effect, test["verdict"], format_p(test["p_value"], test["splits"]), adjusted, test["family"], why,
                 gap_text(test.get("gap")))


def claim_text(test: dict) -> str:
    """A claim against CE in words, with everything it rests on: '0.65x [0.50, 0.83] indistinguishable
    (p = 0.024 raw, 0.12 after Holm over 5 claims; the interval excludes 1 and the raw p is below 0.05, but
    not after the adjustment)'. The interval is the 95% bootstrap over seeds, unadjusted; where it and the
    verdict seem to disagree, the text says why. On a retention board with a clean control, the share of CE's
    gap to it the loss closes follows ('...; closes -2% [-19%, +11%] of CE's gap to the clean control')."""
    c = claim_parts(test)
    if c is None:
        return "-"
    head, gap = f"{c.effect} {c.verdict}", f"; closes {c.gap} of CE's gap to the clean control" if c.gap else ""
    if c.raw is None:
        return f"{head} ({c.why}){gap}"
    evidence = (f"{c.raw}, the board's only claim" if c.adjusted is None else
                f"{c.raw} raw, {c.adjusted} after Holm over {c.family} claims")
    return f"{head} ({evidence}{'; ' + c.why if c.why else ''}){gap}"
