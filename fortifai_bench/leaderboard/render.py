"""Showing a board: a terminal table, a Markdown table, and one self-contained HTML page.

Every string that comes from a board is untrusted (anyone can open a pull request with a loss named
`<script>...`): the terminal table replaces control characters, Markdown escapes its syntax and HTML, and the
HTML page escapes every string with `html.escape` and only ever sets `textContent` from script. The page also
carries a Content-Security-Policy that allows its own script (by hash) and nothing else, so even a missed
escape could not run code or fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import unicodedata
from typing import Any

from fortifai_bench import __version__
from fortifai_bench.leaderboard.board import canonical, stat_bounds
from fortifai_bench.leaderboard.ranking import (BASELINE_SPECS, RETENTION, TIE_ALPHA, Ranked, claim_parts,
                                               board_test, claim_text, ranking, untested_claims)
from fortifai_bench.leaderboard.sparkline import curve_svg, y_range
from fortifai_bench.metrics import clip_interval
from fortifai_bench.models import short_name
from fortifai_bench.results import runtime_note
from fortifai_bench.seeds import format_seeds
from fortifai_bench.stats import format_number, format_p

PAPER_URL = "https://arxiv.org/abs/2509.08972"  # Shabgahi et al. 2025, ForTIFAI (TCE)
AUTHORS_CODE_URL = "https://github.com/pedramaghazadeh/ForTIFAI"

COLUMNS = ["#", "loss", "args", "model", "seeds", "time to failure", "vs CE", "AUC", "final score"]
# How to read a board, one sentence per point: the terminal and Markdown tables join them, the page lists them.
HOW_TO_READ = (
    "Tests: the exact permutation test over seeds on the restricted time to failure (every split of the seeds; "
    "3 vs 3 seeds cannot give p below 0.1, 5 vs 5 not below 2/252).",
    f"vs CE is the board's claim, one per entry: the ratio of restricted means to CE's with its 95% bootstrap "
    f"interval over seeds (unadjusted), then better / worse at Holm-adjusted p < {TIE_ALPHA:g} (Holm over the "
    f"claims against CE only), else indistinguishable, with the raw and the adjusted p.",
    f"The rank is descriptive: =1 marks the entries indistinguishable from the entry with the longest mean, "
    f"itself included (its own Holm family of tests against that entry, adjusted p >= {TIE_ALPHA:g} or fewer "
    f"than 2 seeds; the best is picked from the data, so this group claims nothing; between the best and CE "
    f"the claim decides); a lone 1 only when that entry is apart from all others, CE included.",
    "The clean control is a ceiling, not ranked.",
)
TIES = " ".join(HOW_TO_READ)
# A retention board (`publish --claims retention`) reads the same, with the AUC over stages in place of the time.
HOW_TO_READ_RETENTION = (
    "This board's claims compare retention, not time to failure, chosen on CE and the control when the board was "
    "created: where CE never falls below the threshold within the stages every seed is censored and times cannot "
    "tell losses apart, and where CE's times spread widely they tell them apart with too little power.",
    "Tests: the exact permutation test over seeds on the AUC of the score over the stages (every split of the "
    "seeds; 3 vs 3 seeds cannot give p below 0.1, 5 vs 5 not below 2/252).",
    f"vs CE is the board's claim, one per entry: the difference of mean AUCs to CE's with its 95% bootstrap "
    f"interval over seeds (unadjusted), then better / worse at Holm-adjusted p < {TIE_ALPHA:g} (Holm over the "
    f"claims against CE only), else indistinguishable, with the raw and the adjusted p; where the board has a "
    f"clean control, then the share of CE's AUC gap to it that the entry closes (1 = the control's retention, 0 = "
    f"CE's; 95% bootstrap interval over seeds; descriptive, not a test; none where no gap is measured).",
    HOW_TO_READ[2].replace("the longest mean", "the highest mean AUC"),
    HOW_TO_READ[3],
)


def claims_of(board: dict) -> str:
    """What the board's tests compare (`ranking.CLAIMS`; `ranking.board_test` reads the field)."""
    return board_test(board)["claims"]


