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
import math
import unicodedata
from typing import Any

from fortifai_bench.leaderboard.board import canonical, stat_bounds
from fortifai_bench.leaderboard.ranking import BASELINE_SPECS, TIE_ALPHA, Ranked, claim_text, ranking
from fortifai_bench.metrics import clip_interval
from fortifai_bench.stats import format_p
from fortifai_bench.results import runtime_note

PAPER_URL = "https://arxiv.org/abs/2509.08972"  # Shabgahi et al. 2025, ForTIFAI (TCE)
AUTHORS_CODE_URL = "https://github.com/pedramaghazadeh/ForTIFAI"

COLUMNS = ["#", "loss", "args", "model", "seeds", "time to failure", "vs CE", "AUC", "final score"]
TIES = (f"Tests: the exact permutation test over seeds on the restricted time to failure (every split of the "
        f"seeds; 3 vs 3 seeds cannot give p below 0.1, 5 vs 5 not below 2/252). vs CE is the board's claim, one "
        f"per entry: the ratio of restricted means to CE's with its 95% bootstrap interval over seeds "
        f"(unadjusted), then better / worse at Holm-adjusted p < {TIE_ALPHA:g} (Holm over the claims against CE "
        f"only), else indistinguishable, with the raw and the adjusted p. The rank is descriptive: =1 marks the "
        f"entries indistinguishable from the entry with the longest mean, itself included (its own Holm family "
        f"of tests against that entry, adjusted p >= {TIE_ALPHA:g} or fewer than 2 seeds; the best is picked "
        f"from the data, so this group claims nothing); a lone 1 only when that entry is apart from all others. "
        f"The clean control is a ceiling, not ranked.")


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_ttf(ttf: dict) -> str:
    """`metrics.summarize_failures`'s text: a t-interval only when every seed failed, else a bound and how
    many seeds never failed (censored) or never learned."""
    return ttf["text"]


def fmt_rank(row: Ranked) -> str:
    """"1", "4", "control", "=1" for the best entry of a group, or "=1 (p = 0.42)" with the Holm-adjusted
    p against the best entry (descriptive: see `ranking`)."""
    test = row.vs_best
    if not row.label.startswith("=") or test is None or test.get("p_holm") is None:
        return row.label
    return f"{row.label} ({format_p(test['p_holm'], test['splits'])})"


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
        return f"{_num(stat['mean'])} [{_num(lo)}, {_num(hi)}]"
    return _num(stat["mean"])


def fmt_args(args: dict) -> str:
    """Loss arguments for display; floats to 4 significant digits (the board keeps them exactly)."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else canonical(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(args.items())) if args else ""


def fmt_loss(e: dict) -> str:
    return e["loss"]["spec"] + (" (clean control)" if e.get("control") else "")


def rows(board: dict) -> list[list[str]]:
    out = []
    for row in ranking(board["entries"]):
        e = row.entry
        bounds = stat_bounds(e["score_name"])
        out.append([fmt_rank(row), fmt_loss(e), fmt_args(e["loss"]["args"]), e["model"] + runtime_note(e),
                    ",".join(str(s) for s in e["seeds"]), fmt_ttf(e["time_to_failure"]), fmt_vs_ce(row),
                    fmt_stat(e["auc"], bounds["auc"]), fmt_stat(e["final_score"], bounds["final_score"])])
    return out


def printable(text: str) -> str:
    """No terminal escape sequences or line breaks from a board reach the terminal."""
    return "".join(c if unicodedata.category(c)[0] != "C" else f"\\x{ord(c):02x}" for c in text)


def title(board: dict) -> str:
    t = board["task"]
    return f"{t['name']} v{t['version']}"


def render_text(board: dict) -> str:
    table = [COLUMNS] + [[printable(c) for c in r] for r in rows(board)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = [printable(title(board)) + f" - ranked by time to failure (threshold "
             f"{_threshold(board)}), then AUC of {printable(_score_name(board))}; " + TIES]
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
    lines = [f"### {md_cell(title(board))}", "",
             f"Ranked by time to failure (first stage with {md_cell(_score_name(board))} below "
             f"{_threshold(board)}, interpolated, in stages from M_0; a seed that never fails counts as the last "
             f"stage), then by AUC. {TIES}", "",
             "| " + " | ".join(md_cell(c) for c in COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("#",) else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows(board)]
    return "\n".join(lines) + "\n"


def _score_name(board: dict) -> str:
    return board["entries"][0]["score_name"] if board["entries"] else "score"


def _threshold(board: dict) -> str:
    return f"{board['entries'][0]['failure_threshold']:g}" if board["entries"] else "-"


# ----------------------------------------------------------------------------------------------- HTML

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
svg .ci { fill: #4a7bd1; fill-opacity: 0.2; }
svg .mean { fill: none; stroke: #1f4fa8; stroke-width: 1.5; }
svg .fail { stroke: #c0392b; stroke-dasharray: 3 2; stroke-width: 1; }
svg .axis, svg .tick { stroke: #999; stroke-width: 0.5; }
svg text { font-size: 9px; fill: #555; }
svg .fail-label { fill: #c0392b; }
details { margin-top: 0.3em; font-size: 0.85em; }
"""

