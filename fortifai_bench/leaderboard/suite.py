"""The suite board: losses x regimes. A regime is a collapse task with its own board (`leaderboards/<task>.json`);
the suite puts several boards side by side.

    fortifai-bench leaderboard suite leaderboards/collapse_facts.json leaderboards/collapse_facts_greedy.json
    fortifai-bench leaderboard suite BOARD... --markdown
    fortifai-bench leaderboard suite BOARD... --html suite.html

One row per loss (spec, arguments, model), one column per regime. A cell is what that regime's board ranks by: the
loss's restricted mean time to failure with its interval ("k/n never failed" where seeds were censored), or on a
board whose claims compare retention its AUC of the score over the stages; then its claim against CE there, exactly
as that board shows it (`leaderboard.ranking.claim_text`: the ratio to CE with its interval, or the difference of
AUCs, better / worse / indistinguishable by the exact permutation test over seeds Holm-adjusted over that board's
claims against CE, the raw and the adjusted p), so the suite never disagrees with its boards. A last column counts
each loss's verdicts over the regimes; a last row counts each regime's verdicts over the losses. Nothing is stored:
the suite is computed from the boards when shown.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

from fortifai_bench.errors import FortifaiError
from fortifai_bench.leaderboard.board import canonical, stat_bounds
from fortifai_bench.leaderboard.ranking import RETENTION, Ranked, board_test, claim_text, ranking
from fortifai_bench.leaderboard.render import (STYLE, Notes, cell_lines, claim_lines, fmt_args, fmt_stat, links_html,
                                               md_cell, printable)
from fortifai_bench.models import short_name


VERDICTS = ("better", "worse", "indistinguishable")


@dataclass
class Suite:
    regimes: list[str]                                           # "collapse_facts v2", one per board
    rows: dict[tuple, dict[str, Ranked]] = field(default_factory=dict)  # loss key -> regime -> its row there
    claims: dict[str, str] = field(default_factory=dict)         # regime -> what its board's claims compare

    def counts(self, cells) -> dict[str, int]:
        verdicts = [r.vs_ce["verdict"] for r in cells if r.vs_ce is not None]
        return {v: verdicts.count(v) for v in VERDICTS}

    def loss_counts(self, key: tuple) -> dict[str, int]:
        return self.counts(self.rows[key].values())

    def regime_counts(self, regime: str) -> dict[str, int]:
        return self.counts(cells[regime] for cells in self.rows.values() if regime in cells)


def loss_key(entry: dict) -> tuple:
    return (bool(entry.get("control")), entry["loss"]["spec"], canonical(entry["loss"]["args"]), entry["model"])


def build_suite(boards: list[tuple[str, dict]]) -> Suite:
    """`boards`: (where, board) pairs, one per regime. Where a board holds one loss with several seed sets,
    the entry with the most seeds stands for it."""
    suite = Suite([])
    seen: dict[str, str] = {}
    for where, board in boards:
        name = board["task"]["name"]
        if name in seen:
            raise FortifaiError(f"{where}: regime {name} is already given by {seen[name]}; one board per regime")
        seen[name] = where
        regime = f"{name} v{board['task']['version']}"
        suite.regimes.append(regime)
        suite.claims[regime] = board_test(board)["claims"]
        for row in ranking(board["entries"], **board_test(board)):
            cells = suite.rows.setdefault(loss_key(row.entry), {})
            if regime not in cells or len(row.entry["seeds"]) > len(cells[regime].entry["seeds"]):
                cells[regime] = row
    suite.rows = dict(sorted(suite.rows.items(), key=lambda kv: _row_order(suite, kv[0])))
    return suite


def _row_order(suite: Suite, key: tuple) -> tuple:
    """CE first, then the losses by how often they beat CE (then how rarely they lose), the control last."""
    counts = suite.loss_counts(key)
    return (key[0], key[1] != "ce", -counts["better"], counts["worse"], key[1:])


def loss_label(key: tuple, models: set[str]) -> str:
    control, spec, args, model = key
    text = spec + (f" ({fmt_args(json.loads(args))})" if args != "{}" else "")
    if len(models) > 1:
        text += f" [{short_name(model)}]"
    return text + (" (clean control)" if control else "")


def ttf_text(row: Ranked) -> str:
    """'2.53 [2.10, 2.96]', '>= 2.85 [2.40, 3.00], 2/5 never failed' style: the restricted mean time to
    failure and its interval over seeds, and how many seeds never failed or never learned."""
    ttf = row.entry["time_to_failure"]
    mean, (lo, hi) = ttf["restricted_mean"], ttf["restricted_ci"]
    if mean is None:
        return "never learned"
    return f"{mean:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if lo is not None and lo != hi else "") + _censored(ttf)


def auc_text(row: Ranked) -> str:
    """'AUC 0.861 [0.852, 0.871], 6/6 never failed': a retention board's measure, the mean AUC of the score over
    the stages with its 95% t-interval over seeds as the board shows it (`render.fmt_stat`, cut to the score's
    range), and the censored seeds that made its board compare retention."""
    auc = row.entry["auc"]
    if auc["mean"] is None:
        return "no AUC"
    return f"AUC {fmt_stat(auc, stat_bounds(row.entry['score_name'])['auc'])}" + _censored(row.entry["time_to_failure"])


def _censored(ttf: dict) -> str:
    text = f", {ttf['never_failed']}/{ttf['n']} never failed" if ttf["never_failed"] else ""
    return text + (f", {ttf['never_learned']}/{ttf['n']} never learned" if ttf["never_learned"] else "")


def measure_text(suite: Suite, regime: str, row: Ranked) -> str:
    """A cell's first part: what the regime's board ranks and tests by."""
    return auc_text(row) if suite.claims.get(regime) == RETENTION else ttf_text(row)


def verdict_text(row: Ranked) -> str:
    if row.entry.get("control"):
        return "control"
    test = row.vs_ce
    if test is None:
        return "baseline" if row.entry["loss"]["spec"] == "ce" else "no CE entry"
    return claim_text(test)


def counts_text(counts: dict[str, int]) -> str:
    """'1 better, 0 worse, 2 indistinguishable'; '-' where there was no verdict (CE itself, the control)."""
    if not any(counts.values()):
        return "-"
    return f"{counts['better']} better, {counts['worse']} worse, {counts['indistinguishable']} indistinguishable"


def table(suite: Suite) -> list[list[str]]:
    """Header, one row per loss, the summary row; each regime cell 'time to failure; verdict'."""
    models = {key[3] for key in suite.rows}
    out = [["loss"] + suite.regimes + ["vs CE over regimes"]]
    for key, cells in suite.rows.items():
        out.append([loss_label(key, models)]
                   + [f"{measure_text(suite, r, cells[r])}; {verdict_text(cells[r])}" if r in cells else "-"
                      for r in suite.regimes]
                   + [counts_text(suite.loss_counts(key))])
    out.append(["losses vs CE"] + [counts_text(suite.regime_counts(r)) for r in suite.regimes] + [""])
    return out


LEGEND = ("Each cell: the restricted mean time to failure (stages from M_0, a seed that never fails counted at the "
          "last stage) with its 95% interval over seeds (on a board whose claims compare retention, the mean AUC of "
          "the score over the stages with its 95% t-interval instead), and the claim against CE on that regime's "
          "board: the ratio "
          "of restricted means with its 95% bootstrap interval over seeds, better / worse at Holm-adjusted p < 0.05 "
          "(the exact permutation test over seeds, Holm over that board's claims against CE, one per entry), else "
          "indistinguishable, with the raw and the adjusted p (3 vs 3 seeds can never reach 0.05: their smallest p "
          "is 0.1). On a board whose claims compare retention (publish --claims retention) the claim is the "
          "difference of AUCs over stages instead ('AUC +0.050 [...]'), tested the same way, followed, where that "
          "board has a clean control, by the share of CE's AUC gap to the control the loss closes (descriptive, "
          "not a test). On a board paired by seed "
          "(publish --paired) the test is the exact sign-flip test on per-seed differences and the interval resamples "
          "the seeds' pairs.")


def render_suite_text(suite: Suite) -> str:
    rows = [[printable(c) for c in r] for r in table(suite)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["Suite: " + ", ".join(printable(r) for r in suite.regimes) + ". " + LEGEND]
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def render_suite_markdown(suite: Suite) -> str:
    rows = table(suite)
    lines = ["### Suite: " + ", ".join(md_cell(r) for r in suite.regimes), "", LEGEND, "",
             "| " + " | ".join(md_cell(c) for c in rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _html_cell(suite: Suite, regime: str, row: Ranked | None, index: int, notes: Notes) -> str:
    """A regime cell on the page: what its board ranks by (`measure_text`), then the claim against CE on that regime's board as
    the board page shows it (`render.claim_lines`), or what stands in for it (baseline, control)."""
    if row is None:
        return f'<td class="r{index}">{cell_lines("-")}</td>'
    verdict = row.vs_ce["verdict"] if row.vs_ce else "none"
    claim = claim_lines(row.vs_ce, notes) if row.vs_ce else [_e(verdict_text(row))]
    title = f' title="{_e(claim_text(row.vs_ce))}"' if row.vs_ce else ""
    return f'<td class="verdict-{_e(verdict)} r{index}"{title}>{cell_lines(_e(measure_text(suite, regime, row)), *claim)}</td>'


def _loss_cell(key: tuple, models: set[str]) -> str:
    """The loss on the page: its spec, then its arguments (and its model where the suite has several)."""
    control, spec, args, model = key
    second = fmt_args(json.loads(args)) + (f" [{short_name(model)}]" if len(models) > 1 else "")
    return f'<td class="loss">{cell_lines(_e(spec + (" (clean control)" if control else "")), _e(second))}</td>'


def _counts_cell(counts: dict[str, int], index: str) -> str:
    if not any(counts.values()):
        return f'<td class="{index}">{cell_lines("-")}</td>'
    lines = cell_lines(f"{counts['better']} better, {counts['worse']} worse",
                       f"{counts['indistinguishable']} indistinguishable", sub_from=2)
    return f'<td class="{index}">{lines}</td>'


def _regime_head(suite: Suite, regime: str) -> str:
    family = max((cells[regime].vs_ce["family"] for cells in suite.rows.values()
                  if regime in cells and cells[regime].vs_ce is not None), default=0)
    sub = f"after Holm over its {family} claims" if family > 1 else "one claim: nothing to adjust"
    return f"<th>{cell_lines(_e(regime), _e(sub))}</th>"


def render_suite_html(suite: Suite) -> str:
    """One static page, no script: nothing on it can run or load anything (CSP default-src 'none'). Each
    cell is three lines at most: time to failure (or AUC), the claim, its p values."""
    models = {key[3] for key in suite.rows}
    notes = Notes()
    heads = (f"<th>{cell_lines('loss', 'arguments')}</th>" + "".join(_regime_head(suite, r) for r in suite.regimes)
             + f"<th>{cell_lines('vs CE', 'over regimes')}</th>")
    body = []
    for key, cells in suite.rows.items():
        body.append(f"<tr>{_loss_cell(key, models)}"
                    + "".join(_html_cell(suite, r, cells.get(r), i, notes) for i, r in enumerate(suite.regimes))
                    + _counts_cell(suite.loss_counts(key), "summary") + "</tr>")
    totals = "".join(_counts_cell(suite.regime_counts(r), f"r{i}") for i, r in enumerate(suite.regimes))
    style = STYLE + ("td.verdict-better { background: #e3f4e1; } td.verdict-worse { background: #f9e0de; } "
                     "tfoot td { font-weight: bold; } th { vertical-align: bottom; } "
                     "#suite { font-size: 13px; } #suite th, #suite td { padding: 0.25em 0.5em; } "
                     "ol.notes { font-size: 0.88em; color: #444; }")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fortifai-bench suite: {_e(", ".join(suite.regimes))}</title>
<style>{style}</style></head>
<body>
<h1>Suite: losses x regimes</h1>
{links_html()}
<p>{_e(LEGEND)}</p>
<table id="suite"><thead><tr>{heads}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
<tfoot><tr><td class="loss">losses vs CE</td>{totals}<td></td></tr></tfoot></table>
{notes.html()}
</body></html>
"""