# A board created with `publish --paired` reads the same, with its test and intervals paired by seed.
PAIRED_TEST = ("Tests: the runs are paired by seed (a seed gives every loss the same base and the same data order; "
               "chosen when the board was created), and the test is the exact sign-flip test on the per-seed "
               "differences of {quantity} (every one of the 2^n swaps; 5 seeds cannot give p below 1/16, 9 not below "
               "2/512); the intervals resample the seeds' pairs.")


def how_to_read(board: dict, ranked: list[Ranked]) -> tuple[str, ...]:
    """The board's reading guide, one sentence a point; `ranked`: the board as ranked (`ranking`)."""
    retention = claims_of(board) == RETENTION
    guide = list(HOW_TO_READ_RETENTION if retention else HOW_TO_READ)
    test = board_test(board)
    if test["paired"]:
        at = 1 if retention else 0  # the "Tests:" sentence
        guide[at] = PAIRED_TEST.format(quantity="the AUC" if retention else "the restricted time to failure")
    if test["planned"]:
        guide.insert(2 if retention else 1, planned_text(test["planned"], ranked))
    return tuple(guide)


def planned_text(planned: tuple[str, ...], ranked: list[Ranked]) -> str:
    """The sentence of a board with planned claims: the plan, and which of it no entry tests yet."""
    untested = untested_claims(ranked, planned)
    now = (f"not yet tested: {', '.join(untested)}, each counted at p = 1, so a verdict can only strengthen as "
           f"they land" if untested else "every one is tested")
    return (f"The claims were planned when the board was created: {', '.join(planned)} against CE; Holm adjusts "
            f"over all of them from the first entry on ({now}).")


def fmt_ttf(ttf: dict) -> str:
    """`metrics.summarize_failures`'s text: a t-interval only when every seed failed, else a bound and how
    many seeds never failed (censored) or never learned."""
    return ttf["text"]


def rank_p(row: Ranked) -> str:
    """"p = 0.42": the Holm-adjusted p of the test that put an entry in the best's group (`Ranked.tie`), ""
    for the best entry itself, an entry apart from it, or one too short of seeds to test."""
    test = row.tie
    if not row.label.startswith("=") or test is None or test.get("p_holm") is None:
        return ""
    return format_p(test["p_holm"], test["splits"])


def fmt_rank(row: Ranked) -> str:
    """"1", "4", "control", "=1" for the best entry of a group, or "=1 (p = 0.42)" with the Holm-adjusted
    p that tied it to the best entry (`rank_p`)."""
    p = rank_p(row)
    return f"{row.label} ({p})" if p else row.label


def fmt_vs_ce(row: Ranked) -> str:
    """The claim against CE (`ranking.claim_text`): ratio, interval, verdict, raw and adjusted p; "baseline"
    for CE itself."""
    test = row.vs_ce
    if row.entry.get("control"):
        return "-"
    if test is None:
        return "baseline" if row.entry["loss"]["spec"] in BASELINE_SPECS else "-"
    return claim_text(test)


def fmt_stat(stat: dict, bounds: tuple | None = None) -> str:
    """'0.776 [0.752, 0.800]': mean and interval, the interval cut to `bounds` (a board published before
    intervals were cut may hold one past them)."""
    lo, hi = clip_interval(stat["ci"], bounds)
    if stat["n"] > 1 and lo is not None and lo != hi:
        return f"{format_number(stat['mean'])} [{format_number(lo)}, {format_number(hi)}]"
    return format_number(stat["mean"])


