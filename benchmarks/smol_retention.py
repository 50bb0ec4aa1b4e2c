"""Retention on a regime where CE never fails: the pretrained-LM board's pre-registered test (BENCHMARKS.md, "A
pretrained LM on WikiText-2", "The light board's design").

On collapse_wikitext_smol CE never falls below the threshold within six stages, so time to failure is censored on
every seed and cannot separate losses. The question is answered by retention: the AUC of KR-split-0 over the
stages (`metrics.area_under_curve`), each loss against CE, by `metrics.compare_retention` (the exact permutation
test over seeds, unpaired; the paired test and the correlation beside it), Holm over the claims against CE, and
described as the share of CE's gap to the clean control each loss closes (`metrics.gap_recovered`, with a
bootstrap interval; none where no gap is measured). The clean control gives the scale: the effect of interest
is a share (`--share`, 0.5) of the AUC gap between CE and the control, and the power to detect it after Holm's
first step (alpha / claims) is simulated (`bench_power.detection_rate`: normal seeds, the exact permutation
test) from the pooled sd of CE and the claimed arms measured so far (the control's spread is left out: no claim
tests it), for each number of seeds up to `--max-seeds`; before the sweep's control has finished, `--gap` gives
the gap (a calibration's), and before any arm has two seeds, `--sd` gives the spread (another board's: say
which). `--effects` adds the power at given changes of AUC against CE's mean (say -0.02,-0.03: the harm a board
can see where CE has no collapse to prevent), the same simulation; it needs CE and the spread, not the control.
`--board` takes an arm's seeds whose runs are not at hand (gone with another machine) from its entry on the board,
as published (verified); a run at hand counts over the board's number of its seed.

    python benchmarks/smol_retention.py --out runs/regimes --regime wikitext_smol --losses tce:0.9 --seeds 0-4
    python benchmarks/smol_retention.py --board leaderboards/collapse_wikitext_smol.json --losses tce:0.99 --seeds 0-5
    python benchmarks/smol_retention.py --out runs/regimes --regime wikitext_smol_heavy --effects=-0.02,-0.03,-0.04
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_power import detection_rate  # noqa: E402  (the power simulation, one definition)
from collapse_regimes import finished_run  # noqa: E402  (the sweep's run layout, one definition)

from fortifai_bench.leaderboard.board import arm_entry, load_board  # noqa: E402
from fortifai_bench.leaderboard.ranking import gap_text  # noqa: E402
from fortifai_bench.metrics import compare_retention, gap_recovered  # noqa: E402
from fortifai_bench.seeds import parse_seeds  # noqa: E402
from fortifai_bench.stats import ALPHA, format_p, holm, smallest_p  # noqa: E402


def finished_aucs(root: Path, regime: str, arm: str, seeds: list[int]) -> dict[int, float]:
    """seed -> AUC of each finished run of one arm ("control" for the clean control) in the sweep's folder."""
    runs = {s: finished_run(root, regime, arm, s) for s in seeds}
    return {s: r["auc"] for s, r in runs.items() if r is not None}


def board_aucs(board: dict | None, arm: str, seeds: list[int]) -> dict[int, float]:
    """seed -> AUC of one arm's seeds on the board (its entry's per-seed AUCs), none without a board."""
    entry = board and arm_entry(board, *(("ce", True) if arm == "control" else (arm, False)))
    pairs = zip(entry["seeds"], entry["auc"]["per_seed"]) if entry else ()
    return {s: a for s, a in pairs if s in seeds and a is not None}


