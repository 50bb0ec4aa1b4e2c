"""Figures the documents quote from the shipped regime boards are the boards' (issue 26 item 5).

Each quote below is a phrase of README.md, BENCHMARKS.md or leaderboards/README.md with its board figures as
`{regime.loss.what}` fields. The fields are computed from the board files by the board's own functions
(`board.time_to_failure_summary`, `ranking.ranking`); the phrase, filled in, must occur in the document (white
space and line breaks aside). A board rebuilt, or a figure edited in a document, and the quote no longer
matches: update the document and the quote together.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from fortifai_bench.leaderboard import board_test, leaderboards_dir, load_board, ranking
from fortifai_bench.leaderboard.ranking import RETENTION, claim_parts
from fortifai_bench.leaderboard.board import time_to_failure_summary
from fortifai_bench.metrics import Failure

REPO = Path(__file__).resolve().parents[1]
REGIMES = {"hot": "collapse_facts", "greedy": "collapse_facts_greedy", "longtail": "collapse_facts_longtail",
           "light": "collapse_wikitext_smol", "heavy": "collapse_wikitext_smol_heavy",
           "facts": "collapse_facts_smol_amd", "gemma": "collapse_facts_gemma"}


def figures(boards: dict[str, dict]) -> dict[str, str]:
    """Every quotable figure of the boards, formatted as the documents print it."""
    out = {}
    for regime, board in boards.items():
        rows = ranking(board["entries"], **board_test(board))
        out[f"{regime}.claims"] = str(sum(r.vs_ce is not None for r in rows))
        out[f"{regime}.n"] = str(len(next(r.entry for r in rows if r.entry["loss"]["spec"] == "ce")["seeds"]))
        if board_test(board)["claims"] == RETENTION:
            out |= retention_figures(regime, rows)
            continue
        for row in rows:
            e = row.entry
            key = f"{regime}.{'control' if e.get('control') else e['loss']['spec']}"
            per_seed = e["time_to_failure"]["per_seed"]
            summary = time_to_failure_summary(per_seed)
            times = [Failure.from_dict(d).restricted() for d in per_seed]
            seed0 = e["seeds"].index(0)
            out |= {f"{key}.ttf": f"{summary['restricted_mean']:.2f}", f"{key}.text": summary["text"],
                    f"{key}.sd": f"{np.std(times, ddof=1):.2f}", f"{key}.seeds": ", ".join(f"{t:.2f}" for t in times),
                    f"{key}.curve": " ".join(f"{np.mean(s['score']['per_seed']):.3f}" for s in e["stages"]),
                    f"{key}.seed0": " ".join(f"{s['score']['per_seed'][seed0]:.3f}" for s in e["stages"])
                    + f" ({times[seed0]:.2f})"}
            if row.vs_ce is not None:
                t = row.vs_ce
                out |= {f"{key}.ratio": f"{t['ratio']:.2f}x", f"{key}.ci": f"[{t['ratio_ci'][0]:.2f}, {t['ratio_ci'][1]:.2f}]",
                        f"{key}.raw": f"{t['p_value']:.2g}", f"{key}.holm": f"{t['p_holm']:.2g}"}
    return out


def retention_figures(regime: str, rows: list) -> dict[str, str]:
    """A retention board's figures: each entry's seeds (n), its AUC of the score over the stages (mean, sd and
    per seed, and its mean curve), and each claim against CE as the page shows it (`ranking.claim_parts`) with
    its p values."""
    out = {}
    for row in rows:
        e = row.entry
        key = f"{regime}.{'control' if e.get('control') else e['loss']['spec']}"
        aucs = e["auc"]["per_seed"]
        out |= {f"{key}.n": str(len(aucs)), f"{key}.auc": f"{np.mean(aucs):.3f}",
                f"{key}.aucs": " ".join(f"{a:.3f}" for a in aucs),
                f"{key}.curve": " ".join(f"{np.mean(s['score']['per_seed']):.3f}" for s in e["stages"])}
        if len(aucs) > 1:  # an arm being grown seed by seed has one seed at first: no sd, no test
            out[f"{key}.sd"] = f"{np.std(aucs, ddof=1):.3f}"
        if row.vs_ce is not None and (claim := claim_parts(row.vs_ce)) is not None:
            out[f"{key}.effect"] = claim.effect
            if claim.gap:
                out[f"{key}.gap"] = claim.gap
            if row.vs_ce["p_value"] is not None:
                out |= {f"{key}.raw": f"{row.vs_ce['p_value']:.2g}", f"{key}.holm": f"{row.vs_ce['p_holm']:.2g}"}
    return out


def _table_row(regime: str, label: str, key: str) -> str:
    return f"| {regime} | {label} | {{{key}.curve}} | {{{key}.text}} | {{{key}.sd}} |"


QUOTES = {
    "README.md": [
        "On the boards CE fails at {hot.ce.ttf} (sd {hot.ce.sd}), {greedy.ce.ttf} (sd {greedy.ce.sd}) and "
        "{longtail.ce.ttf} (sd {longtail.ce.sd}) stages, over {hot.n}, {greedy.n} and {longtail.n} seeds",
        "(TCE 0.9: {hot.tce:0.9.ttf}, {greedy.tce:0.9.ttf} and {longtail.tce:0.9.ttf} stages)",
        "where the board's seed 0 is {hot.ce.seed0}",
        "about half the hot board's CE seed sd ({hot.ce.sd}; seeds {hot.ce.seeds})",
        "CE's AUC {light.ce.auc} against the clean control's {light.control.auc}, and tce:0.9's {light.tce:0.9.auc}, "
        "{light.tce:0.9.effect} against CE (p = {light.tce:0.9.raw} raw, {light.tce:0.9.holm} after Holm",
        "four times the fine-tuning, five seeds an arm: tce:0.9 {heavy.tce:0.9.effect} against CE, p = "
        "{heavy.tce:0.9.raw}) says the same",
        "exact ground truth, five seeds an arm: tce:0.9 {facts.tce:0.9.effect} against CE, p = {facts.tce:0.9.raw})",
        "five seeds an arm: CE's AUC {gemma.ce.auc}, the control's {gemma.control.auc}, tce:0.9 "
        "{gemma.tce:0.9.effect} against CE, p = {gemma.tce:0.9.raw})",
    ],
    "BENCHMARKS.md": [
        *[_table_row(r, label, f"{r}.{k}") for r, losses in {
            "hot": ["ce", "tce:0.9", "tce:0.99", "focal:2"],
            "greedy": ["ce", "tce:0.5", "tce:0.7", "tce:0.9", "tce:0.99", "focal:2"]}.items() for k, label in
          [(x, x) for x in losses] + [("control", "control (ce, clean)")]],
        *[_table_row("longtail (tail questions)", label, f"longtail.{k}") for k, label in
          [("ce", "ce"), ("tce:0.9", "tce:0.9"), ("tce:0.99", "tce:0.99"), ("focal:2", "focal:2"),
           ("control", "control (ce, clean)")]],
        "CE's restricted times per seed: hot {hot.ce.seeds}; greedy {greedy.ce.seeds} (v1:",
        "; longtail {longtail.ce.seeds} (tce:0.9 {longtail.tce:0.9.seeds}; tce:0.99 {longtail.tce:0.99.seeds}; "
        "focal:2 {longtail.focal:2.seeds})",
        "hot: tce:0.9 {hot.tce:0.9.ttf} ({hot.tce:0.9.ratio}, raw p = {hot.tce:0.9.raw}, {hot.tce:0.9.holm} after Holm), "
        "tce:0.99 {hot.tce:0.99.ttf} ({hot.tce:0.99.ratio} {hot.tce:0.99.ci}, raw {hot.tce:0.99.raw}, {hot.tce:0.99.holm}), "
        "focal:2 {hot.focal:2.ttf} **worse** ({hot.focal:2.ratio} {hot.focal:2.ci}, raw {hot.focal:2.raw}, {hot.focal:2.holm})",
        *[f"{{greedy.{k}.ttf}} ({{greedy.{k}.ratio}} {{greedy.{k}.ci}}, raw {{greedy.{k}.raw}}, {{greedy.{k}.holm}}"
          for k in ("tce:0.9", "tce:0.99", "tce:0.7")],
        "tce:0.5 {greedy.tce:0.5.ttf} **worse** ({greedy.tce:0.5.ratio} {greedy.tce:0.5.ci}, raw {greedy.tce:0.5.raw}, "
        "{greedy.tce:0.5.holm}:",
        "focal:2 {greedy.focal:2.ttf} ({greedy.focal:2.ratio} {greedy.focal:2.ci}, raw {greedy.focal:2.raw}, "
        "{greedy.focal:2.holm}: as tce:0.7)",
        "tce:0.9 {longtail.tce:0.9.ttf} (raw {longtail.tce:0.9.raw}, {longtail.tce:0.9.holm}; {longtail.tce:0.9.ratio} "
        "{longtail.tce:0.9.ci})",
        "tce:0.99 {longtail.tce:0.99.ttf} (raw {longtail.tce:0.99.raw}, {longtail.tce:0.99.holm}), focal:2 "
        "{longtail.focal:2.ttf} ({longtail.focal:2.ratio} {longtail.focal:2.ci}, raw {longtail.focal:2.raw}, "
        "{longtail.focal:2.holm} after Holm)",
        *[f"| {r} | {{{r}.claims}} | {{{r}.n}} | {{{r}.ce.ttf}}, {{{r}.ce.sd}} | {spec} | {{{r}.{spec}.sd}} |"
          for r, specs in {"hot": ["tce:0.9", "tce:0.99"], "greedy": ["tce:0.5", "tce:0.7", "tce:0.9", "tce:0.99"],
                           "longtail": ["tce:0.9", "tce:0.99"]}.items() for spec in specs],
        "hot ce {hot.ce.seed0}, tce:0.9 {hot.tce:0.9.seed0}",
        "greedy ce {greedy.ce.seed0}, tce:0.9 {greedy.tce:0.9.seed0}",
        *[f"| {label} | {{light.{k}.aucs}} | {{light.{k}.auc}} | {{light.{k}.sd}} | {{light.{k}.curve}} |"
          for k, label in [("ce", "ce"), ("tce:0.9", "tce:0.9"), ("control", "control (ce, clean)")]],
        *[f"| {k} | {{light.{k}.aucs}} | {{light.{k}.auc}} | {{light.{k}.sd}} | {{light.{k}.effect}}, p = "
          f"{{light.{k}.raw}} raw, {{light.{k}.holm}} after Holm |" for k in ("tce:0.9", "tce:0.99", "focal:2")],
        *[f"{k} {{light.{k}.effect}}, p = {{light.{k}.raw}}{extra}, closes {{light.{k}.gap}} of the gap"
          for k, extra in (("tce:0.9", ""), ("tce:0.99", ""), ("focal:2", " raw, {light.focal:2.holm} after Holm"))],
        "| ce | {light.ce.aucs} | {light.ce.auc} | {light.ce.sd} | baseline |",
        "| control (ce, clean) | {light.control.aucs} | {light.control.auc} | {light.control.sd} | - |",
        "| ce, tce:0.9, control x {heavy.ce.n} | {heavy.ce.auc} | {heavy.control.auc} | tce:0.9 {heavy.tce:0.9.effect}, "
        "p = {heavy.tce:0.9.raw} at {heavy.ce.n} seeds of CE and {heavy.tce:0.9.n} of tce:0.9",
        "| ce, tce:0.9, control x {facts.ce.n} | {facts.ce.auc} | {facts.control.auc} | tce:0.9 {facts.tce:0.9.effect}, "
        "p = {facts.tce:0.9.raw} at five seeds an arm",
        "| ce, tce:0.9, control x {gemma.ce.n} | {gemma.ce.auc} | {gemma.control.auc} | tce:0.9 {gemma.tce:0.9.effect}, "
        "p = {gemma.tce:0.9.raw} at five seeds an arm",
        # each complete five-seed board's section: its table, its claim, its share of the gap
        *[q for r in ("heavy", "facts", "gemma") for q in (
            *[f"| {label} | {{{r}.{k}.aucs}} | {{{r}.{k}.auc}} | {{{r}.{k}.sd}} |"
              for k, label in [("ce", "ce"), ("tce:0.9", "tce:0.9"), ("control", "control (clean)")]],
            f"- **tce:0.9 against CE: {{{r}.tce:0.9.effect}}, p = {{{r}.tce:0.9.raw}}** ({{{r}.ce.n}} vs "
            f"{{{r}.tce:0.9.n}} seeds",
            f"tce:0.9 closes {{{r}.tce:0.9.gap}} of it")],
    ],
    "leaderboards/README.md": [
        "(hot: tce:0.9 {hot.tce:0.9.ttf} vs CE {hot.ce.ttf}, tce:0.99 {hot.tce:0.99.ttf}; greedy: tce:0.7/0.9/0.99 "
        "{greedy.tce:0.7.ttf}/{greedy.tce:0.9.ttf}/{greedy.tce:0.99.ttf} vs CE {greedy.ce.ttf}; "
        "long tail: tce:0.9/0.99 {longtail.tce:0.9.ttf}/{longtail.tce:0.99.ttf} vs CE {longtail.ce.ttf}; all "
        "indistinguishable)",
        "({greedy.tce:0.5.ttf}, raw p = {greedy.tce:0.5.raw}, {greedy.tce:0.5.holm} after Holm)",
        "({greedy.focal:2.ttf}, raw p = {greedy.focal:2.raw}, {greedy.focal:2.holm} after Holm)",
        "(raw p = {hot.focal:2.raw}, {hot.focal:2.holm} after Holm)",
        "({longtail.focal:2.ttf}, raw p = {longtail.focal:2.raw}, {longtail.focal:2.holm} after Holm)",
        "(`collapse_facts`, {hot.n} seeds, CE sd {hot.ce.sd} over seeds), 0.79-0.95 on greedy ({greedy.n} seeds paired by "
        "seed, CE sd {greedy.ce.sd}, TCE up to {greedy.tce:0.9.sd}) and 0.95 on the long tail ({longtail.n} seeds, CE sd "
        "{longtail.ce.sd}, tce:0.9 {longtail.tce:0.9.sd})",
        "CE's AUC is {light.ce.auc} (sd {light.ce.sd}), the clean control's {light.control.auc} (sd "
        "{light.control.sd}), tce:0.9's {light.tce:0.9.auc} (sd {light.tce:0.9.sd}): {light.tce:0.9.effect} against "
        "CE, p = {light.tce:0.9.raw} raw, {light.tce:0.9.holm} after Holm",
        "At {heavy.n} seeds of CE and {heavy.tce:0.9.n} of tce:0.9 (2026-12-07, complete) tce:0.9 reads {heavy.tce:0.9.effect} "
        "against CE (p = {heavy.tce:0.9.raw})",
        "Complete (2026-12-07 15:48): tce:0.9 reads {facts.tce:0.9.effect} against CE (p = {facts.tce:0.9.raw})",
        "Created 2026-12-07 19:57 from CE's five seeds (AUC {gemma.ce.aucs}: mean {gemma.ce.auc}, sd {gemma.ce.sd})",
        "Complete (2026-12-08 03:43): tce:0.9 reads {gemma.tce:0.9.effect} against CE (p = {gemma.tce:0.9.raw}), the "
        "control's AUC {gemma.control.auc} (seeds 0-4: {gemma.control.aucs})",
    ],
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def unmatched(doc: str, quotes: list[str], figs: dict[str, str]) -> list[str]:
    """The quotes, filled in with `figs`, that `doc` does not contain."""
    text = _flat(doc)
    filled = [re.sub(r"\{([^{}]+)\}", lambda m: figs[m.group(1)], q) for q in quotes]
    return [f for f in filled if _flat(f) not in text]


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return {regime: load_board(leaderboards_dir() / f"{task}.json") for regime, task in REGIMES.items()}


@pytest.mark.parametrize("doc", sorted(QUOTES))
def test_documents_quote_the_boards(doc, boards):
    missing = unmatched((REPO / doc).read_text(encoding="utf-8"), QUOTES[doc], figures(boards))
    assert not missing, f"{doc} no longer quotes these board figures as the boards give them: {missing}"


def test_a_board_that_changed_is_caught(boards):
    """The check is not vacuous: move one CE seed on the hot board and README's CE figures stop matching."""
    edited = copy.deepcopy(boards)
    ce = next(e for e in edited["hot"]["entries"] if e["loss"]["spec"] == "ce" and not e.get("control"))
    ce["time_to_failure"]["per_seed"][1]["time"] += 0.25
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert not unmatched(readme, QUOTES["README.md"][:1], figures(boards))
    assert unmatched(readme, QUOTES["README.md"][:1], figures(edited))


def test_a_retention_board_that_changed_is_caught(boards):
    """The same for a retention board: move one CE seed's AUC on the light board and README's quote of its verdict
    (CE's AUC and tce:0.9's difference to it) stops matching."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quote = [q for q in QUOTES["README.md"] if "{light." in q]
    assert quote and not unmatched(readme, quote, figures(boards))
    edited = copy.deepcopy(boards)
    ce = next(e for e in edited["light"]["entries"] if e["loss"]["spec"] == "ce" and not e.get("control"))
    ce["auc"]["per_seed"][0] -= 0.03
    figs = figures(edited)
    assert figs["light.ce.auc"] != figures(boards)["light.ce.auc"] and len(unmatched(readme, quote, figs)) == 1