def fmt_args(args: dict) -> str:
    """Loss arguments for display; floats to 4 significant digits (the board keeps them exactly)."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else canonical(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(args.items())) if args else ""


def fmt_loss(e: dict) -> str:
    return e["loss"]["spec"] + (" (clean control)" if e.get("control") else "")


def rows(ranked: list[Ranked]) -> list[list[str]]:
    out = []
    for row in ranked:
        e = row.entry
        bounds = stat_bounds(e["score_name"])
        out.append([fmt_rank(row), fmt_loss(e), fmt_args(e["loss"]["args"]), short_name(e["model"]) + runtime_note(e),
                    format_seeds(e["seeds"]), fmt_ttf(e["time_to_failure"]), fmt_vs_ce(row),
                    fmt_stat(e["auc"], bounds["auc"]), fmt_stat(e["final_score"], bounds["final_score"])])
    return out


def printable(text: str) -> str:
    """No terminal escape sequences or line breaks from a board reach the terminal."""
    return "".join(c if unicodedata.category(c)[0] != "C" else f"\\x{ord(c):02x}" for c in text)


def title(board: dict) -> str:
    t = board["task"]
    return f"{t['name']} v{t['version']}"


def render_text(board: dict) -> str:
    ranked = ranking(board["entries"], **board_test(board))
    table = [COLUMNS] + [[printable(c) for c in r] for r in rows(ranked)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    order = (f"AUC of {printable(_score_name(board))}, then time to failure (threshold {_threshold(board)})"
             if claims_of(board) == RETENTION else
             f"time to failure (threshold {_threshold(board)}), then AUC of {printable(_score_name(board))}")
    lines = [printable(title(board)) + f" - ranked by {order}; " + " ".join(how_to_read(board, ranked))]
    for j, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not board["entries"]:
        lines.append("(no entries)")
    return "\n".join(lines) + "\n"


def md_cell(text: str) -> str:
    text = html.escape(" ".join(printable(text).split()), quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def render_markdown(board: dict) -> str:
    ranked = ranking(board["entries"], **board_test(board))
    lines = [f"### {md_cell(title(board))}", "",
             f"Ranked by {'AUC, then by ' if claims_of(board) == RETENTION else ''}time to failure (first stage "
             f"with {md_cell(_score_name(board))} below {_threshold(board)}, interpolated, in stages from M_0; a "
             f"seed that never fails counts as the last stage){'' if claims_of(board) == RETENTION else ', then by AUC'}"
             f". {' '.join(how_to_read(board, ranked))}", "",
             "| " + " | ".join(md_cell(c) for c in COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("#",) else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows(ranked)]
    return "\n".join(lines) + "\n"


def _score_name(board: dict) -> str:
    return board["entries"][0]["score_name"] if board["entries"] else "score"


def _threshold(board: dict) -> str:
    return f"{board['entries'][0]['failure_threshold']:g}" if board["entries"] else "-"


# ----------------------------------------------------------------------------------------------- HTML
#
# A row of the page is one or two lines of text: every cell is built of `<div class="line">` lines that never
# wrap (what would not fit on them goes to a tooltip or a note under the table), and the table scrolls sideways
# inside its box where the window is narrower than the table.

_SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("board");
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  function value(row, key, type) {
    var v = row.getAttribute("data-" + key);
    if (type === "num") { var x = parseFloat(v); return isNaN(x) ? -Infinity : x; }
    return v === null ? "" : v;
  }
  function sortBy(key, dir) {
    var head = null;
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].getAttribute("data-key") === key) { head = heads[i]; }
      heads[i].removeAttribute("aria-sort");
    }
    if (head === null) { return; }
    var type = head.getAttribute("data-type");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, key, type), y = value(b, key, type);
      var c = type === "num" ? x - y : (x < y ? -1 : x > y ? 1 : 0);
      if (c === 0) { c = value(a, "rank", "num") - value(b, "rank", "num"); return c; }
      return dir === "desc" ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    head.setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
    table.setAttribute("data-sorted", key + ":" + dir);
  }
  for (var i = 0; i < heads.length; i++) {
    (function (head) {
      if (!head.getAttribute("data-key")) { return; }
      head.addEventListener("click", function () {
        var now = head.getAttribute("aria-sort");
        sortBy(head.getAttribute("data-key"), now === "ascending" ? "desc" : "asc");
      });
    })(heads[i]);
  }
  // A link can carry a sort order: page.html#sort=auc&dir=desc
  var m = /sort=([a-z_]+)(?:&dir=(asc|desc))?/.exec(window.location.hash);
  if (m) { sortBy(m[1], m[2] || "asc"); }
  // A row's "runs" link (#runs-NAME) opens that entry's runs under the table
  function openRuns() {
    var target = document.getElementById(window.location.hash.slice(1));
    if (target !== null && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openRuns);
  openRuns();
})();
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }
th[data-key] { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; }
details { margin-top: 0.3em; font-size: 0.85em; }
.line { white-space: nowrap; }
.sub { font-size: 0.88em; color: #666; }
"""