# (header, data key, type) for the sortable columns; None key = not sortable.
_HEADERS = [("#", "rank", "num"), ("loss", "loss", "str"), ("args", "args", "str"), ("model", "model", "str"),
            ("seeds", "seeds", "str"), ("time to failure", "ttf", "num"), ("vs CE", "vsce", "num"),
            ("AUC", "auc", "num"), ("final score", "final", "num"), ("curve", None, None), ("date", "date", "str")]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def curve_svg(entry: dict, width: int = 200, height: int = 64) -> str:
    """The entry's per-stage score (mean line, 95% CI band over seeds) on a minimal y-axis (ticks at 0.5
    and 1.0, the range always holding both, so curves of different rows read alike), with the failure
    threshold dashed and labelled."""
    stages = entry["stages"]
    means = [s["score"]["mean"] for s in stages]
    cis = [clip_interval(s["score"]["ci"], stat_bounds(entry["score_name"])["score"]) for s in stages]
    los = [ci[0] if ci[0] is not None else m for ci, m in zip(cis, means)]
    his = [ci[1] if ci[1] is not None else m for ci, m in zip(cis, means)]
    thr = entry["failure_threshold"]
    finite = [v for v in means + los + his + [thr] if v is not None and math.isfinite(v)]
    y_lo, y_hi = min(finite + [0.5]), max(finite + [1.0])
    pad, left, right = 5, 24, 40  # left: tick labels; right: the threshold's label
    n = max(len(stages) - 1, 1)

    def x(i):
        return left + (width - left - right) * i / n

    def y(v):
        return pad + (height - 2 * pad) * (1 - (v - y_lo) / ((y_hi - y_lo) or 1))

    pts = [(x(i), y(m)) for i, m in enumerate(means) if m is not None]
    mean_line = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
    band = [(x(i), y(h)) for i, h in enumerate(his) if h is not None]
    band += [(x(i), y(lo)) for i, lo in reversed(list(enumerate(los))) if lo is not None]
    label = f"{entry['score_name']} per stage: " + ", ".join(_num(m) for m in means)
    ticks = "".join(
        f'<line class="tick" x1="{left - 3}" y1="{y(v):.1f}" x2="{left}" y2="{y(v):.1f}"/>'
        f'<text class="ytick" x="{left - 5}" y="{y(v) + 3:.1f}" text-anchor="end">{v:.1f}</text>'
        for v in (0.5, 1.0))
    x_end = width - right
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_e(label)}"><title>{_e(label)}</title>'
            f'<line class="axis" x1="{left}" y1="{pad}" x2="{left}" y2="{height - pad}"/>'
            f'<line class="axis" x1="{left}" y1="{height - pad}" x2="{x_end}" y2="{height - pad}"/>{ticks}'
            f'<line class="fail" x1="{left}" y1="{y(thr):.1f}" x2="{x_end}" y2="{y(thr):.1f}"/>'
            f'<text class="fail-label" x="{x_end + 3}" y="{y(thr) + 3:.1f}">fail {thr:g}</text>'
            f'<polygon class="ci" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in band)}"/>'
            f'<polyline class="mean" points="{mean_line}"/></svg>')


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


