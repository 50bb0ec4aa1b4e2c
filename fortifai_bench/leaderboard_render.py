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

from fortifai_bench.leaderboard import TIE_ALPHA, canonical, ranking
from fortifai_bench.results import runtime_note

COLUMNS = ["#", "loss", "args", "model", "seeds", "time to failure", "AUC", "final score"]
TIES = (f"=k: not significantly different from the entry above (Welch's t-test over seeds on the restricted "
        f"time to failure, p >= {TIE_ALPHA:g}, or fewer than 2 seeds); the clean control is a ceiling, not ranked.")


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_ttf(ttf: dict) -> str:
    """`metrics.summarize_failures`'s text: a t-interval only when every seed failed, else a bound and how
    many seeds never failed (censored) or never learned."""
    return ttf["text"]


def fmt_rank(label: str, test: dict | None) -> str:
    if test is None or test.get("p_value") is None:
        return label
    return f"{label} (p={test['p_value']:.2g})" if label.startswith("=") else label


def fmt_stat(stat: dict) -> str:
    lo, hi = stat["ci"]
    if stat["n"] > 1 and lo is not None and lo != hi:
        return f"{_num(stat['mean'])} [{_num(lo)}, {_num(hi)}]"
    return _num(stat["mean"])


def fmt_args(args: dict) -> str:
    """Loss arguments for display; floats to 4 significant digits (the board keeps them exactly)."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else canonical(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in sorted(args.items())) if args else ""


def rows(board: dict) -> list[list[str]]:
    out = []
    for label, e, test in ranking(board["entries"]):
        out.append([fmt_rank(label, test), e["loss"]["spec"] + (" (clean control)" if e.get("control") else ""), fmt_args(e["loss"]["args"]), e["model"] + runtime_note(e),
                    ",".join(str(s) for s in e["seeds"]), fmt_ttf(e["time_to_failure"]), fmt_stat(e["auc"]),
                    fmt_stat(e["final_score"])])
    return out


def _printable(text: str) -> str:
    """No terminal escape sequences or line breaks from a board reach the terminal."""
    return "".join(c if unicodedata.category(c)[0] != "C" else f"\\x{ord(c):02x}" for c in text)


def title(board: dict) -> str:
    t = board["task"]
    return f"{t['name']} v{t['version']}"


def render_text(board: dict) -> str:
    table = [COLUMNS] + [[_printable(c) for c in r] for r in rows(board)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = [_printable(title(board)) + f" - ranked by time to failure (threshold "
             f"{_threshold(board)}), then AUC of {_printable(_score_name(board))}; " + TIES]
    for j, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    if not board["entries"]:
        lines.append("(no entries)")
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    text = html.escape(" ".join(_printable(text).split()), quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def render_markdown(board: dict) -> str:
    lines = [f"### {_md_cell(title(board))}", "",
             f"Ranked by time to failure (first stage with {_md_cell(_score_name(board))} below "
             f"{_threshold(board)}, interpolated, in stages from M_0; a seed that never fails counts as the last "
             f"stage), then by AUC. {TIES}", "",
             "| " + " | ".join(_md_cell(c) for c in COLUMNS) + " |",
             "|" + "|".join("---:" if c in ("#",) else "---" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows(board)]
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

_STYLE = """
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
            ("seeds", "seeds", "str"), ("time to failure", "ttf", "num"), ("AUC", "auc", "num"),
            ("final score", "final", "num"), ("curve", None, None), ("date", "date", "str")]


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def curve_svg(entry: dict, width: int = 200, height: int = 64) -> str:
    """The entry's per-stage score (mean line, 95% CI band over seeds) on a minimal y-axis (ticks at 0.5
    and 1.0, the range always holding both, so curves of different rows read alike), with the failure
    threshold dashed and labelled."""
    stages = entry["stages"]
    means = [s["score"]["mean"] for s in stages]
    los = [s["score"]["ci"][0] if s["score"]["ci"][0] is not None else m for s, m in zip(stages, means)]
    his = [s["score"]["ci"][1] if s["score"]["ci"][1] is not None else m for s, m in zip(stages, means)]
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


def _row(order: int, label: str, test: dict | None, e: dict) -> str:
    ttf, auc, final = e["time_to_failure"], e["auc"]["mean"], e["final_score"]["mean"]
    data = {"rank": order, "loss": e["loss"]["spec"], "args": fmt_args(e["loss"]["args"]), "model": e["model"],
            "seeds": ",".join(map(str, e["seeds"])), "ttf": ttf["rank_value"],
            "auc": "" if auc is None else auc, "final": "" if final is None else final, "date": e["date"]}
    attrs = " ".join(f'data-{k}="{_e(v)}"' for k, v in data.items())
    runs = "".join(f"<li>seed {_e(r['seed'])}: <code>{_e(r['command'])}</code> ({_e(r['date'])})</li>"
                   for r in e["runs"])
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in e["versions"].items())
    cells = [
        f'<td class="num">{_e(fmt_rank(label, test))}</td>',
        f'<td class="loss">{_e(e["loss"]["spec"])}{" (clean control)" if e.get("control") else ""}<details><summary>provenance</summary>'
        f'<div>target <code>{_e(e["loss"]["target"])}</code></div><div>config hash <code>{_e(e["config_hash"])}'
        f'</code></div><div>base M_0 sha256 <code>{_e(e.get("base_sha256") or "not recorded")}</code></div><div>{versions}</div><ul>{runs}</ul></details></td>',
        f'<td class="args">{_e(data["args"])}</td>',
        f'<td class="model">{_e(e["model"] + runtime_note(e))}</td>',
        f'<td class="seeds">{_e(data["seeds"])}</td>',
        f'<td class="num ttf">{_e(fmt_ttf(ttf))}</td>',
        f'<td class="num auc">{_e(fmt_stat(e["auc"]))}</td>',
        f'<td class="num final">{_e(fmt_stat(e["final_score"]))}</td>',
        f"<td>{curve_svg(e)}</td>",
        f'<td class="date">{_e(e["date"])}</td>',
    ]
    return f'<tr id="{_e(e["name"])}" {attrs}>' + "".join(cells) + "</tr>"


def render_html(board: dict) -> str:
    """One static page: no external resource, no network, works from a file:// URL."""
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    heads = "".join(
        f'<th data-key="{k}" data-type="{t}" title="click to sort">{_e(h)}</th>' if k else f"<th>{_e(h)}</th>"
        for h, k, t in _HEADERS)
    body = "\n".join(_row(i, label, test, e) for i, (label, e, test) in enumerate(ranking(board["entries"]), 1))
    protocol = json.dumps(board["protocol"], indent=1, sort_keys=True)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title(board))} - fortifai-bench leaderboard</title>
<style>{_STYLE}</style></head>
<body>
<h1>{_e(title(board))}</h1>
<p>Ranked by time to failure: the interpolated stage at which {_e(_score_name(board))} first falls below
{_e(_threshold(board))} (the dashed line labelled "fail" in each curve; its y-axis is marked at 0.5 and 1.0), in stages from M_0; a seed that never fails counts as the last stage. {_e(TIES)}
Ties are broken by the area under the curve. Intervals are 95% t-intervals over seeds; the band in each curve
is the per-stage interval. Click a column header to sort.</p>
<table id="board"><thead><tr>{heads}</tr></thead>
<tbody>
{body}
</tbody></table>
<details><summary>protocol (identical for every entry; hash {_e(board["protocol_hash"])})</summary>
<pre>{_e(protocol)}</pre></details>
<script>{_SCRIPT}</script>
</body></html>
"""