BOARD_STYLE = """
body { margin: 1.2em 1em; }
p, ul, ol { line-height: 1.4; }
ul.how { padding-left: 1.2em; font-size: 0.92em; }
.scroll { overflow-x: auto; }
#board th.rank, #board td.rank { position: sticky; left: 0; width: 4.2em; min-width: 4.2em; max-width: 4.2em; }
#board th.loss, #board td.loss { position: sticky; left: 4.8em; }
#board th.rank, #board td.rank, #board th.loss, #board td.loss { background: #fff; z-index: 1; }
#board { font-size: 13px; }
#board th, #board td { padding: 0.25em 0.3em; }
#board th { vertical-align: bottom; }
#board td.num, #board th.num { text-align: right; }

#board td.args { font-size: 0.85em; }
h2 { font-size: 1.1em; margin-top: 1.5em; }
.prov { margin: 0.3em 0 0.8em 1.2em; }
#board .verdict-better { color: #1a7f37; font-weight: 600; }
#board .verdict-worse { color: #b42318; font-weight: 600; }
#board sup a { text-decoration: none; }
ol.notes { font-size: 0.88em; color: #444; }
svg text { font-size: 8px; fill: #555; font-variant-numeric: tabular-nums; }
svg .ci { fill: #4a7bd1; fill-opacity: 0.2; }
svg .mean { fill: none; stroke: #1f4fa8; stroke-width: 1.4; }
svg .dot { fill: #1f4fa8; }
svg .fail { stroke: #c0392b; stroke-dasharray: 3 2; stroke-width: 1; }
svg .axis, svg .tick { stroke: #999; stroke-width: 0.6; }
svg .fail-label { fill: #c0392b; }
"""

# (header, sub-header, data key, type, class) for the columns; None key = not sortable.
# The results first, the configuration (args, seeds and their runs) last: a window narrower than the table
# shows the rank, the loss and its claim, and scrolls to the rest.
_HEADERS = [("#", "", "rank", "num", "num rank"), ("loss", "model", "loss", "str", "loss"),
            ("time to failure", "stages, 95% CI", "ttf", "num", "num"),
            ("vs CE: ratio [95% CI], verdict", "@FAMILY@", "vsce", "num", ""),
            ("AUC", "95% CI", "auc", "num", "num"), ("final score", "95% CI", "final", "num", "num"),
            ("@SCORE@", "by stage, 95% band", None, None, ""), ("args", "", "args", "str", ""),
            ("seeds", "", "seeds", "str", "")]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def cell_lines(*lines: str, sub_from: int = 1) -> str:
    """Cell lines, already escaped: the first plain, the later ones small ('sub'); empty lines dropped."""
    return "".join(f'<div class="line{" sub" if i >= sub_from else ""}">{line}</div>'
                   for i, line in enumerate(lines) if line)