def pooled_sd(arms: list[dict[int, float]]) -> float | None:
    """The within-arm sd pooled over the arms with at least two seeds; None before any has two."""
    groups = [np.array(list(a.values())) for a in arms if len(a) >= 2]
    if not groups:
        return None
    dof = sum(len(g) - 1 for g in groups)
    return float(np.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / dof))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/regimes", help="the sweep's folder (benchmarks/collapse_regimes.py --out)")
    p.add_argument("--regime", default="wikitext_smol")
    p.add_argument("--losses", default="tce:0.9", help="the arms claimed against CE, comma-separated")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--claims", type=int, default=None, help="the board's number of claims (default: --losses')")
    p.add_argument("--share", type=float, default=0.5, help="effect of interest: this share of the CE-control gap")
    p.add_argument("--max-seeds", type=int, default=10)
    p.add_argument("--gap", type=float, default=None,
                   help="the CE-control AUC gap, where the sweep has no finished control yet (default: measured)")
    p.add_argument("--sd", type=float, default=None,
                   help="the seed sd, where no arm has two seeds yet (another board's, said so; default: pooled)")
    p.add_argument("--effects", default="",
                   help="comma-separated changes of AUC against CE's mean (e.g. -0.02,-0.03): power at each")
    p.add_argument("--board", type=Path, default=None,
                   help="a board whose entries give the seeds with no finished run under --out")
    args = p.parse_args(argv)
    try:
        effects = [float(x) for x in args.effects.split(",") if x.strip()]
    except ValueError:
        p.error(f"--effects: comma-separated numbers (AUC changes), got {args.effects!r}")
    root, seeds = Path(args.out), parse_seeds(args.seeds)
    losses = [x for x in args.losses.split(",") if x]
    board = load_board(args.board) if args.board else None

    def aucs(arm: str) -> dict[int, float]:
        both = {**board_aucs(board, arm, seeds), **finished_aucs(root, args.regime, arm, seeds)}
        return dict(sorted(both.items()))

    ce, control = aucs("ce"), aucs("control")
    arms = {loss: aucs(loss) for loss in losses}
    m = args.claims or (len(board["planned_claims"]) if board and board.get("planned_claims") else len(losses))

    print(f"{args.regime}: AUC of KR-split-0 over the stages, finished runs of seeds {args.seeds} in {root}"
          + (f", other seeds from {args.board}" if board else ""))
    print("| arm | seeds | AUC per seed | mean | sd |")
    print("|---|---|---|---:|---:|")
    for name, arm in [("ce", ce), *arms.items(), ("control (ce, clean)", control)]:
        v = np.array(list(arm.values()))
        sd = f"{v.std(ddof=1):.3f}" if len(v) >= 2 else "-"
        print(f"| {name} | {','.join(map(str, arm)) or '-'} | {' '.join(f'{x:.3f}' for x in v) or '-'} | "
              f"{v.mean() if len(v) else float('nan'):.3f} | {sd} |")

    tests = {loss: compare_retention(arm, ce) for loss, arm in arms.items()}
    # the board's rule with planned claims (`stats.holm`): a claim of the family not given counts at p = 1
    untested = max(0, m - sum(t["p_value"] is not None for t in tests.values()))
    adjusted = dict(zip(tests, holm([t["p_value"] for t in tests.values()], untested)))
    print(f"\nClaims against CE (Holm over the board's {m}"
          + (f", {untested} not tested here counted at p = 1, as the board with planned claims does)"
             if untested else ")") + ":")
    for loss, t in tests.items():
        if t["diff"] is None:
            print(f"- {loss}: no finished runs on a side")
            continue
        adj = "-" if adjusted[loss] is None else f"{adjusted[loss]:.2g}"
        line = f"- {loss}: AUC {t['diff']:+.3f} against CE, {format_p(t['p_value'], t['splits'])} raw, {adj} after Holm"
        if t["paired"]:
            corr = t["paired"]["correlation"]
            line += (f"; paired ({t['paired']['n']} seeds): correlation {'-' if corr is None else f'{corr:.2f}'}, "
                     f"sign-flip {format_p(t['paired']['p_value'])}")
        print(line)
    if control:
        gap_table(arms, ce, control)

    sd = pooled_sd([ce, *arms.values()])
    sd_from = "pooled sd" if sd is not None else "--sd"
    sd = sd if sd is not None else args.sd
    if not ce or sd is None or not (control or args.gap is not None or effects):
        print("\nPower: needs finished CE runs, two seeds of an arm (or --sd), and finished control runs (or --gap, "
              "or --effects)")
        return 0
    ce_mean = float(np.mean(list(ce.values())))
    if control or args.gap is not None:
        gap = float(np.mean(list(control.values())) - ce_mean) if control else args.gap
        effect = args.share * gap
        print(f"\nPower at alpha {ALPHA:g} / {m} claims (Holm's first step), unpaired, {sd_from} {sd:.3f}; "
              f"CE-control gap {gap:.3f} ({'measured' if control else '--gap'}), "
              f"effect of interest {args.share:g} x gap = {effect:.3f}:")
        power_table(ce_mean, sd, m, args.max_seeds, {"the effect": effect, "the whole gap": gap})
    if effects:
        print(f"\nPower at given changes of AUC against CE's mean {ce_mean:.3f} (--effects), alpha {ALPHA:g} / {m} "
              f"claims, unpaired, {sd_from} {sd:.3f}:")
        power_table(ce_mean, sd, m, args.max_seeds, {f"{d:+.3f}": d for d in effects})
    return 0


def gap_table(arms: dict[str, dict[int, float]], ce: dict[int, float], control: dict[int, float]) -> None:
    """Each loss's share of CE's gap to the clean control closed (`metrics.gap_recovered`), with its interval,
    as the board shows it (`ranking.gap_text`)."""
    gaps = {loss: gap_recovered(arm, ce, control) for loss, arm in arms.items()}
    first = next(iter(gaps.values()), gap_recovered({}, ce, control))  # the gap is CE's and the control's alone
    lo, hi = first["gap_ci"]
    gap = "-" if first["gap"] is None else f"{first['gap']:.3f}"
    print(f"\nShare of CE's AUC gap to the clean control closed (descriptive: 1 = the control's retention, 0 = CE's; "
          f"95% bootstrap over seeds, unadjusted); the gap {gap}"
          + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]") + ":")
    for loss, g in gaps.items():
        if g["share"] is None:
            why = ("the gap's interval reaches 0: no collapse measured to recover" if g["gap_ci"][0] is not None
                   else "fewer than two seeds on an arm")
            print(f"- {loss}: no share ({why})")
        else:
            print(f"- {loss}: {gap_text(g)} ({len(arms[loss])} seeds)")


def power_table(ce_mean: float, sd: float, m: int, max_seeds: int, effects: dict[str, float]) -> None:
    """Power to detect each change of mean AUC, for 3 to `max_seeds` seeds per arm, at Holm's first step."""
    print("| seeds per arm | " + " | ".join(f"power at {name}" for name in effects) + " |")
    print("|---:|" + "---:|" * len(effects))
    for n in range(3, max_seeds + 1):  # AUCs are accuracies' means: normal seeds cut to [0, 1], unpaired
        at = [detection_rate(n, (ce_mean, sd), (ce_mean + d, sd), 0.0, 1.0, ALPHA / m, paired=False)
              for d in effects.values()]
        least = smallest_p(n, n)  # the exact test's floor: above alpha / m, no effect however large is detected
        floor = "" if least <= ALPHA / m else f" ({n} vs {n} seeds cannot give p below {least:.2g} > {ALPHA / m:.2g})"
        cells = [f"{at[0]:.2f}{floor}", *(f"{a:.2f}" for a in at[1:])]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