def _row(order: int, row: Ranked) -> str:
    e = row.entry
    bounds = stat_bounds(e["score_name"])
    ttf, auc, final = e["time_to_failure"], e["auc"]["mean"], e["final_score"]["mean"]
    ratio = (row.vs_ce or {}).get("ratio")
    data = {"rank": order, "loss": e["loss"]["spec"], "args": fmt_args(e["loss"]["args"]), "model": e["model"],
            "seeds": ",".join(map(str, e["seeds"])), "ttf": ttf["rank_value"], "vsce": "" if ratio is None else ratio,
            "auc": "" if auc is None else auc, "final": "" if final is None else final, "date": e["date"]}
    attrs = " ".join(f'data-{k}="{_e(v)}"' for k, v in data.items())
    runs = "".join(_run_item(r) for r in e["runs"])
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in e["versions"].items())
    cells = [
        f'<td class="num">{_e(fmt_rank(row))}</td>',
        f'<td class="loss">{_e(e["loss"]["spec"])}{" (clean control)" if e.get("control") else ""}'
        f'<details><summary>runs and provenance</summary>'
        f'<div>target <code>{_e(e["loss"]["target"])}</code></div><div>config hash <code>{_e(e["config_hash"])}'
        f'</code></div><div>base M_0 sha256 <code>{_e(_entry_base(e))}</code></div><div>{versions}</div><ul>{runs}</ul></details></td>',
        f'<td class="args">{_e(data["args"])}</td>',
        f'<td class="model">{_e(e["model"] + runtime_note(e))}</td>',
        f'<td class="seeds">{_e(data["seeds"])}</td>',
        f'<td class="num ttf">{_e(fmt_ttf(ttf))}</td>',
        f'<td class="vsce">{_e(fmt_vs_ce(row))}</td>',
        f'<td class="num auc">{_e(fmt_stat(e["auc"], bounds["auc"]))}</td>',
        f'<td class="num final">{_e(fmt_stat(e["final_score"], bounds["final_score"]))}</td>',
        f"<td>{curve_svg(e)}</td>",
        f'<td class="date">{_e(e["date"])}</td>',
    ]
    return f'<tr id="{_e(e["name"])}" {attrs}>' + "".join(cells) + "</tr>"


def links_html() -> str:
    """The paper, the authors' code, and this benchmark's version."""
    from fortifai_bench import __version__

    return (f'<p class="links">Paper: <a href="{PAPER_URL}">Shabgahi et al. 2025, ForTIFAI (arXiv 2509.08972)</a>; '
            f'the authors\' code: <a href="{AUTHORS_CODE_URL}">{AUTHORS_CODE_URL[len("https://"):]}</a>; '
            f'page made by fortifai-bench {_e(__version__)}.</p>')


def render_html(board: dict) -> str:
    """One static page: no external resource, no network, works from a file:// URL."""
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    heads = "".join(
        f'<th data-key="{k}" data-type="{t}" title="click to sort">{_e(h)}</th>' if k else f"<th>{_e(h)}</th>"
        for h, k, t in _HEADERS)
    body = "\n".join(_row(i, row) for i, row in enumerate(ranking(board["entries"]), 1))
    protocol = json.dumps(board["protocol"], indent=1, sort_keys=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title(board))} - fortifai-bench leaderboard</title>
<style>{STYLE}</style></head>
<body>
<h1>{_e(title(board))}</h1>
{links_html()}
<p>Ranked by time to failure: the interpolated stage at which {_e(_score_name(board))} first falls below
{_e(_threshold(board))} (the dashed line labelled "fail" in each curve; its y-axis is marked at 0.5 and 1.0), in stages from M_0; a seed that never fails counts as the last stage. {_e(TIES)}
Equal times are ordered by the area under the curve. Other intervals are 95% t-intervals over seeds, cut to
the range of the quantity (a score in [0, 1] stays in it); the band in each curve is the per-stage interval.
Each entry's "runs and provenance" lists the command of every seed. Click a column header to sort.</p>
<table id="board"><thead><tr>{heads}</tr></thead>
<tbody>
{body}
</tbody></table>
<details><summary>protocol (identical for every entry; hash {_e(board["protocol_hash"])})</summary>
<pre>{_e(protocol)}</pre></details>
<script>{_SCRIPT}</script>
</body></html>
"""