def _run_item(r: dict) -> str:
    """One seed's provenance: its command, date and commit, and a link to its results where the run folder
    was recorded (a relative link, as the page is read beside the runs)."""
    folder = r.get("run_dir")
    link = f' <a href="{_e(folder.rstrip("/") + "/results.json")}">results</a>' if folder else ""
    commit = f", commit <code>{_e(r['git'])}</code>" if r.get("git") else ""
    cpu = r.get("cpu") or {}
    where = f", CPU {_e(cpu.get('model'))} ({_e(cpu.get('torch_capability') or '-')})" if cpu else ""
    base = f", base M_0 <code>{_e(r['base_sha256'][:16])}</code>" if r.get("base_sha256") else ""
    return (f"<li>seed {_e(r['seed'])}: <code>{_e(r['command'])}</code> ({_e(r['date'])}{commit}{where}{base})"
            f"{link}</li>")


def _entry_base(entry: dict) -> str:
    """The entry's one base, or where its seeds sampled a base each (model.pretrain.seed: run), how many."""
    if entry.get("base_sha256"):
        return entry["base_sha256"]
    per_seed = {r["base_sha256"] for r in entry["runs"] if r.get("base_sha256")}
    return f"one per seed ({len(per_seed)} bases, under each seed)" if per_seed else "not recorded"


def args_lines(args: dict, width: int = 24) -> list[str]:
    """`fmt_args` on at most two lines, split between arguments (a list longer than two lines of `width`
    characters stays on two, the longer)."""
    items = fmt_args(args).split(", ") if args else []
    text = ", ".join(items)
    if len(text) <= width or len(items) < 2:
        return [text] if text else []
    best = min(range(1, len(items)), key=lambda k: max(len(", ".join(items[:k])), len(", ".join(items[k:]))))
    return [", ".join(items[:best]) + ",", ", ".join(items[best:])]


def split_ttf(text: str) -> tuple[str, str]:
    """`fmt_ttf`'s text on two lines: the value, then its note ("5 of 5 never failed") or its interval."""
    if " (" in text and text.endswith(")"):
        head, _, note = text.partition(" (")
        return head, note[:-1]
    head, sep, interval = text.partition(" [")
    return head, (sep.strip() + interval) if sep else ""


def _stat_lines(stat: dict, bounds: tuple | None) -> str:
    lo, hi = clip_interval(stat["ci"], bounds)
    interval = f"[{format_number(lo)}, {format_number(hi)}]" if stat["n"] > 1 and lo is not None and lo != hi else ""
    return cell_lines(_e(format_number(stat["mean"])), _e(interval))


class Notes:
    """The notes under the table: each distinct reason why an interval and a verdict seem to disagree,
    numbered in order of first use; `mark` gives a cell its superscript link."""

    def __init__(self):
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        k = self.texts.index(text) + 1
        return f'<sup><a href="#note-{k}" title="{_e(text)}">{k}</a></sup>'

    def html(self) -> str:
        if not self.texts:
            return ""
        items = "".join(f'<li id="note-{k}">{_e(t)}.</li>' for k, t in enumerate(self.texts, 1))
        return f'<ol class="notes">{items}</ol>'


def _vs_ce_cell(row: Ranked, notes: Notes) -> str:
    """The claim on two lines: ratio [interval] verdict (with a note where they seem to disagree), then the
    raw and the adjusted p. The cell's title holds `claim_text`, the whole sentence."""
    test = row.vs_ce
    if test is None:  # CE itself, the control, or a loss on a model without a CE entry
        shown = fmt_vs_ce(row)
        if shown == "-":
            shown = "not compared (a ceiling)" if row.entry.get("control") else "no CE entry of this model"
        return f'<td class="vsce">{cell_lines(_e(shown))}</td>'
    return f'<td class="vsce" title="{_e(claim_text(test))}">{cell_lines(*claim_lines(test, notes))}</td>'


def claim_lines(test: dict, notes: Notes) -> list[str]:
    """A claim against CE as two lines of HTML: 'ratio [interval] verdict' (with a note's number where
    they seem to disagree), then 'p = X raw, Y after Holm' (the family is named once, in a header); a third
    on a retention board with a clean control: the share of CE's gap to it the loss closes (the header
    names the gap)."""
    claim = claim_parts(test)
    if claim is None:
        return ["-"]
    word = f'<span class="verdict-{_e(claim.verdict)}">{_e(claim.verdict)}</span>'
    mark = notes.mark(claim.why) if claim.why and claim.raw is not None else ""
    if claim.raw is None:
        evidence = claim.why
    elif claim.adjusted is None:
        evidence = f"{claim.raw}, the board's only claim"
    else:
        evidence = f"{claim.raw} raw, {claim.adjusted} after Holm"
    return [f"{_e(claim.effect)} {word}{mark}", _e(evidence)] + ([f"closes {_e(claim.gap)} of the gap"]
                                                                 if claim.gap else [])


def rank_note(row: Ranked) -> str:
    """What a rank rests on, for its tooltip."""
    if row.label == "control":
        return "the clean control: a ceiling, not ranked"
    if row.label == "1":
        return "the longest mean, apart from every other entry and from CE by the claim"
    if not row.label.startswith("="):
        return "apart from the best entry; the position is descriptive"
    if row.tie is None:
        return "the longest mean; the entries marked =1 are indistinguishable from it"
    if row.tie.get("p_holm") is None:
        return "too few seeds to tell from the best entry"
    family = "the descriptive tests against the best entry" if row.tie is row.vs_best else "the claim against CE"
    return f"indistinguishable from the best entry: Holm-adjusted {rank_p(row)} ({family})"


def _rank_cell(row: Ranked) -> str:
    return f'<td class="num rank" title="{_e(rank_note(row))}">{cell_lines(_e(row.label), _e(rank_p(row)))}</td>'


def _row(order: int, row: Ranked, y_lim: tuple[float, float], notes: Notes) -> str:
    e = row.entry
    bounds = stat_bounds(e["score_name"])
    ttf, auc, final = e["time_to_failure"], e["auc"]["mean"], e["final_score"]["mean"]
    ratio = (row.vs_ce or {}).get("ratio")
    data = {"rank": order, "loss": e["loss"]["spec"], "args": fmt_args(e["loss"]["args"]), "model": e["model"],
            "seeds": format_seeds(e["seeds"]), "ttf": ttf["rank_value"], "vsce": "" if ratio is None else ratio,
            "auc": "" if auc is None else auc, "final": "" if final is None else final, "date": e["date"]}
    attrs = " ".join(f'data-{k}="{_e(v)}"' for k, v in data.items())
    loss = _e(fmt_loss(e))
    runs = f'<a href="#runs-{_e(e["name"])}">runs</a>'
    cells = [
        _rank_cell(row),
        f'<td class="loss" title="{_e(e["model"])}">'
        f'{cell_lines(loss, _e(short_name(e["model"]) + runtime_note(e)))}</td>',
        f'<td class="num ttf">{cell_lines(*map(_e, split_ttf(fmt_ttf(ttf))))}</td>',
        _vs_ce_cell(row, notes),
        f'<td class="num auc">{_stat_lines(e["auc"], bounds["auc"])}</td>',
        f'<td class="num final">{_stat_lines(e["final_score"], bounds["final_score"])}</td>',
        f'<td class="curve">{curve_svg(e, y_lim)}</td>',
        f'<td class="args">{cell_lines(*map(_e, args_lines(e["loss"]["args"])), sub_from=2)}</td>',
        f'<td class="seeds">{cell_lines(_e(data["seeds"]), runs)}</td>',
    ]
    return f'<tr id="{_e(e["name"])}" {attrs}>' + "".join(cells) + "</tr>"


def provenance(row: Ranked) -> str:
    """An entry's runs under the table, closed until opened (or reached by its row's "runs" link): every
    seed's command, date, commit, CPU and base, and what the entry's seeds share."""
    e = row.entry
    runs = "".join(_run_item(r) for r in e["runs"])
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in e["versions"].items())
    what = " ".join(x for x in (fmt_loss(e), fmt_args(e["loss"]["args"])) if x)
    return (f'<details id="runs-{_e(e["name"])}"><summary>{_e(row.label)} {_e(what)} on {_e(e["model"])}, seeds '
            f'{_e(format_seeds(e["seeds"]))}</summary><div class="prov">'
            f'<div>latest run {_e(e["date"])}; target <code>{_e(e["loss"]["target"])}</code>; config hash '
            f'<code>{_e(e["config_hash"])}</code>; base M_0 sha256 <code>{_e(_entry_base(e))}</code></div>'
            f'<div>{versions}</div><ul>{runs}</ul></div></details>')


def mechanism_html(ranked: list[Ranked]) -> str:
    """Under the table, for the entries whose runs recorded it: the mechanism at M_0 and at the last stage, each
    a mean over seeds. Fig. 1's contrast (the paper's Sec. 2.1.1): the mean next-token probability of M_i on its
    own rewrite and on unseen real text; and the mask as trained, each token class's share above gamma in the
    last stage's training. Empty where no entry has it (boards published before entries kept it)."""
    rows = [r for r in ranked if r.entry["stages"][0].get("confidence")]
    if not rows:
        return ""
    last = rows[0].entry["stages"][-1]["stage"]
    gammas = {f'{trained["gamma"]:g}' for r in rows if (trained := r.entry["stages"][-1].get("mask_trained"))}
    gamma = gammas.pop() if len(gammas) == 1 else "gamma"
    head = (f'<tr><th rowspan="2">loss</th><th colspan="2">own rewrite</th><th colspan="2">unseen real text</th>'
            f'<th colspan="3">share above {_e(gamma)} in training, M<sub>{last}</sub></th></tr>'
            f'<tr><th>M<sub>0</sub></th><th>M<sub>{last}</sub></th><th>M<sub>0</sub></th><th>M<sub>{last}</sub></th>'
            '<th>corrupted</th><th>faithful</th><th>fresh real</th></tr>')
    intro = (f'Fig. 1\'s contrast (the paper\'s Sec. 2.1.1): the mean next-token probability of M<sub>i</sub> on '
             f'its own rewrite of its pool and on unseen real text; then the mask as trained: each token class\'s '
             f'share above gamma in M<sub>{last}</sub>\'s training, what TCE(gamma) drops (what it would drop, for '
             'another loss). Means over seeds; <code>fortifai-bench compare BOARD.json#ENTRY ... --plot STEM</code> '
             'draws every stage with its band.')
    return (f'<h2>The mechanism</h2><p>{intro}</p><table class="mechanism"><thead>{head}</thead><tbody>'
            + "".join(_mechanism_row(r) for r in rows) + "</tbody></table>")


def _mechanism_row(r: Ranked) -> str:
    """One entry's mechanism row: own rewrite and unseen real text at M_0 and the last stage, then each token
    class's share above gamma in the last stage's training."""
    first, end = r.entry["stages"][0], r.entry["stages"][-1]
    cells = [f'<td class="loss">{_e(fmt_loss(r.entry))}</td>']
    cells += [_mean_cell(st, "confidence", text) for text in ("own_generated", "unseen_real") for st in (first, end)]
    cells += [_mean_cell(end, "mask_trained", name) for name in ("corrupted", "faithful", "fresh")]
    return "<tr>" + "".join(cells) + "</tr>"


def _mean_cell(stage: dict, key: str, name: str) -> str:
    """A board stage's mechanism stat `stage[key][name]` as its mean over seeds, blank where not recorded."""
    stat = (stage.get(key) or {}).get(name)
    text = "" if stat is None or stat["mean"] is None else f"{stat['mean']:.3f}"
    return f'<td class="num">{text}</td>'


def links_html() -> str:
    """The paper, the authors' code, and this benchmark's version."""
    return (f'<p class="links">Paper: <a href="{PAPER_URL}">Shabgahi et al. 2025, ForTIFAI (arXiv 2509.08972)</a>; '
            f'the authors\' code: <a href="{AUTHORS_CODE_URL}">{AUTHORS_CODE_URL[len("https://"):]}</a>; '
            f'page made by fortifai-bench {_e(__version__)}.</p>')


def _family_text(board: dict, ranked: list[Ranked]) -> str:
    """The vs CE column's sub-header: the p values it shows and the family the adjustment is over."""
    family = max((r.vs_ce["family"] for r in ranked if r.vs_ce is not None), default=0)
    if family <= 1:
        return "p (one claim: nothing to adjust)"
    untested = len(untested_claims(ranked, board_test(board)["planned"]))
    return f"p raw, after Holm over {family} claims" + (f" ({untested} untested)" if untested else "")


def _heads(board: dict, ranked: list[Ranked]) -> str:
    out = []
    for head, sub, key, kind, cls in _HEADERS:
        head = head.replace("@SCORE@", _score_name(board))
        sub = _family_text(board, ranked) if sub == "@FAMILY@" else sub
        if key == "vsce" and claims_of(board) == RETENTION:
            head = "vs CE: AUC difference [95% CI], verdict"
        text = cell_lines(_e(head), _e(sub))
        cls_attr = f' class="{cls}"' if cls else ""
        out.append(f'<th data-key="{key}" data-type="{kind}"{cls_attr} title="click to sort">{text}</th>' if key
                   else f"<th{cls_attr}>{text}</th>")
    return "".join(out)


def _ranked_by(board: dict) -> str:
    ttf = (f"time to failure: the interpolated stage at which {_e(_score_name(board))} first falls below "
           f"{_e(_threshold(board))}, in stages from M_0 (a seed that never fails counts as the last stage)")
    if claims_of(board) == RETENTION:
        return f"Ranked by the area under the curve (AUC; this board's claims compare retention), then by {ttf}."
    return f"Ranked by {ttf}; equal times by the area under the curve (AUC)."


def render_html(board: dict) -> str:
    """One static page: no external resource, no network, works from a file:// URL."""
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    ranked = ranking(board["entries"], **board_test(board))
    y_lim = y_range(board["entries"])
    notes = Notes()
    body = "\n".join(_row(i, row, y_lim, notes) for i, row in enumerate(ranked, 1))
    protocol = json.dumps(board["protocol"], indent=1, sort_keys=True)
    how = "".join(f"<li>{_e(s)}</li>" for s in how_to_read(board, ranked))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title(board))} - fortifai-bench leaderboard</title>
<style>{STYLE}{BOARD_STYLE}</style></head>
<body>
<h1>{_e(title(board))}</h1>
{links_html()}
<p>{_ranked_by(board)} Intervals are 95% t-intervals over seeds, cut to the range of the
quantity; the {"difference to CE's AUC" if claims_of(board) == RETENTION else "ratio to CE"} has a 95% bootstrap interval. Each curve is the mean {_e(_score_name(board))} over
seeds at every stage with its 95% band, on one y range for the whole board; the dashed line is the failure
threshold; hover a curve for every stage's value. Click a column header to sort; "runs" beside the seeds
opens every seed's command, date, commit, CPU and base model, under the table. A table wider than the window scrolls sideways,
keeping the rank and the loss in view.</p>
<ul class="how">{how}</ul>
<div class="scroll"><table id="board"><thead><tr>{_heads(board, ranked)}</tr></thead>
<tbody>
{body}
</tbody></table></div>
{notes.html()}
{mechanism_html(ranked)}
<h2>Runs and provenance</h2>
{"".join(provenance(row) for row in ranked)}
<details><summary>protocol (identical for every entry; hash {_e(board["protocol_hash"])})</summary>
<pre>{_e(protocol)}</pre></details>
<script>{_SCRIPT}</script>
</body></html>
"""
