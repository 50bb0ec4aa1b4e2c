"""The rendered leaderboard page, read back from a real headless Chromium after its JavaScript ran.

Chromium is Debian's `chromium` package (`.ci/run` installs it). The page is opened from a file:// URL with
networking disabled, so this also proves it needs nothing from the network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fortifai_bench.leaderboard import BASELINE_SPECS, board_test, leaderboards_dir, load_board, publish, ranking
from fortifai_bench.leaderboard.render import render_html
from fortifai_bench.leaderboard.ranking import claim_parts
from fortifai_bench.stats import format_p
from results_factory import write_seeds

CHROMIUM = os.environ.get("FORTIFAI_CHROMIUM", "/usr/bin/chromium")
# Each payload would mark the page if it ever ran as code.
SCRIPT_LOSS = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
IMG_MODEL = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"


class _Table(HTMLParser):
    """Rows of the leaderboard table (not the mechanism's under it): each row's attributes and each cell's lines
    (its `div.line`s' text, a cell without them one line), keyed by the cell's last class; the curves' lines and
    texts."""

    def __init__(self):
        super().__init__()
        self.html_attrs: dict = {}
        self.table_attrs: dict = {}
        self.rows: list[dict] = []
        self.scripts = 0
        self.links: list[str] = []
        self.svgs: list[dict] = []  # per curve: its <line> attributes and its <text> elements
        self.notes: dict[str, str] = {}  # id -> text of the notes under the table
        self._note: str | None = None
        self._text: dict | None = None
        self._cell: dict | None = None
        self._svg = False
        self._in_body = False
        self._in_board = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self._svg = True
            self.svgs.append({"lines": [], "texts": [], "circles": 0})
        elif tag == "line" and self._svg:
            self.svgs[-1]["lines"].append(attrs)
        elif tag == "circle" and self._svg:
            self.svgs[-1]["circles"] += 1
        elif tag == "text" and self._svg:
            self._text = {**attrs, "text": ""}
            self.svgs[-1]["texts"].append(self._text)
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "html":
            self.html_attrs = attrs
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":  # the board's (or suite's) table; the mechanism's under a board holds no entry rows
            self._in_board = "mechanism" not in (attrs.get("class") or "").split()
            self.table_attrs = attrs if attrs.get("id") == "board" else self.table_attrs
        elif tag == "tbody":
            self._in_body = self._in_board
        elif tag == "tr" and self._in_body:
            self.rows.append({"attrs": attrs, "cells": {}, "titles": {}})
        elif tag == "td" and self._in_body:
            self._cell = {"class": ((attrs.get("class") or "").split() or [""])[-1], "lines": [""]}
            self.rows[-1]["titles"][self._cell["class"]] = attrs.get("title")
        elif tag == "div" and self._cell is not None and "line" in (attrs.get("class") or "").split():
            if self._cell["lines"] != [""]:
                self._cell["lines"].append("")
        elif tag == "li" and (attrs.get("id") or "").startswith("note-"):
            self._note = attrs["id"]
            self.notes[self._note] = ""

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = False
        if tag == "text":
            self._text = None
        if tag == "li":
            self._note = None
        if tag == "table":
            self._in_board = False
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"][self._cell["class"]] = [line.strip() for line in self._cell["lines"]]
            self._cell = None

    def handle_data(self, data):
        if self._text is not None:
            self._text["text"] += data
        elif self._cell is not None and not self._svg:
            self._cell["lines"][-1] += data
        if self._note is not None:
            self.notes[self._note] += data


def dump_dom(page: Path, tmp_path: Path, fragment: str = "") -> _Table:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: the page must need no network
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri() + fragment]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    parser = _Table()
    parser.feed(out.stdout)
    assert parser.rows, f"no table rows in the dumped DOM: {out.stdout[:500]}"
    return parser


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("html")
    lb = tmp / "leaderboards"
    lb.mkdir()
    old = os.getcwd()
    os.chdir(tmp)
    try:
        ce = write_seeds(tmp / "runs", [[1.0, 0.9, 0.7, 0.5], [1.0, 0.85, 0.65, 0.5]], loss="ce")
        for run in ce:  # runs that recorded their folder: the page links their results
            data = json.loads((run / "results.json").read_text())
            (run / "results.json").write_text(json.dumps({**data, "run_dir": str(run)}))
        publish(ce)
        publish(write_seeds(tmp / "runs", [[1.0, 0.95, 0.9, 0.85]] * 2, loss="tce:0.9"))        # never fails
        publish(write_seeds(tmp / "runs", [[1.0, 0.9, 0.8, 0.7]] * 2, loss=SCRIPT_LOSS, model=IMG_MODEL))
    finally:
        os.chdir(old)
    out = tmp / "site" / "index.html"
    out.parent.mkdir()
    out.write_text(render_html(load_board(lb / "collapse_facts.json")), encoding="utf-8")
    return out


def test_page_renders_ranked_table_with_curves_from_file_url(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    losses = [r["cells"]["loss"][0] for r in dom.rows]
    assert losses == ["tce:0.9", SCRIPT_LOSS, "ce"]  # ranked: never fails, fails at 2.5, fails at ~1.6
    # two seeds a side (6 splits: p >= 1/3); the tests against tce:0.9, the best, are a family of two (Holm:
    # 2 x 1/3), so all share its rank, CE by the board's one claim (tce:0.9 against CE, not adjusted: p = 1/3)
    ranks = [r["cells"]["rank"] for r in dom.rows]
    assert ranks == [["=1"], ["=1", "p = 0.67"], ["=1", "p = 0.33"]]
    assert [r["titles"]["rank"] for r in dom.rows] == [
        "the longest mean; the entries marked =1 are indistinguishable from it",
        "indistinguishable from the best entry: Holm-adjusted p = 0.67 (the descriptive tests against the best entry)",
        "indistinguishable from the best entry: Holm-adjusted p = 0.33 (the claim against CE)"]
    vs_ce = [r["cells"]["vsce"] for r in dom.rows]
    assert vs_ce[0][0].startswith("1.85x [") and vs_ce[0][0].endswith("] indistinguishable1")  # note 1
    assert vs_ce[0][1] == "p = 0.33, the board's only claim"
    assert dom.notes == {"note-1": "the interval excludes 1, but 2 vs 2 seeds cannot reach p < 0.05 (smallest p 0.33)."}
    assert dom.rows[0]["titles"]["vsce"].endswith("indistinguishable (p = 0.33, the board's only claim; the "
                                                  "interval excludes 1, but 2 vs 2 seeds cannot reach p < 0.05 "
                                                  "(smallest p 0.33))")
    assert vs_ce[1:] == [["no CE entry of this model"], ["baseline"]]  # the script loss has another model
    assert dom.rows[0]["cells"]["ttf"] == ["not within 3 stages", "2 of 2 never failed"]
    assert dom.rows[2]["cells"]["ttf"][0] == "1.62" and dom.rows[2]["cells"]["ttf"][1].startswith("[")
    assert "data-sorted" not in dom.table_attrs
    assert page.read_text().count("<svg") == 3


def test_page_links_the_paper_the_code_and_the_runs(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    assert dom.links[:2] == ["https://arxiv.org/abs/2509.08972", "https://github.com/pedramaghazadeh/ForTIFAI"]
    results = [link for link in dom.links[2:] if link.endswith("/results.json")]
    assert len(results) == 2 and all(Path(link).is_file() for link in results)  # ce's two seeds, where recorded
    # each row's "runs" link opens that entry's runs under the table
    anchors = [r["attrs"]["id"] for r in dom.rows]
    assert [link for link in dom.links if link.startswith("#runs-")] == [f"#runs-{a}" for a in anchors]
    text = page.read_text()
    assert all(f'<details id="runs-{html.escape(a)}">' in text for a in anchors)
    assert "fortifai-bench collapse --loss ce --seed 1</code>" in text and "commit <code>abc123</code>" in text


def test_injected_strings_render_as_text_and_never_run(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    row = dom.rows[1]
    assert row["cells"]["loss"] == [SCRIPT_LOSS, IMG_MODEL]  # shown literally
    assert row["attrs"]["data-loss"] == SCRIPT_LOSS
    assert "data-pwned" not in dom.html_attrs, "an injected string ran as script"
    assert dom.scripts == 1  # only the page's own sorting script exists as an element


@pytest.mark.parametrize("fragment, expected", [
    ("#sort=loss&dir=asc", [SCRIPT_LOSS, "ce", "tce:0.9"]),  # "<" sorts before letters
    ("#sort=auc&dir=desc", ["tce:0.9", SCRIPT_LOSS, "ce"]),
    ("#sort=rank&dir=desc", ["ce", SCRIPT_LOSS, "tce:0.9"]),
])
def test_javascript_sorts_the_table(page, tmp_path, fragment, expected):
    dom = dump_dom(page, tmp_path, fragment)
    assert [r["cells"]["loss"][0] for r in dom.rows] == expected
    key, direction = fragment[len("#sort="):].split("&dir=")
    assert dom.table_attrs.get("data-sorted") == f"{key}:{direction}"


def test_curves_label_their_stages_their_y_range_and_the_threshold(page, tmp_path):
    """Every sparkline, as Chromium built it: integer stage labels 0..3 under the x axis with the word
    "stage", a dot per stage, the y range's two ends labelled (one range for the whole board, so every curve
    carries the same labels), and the threshold line labelled with its value, between those ends."""
    dom = dump_dom(page, tmp_path)
    assert len(dom.svgs) == 3
    y_labels = set()
    for svg in dom.svgs:
        texts = {t.get("class"): [] for t in svg["texts"]}
        for t in svg["texts"]:
            texts[t["class"]].append(t)
        xs = texts["xtick"]
        assert [t["text"] for t in xs] == ["0", "1", "2", "3"]  # 4 stages, M_0 to M_3
        assert [float(t["x"]) for t in xs] == sorted(float(t["x"]) for t in xs)
        assert [t["text"] for t in texts["xlabel"]] == ["stage"] and svg["circles"] == 4
        top, bottom = texts["ytick"]
        assert float(top["y"]) < float(bottom["y"])
        y_labels.add((top["text"], bottom["text"]))
        [label] = texts["fail-label"]
        assert label["text"] == "fail 0.75"
        [fail] = [ln for ln in svg["lines"] if ln.get("class") == "fail"]
        y_ticks = [float(ln["y1"]) for ln in svg["lines"] if ln.get("class") == "tick" and ln["x1"] != ln["x2"]]
        assert len(y_ticks) == 2 and min(y_ticks) < float(fail["y1"]) < max(y_ticks)
    [(top, bottom)] = y_labels  # one range for the board: the same two labels on every curve
    assert top == "1.0" and float(bottom) <= 0.5  # the means run from 1.0 to 0.5; CE's band below it


def test_suite_page_renders_from_file_url(tmp_path):
    from fortifai_bench.leaderboard.suite import build_suite, render_suite_html

    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "leaderboards").mkdir()
        publish(write_seeds(tmp_path / "a", [[1.0, 0.9, 0.7, 0.5], [1.0, 0.85, 0.65, 0.5]], loss="ce"))
        publish(write_seeds(tmp_path / "b", [[1.0, 0.95, 0.9, 0.85]] * 2, loss=SCRIPT_LOSS))
        publish(write_seeds(tmp_path / "c", [[1.0, 0.9, 0.8, 0.7]] * 2, loss="ce", task="collapse_facts_greedy"))
        files = ["leaderboards/collapse_facts.json", "leaderboards/collapse_facts_greedy.json"]
        suite = build_suite([(f, load_board(f)) for f in files])
    finally:
        os.chdir(old)
    page = tmp_path / "suite.html"
    page.write_text(render_suite_html(suite), encoding="utf-8")
    dom = dump_dom(page, tmp_path)
    ce, other = dom.rows[0]["cells"], dom.rows[1]["cells"]
    assert ce["loss"] == ["ce"] and other["loss"] == [SCRIPT_LOSS]  # shown as text, no arguments
    assert ce["r0"][0].startswith("1.62 [") and ce["r1"][0].startswith("2.50") and ce["r0"][1] == "baseline"
    assert other["r0"][0] == "3.00, 2/2 never failed" and other["r1"] == ["-"]
    # the claim as the board page shows it: ratio [interval] verdict and its note, then the p values
    assert other["r0"][1].startswith("1.85x [") and other["r0"][1].endswith("] indistinguishable1")
    assert other["r0"][2] == "p = 0.33, the board's only claim"
    assert dom.notes["note-1"] == "the interval excludes 1, but 2 vs 2 seeds cannot reach p < 0.05 (smallest p 0.33)."
    assert other["summary"] == ["0 better, 0 worse", "1 indistinguishable"]
    assert "data-pwned" not in dom.html_attrs and dom.scripts == 0


# ----------------------------------------------------------------------------------------------- the shipped boards

SHIPPED = sorted(p for p in leaderboards_dir().glob("*.json") if p.name != "schema.json")

# Run in the page after its own script: what a reader sees of the table, written into the DOM for --dump-dom.
LAYOUT_JS = r"""
(function () {
  function lines(el) {  // line boxes of an element's text (not its curve's), by vertical overlap
    var found = [], walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, null), node;
    while ((node = walker.nextNode())) {
      if (!node.textContent.trim() || node.parentElement.closest("svg")) { continue; }
      var range = document.createRange();
      range.selectNodeContents(node);
      Array.prototype.forEach.call(range.getClientRects(), function (r) {
        if (r.width < 1) { return; }
        var mid = (r.top + r.bottom) / 2;
        if (!found.some(function (f) { return mid >= f[0] && mid <= f[1]; })) { found.push([r.top, r.bottom]); }
      });
    }
    return found.length;
  }
  var table = document.getElementById("board"), box = table.parentElement;
  var out = {table: table.getBoundingClientRect().width, box: box.clientWidth, scroll: box.scrollWidth,
             overflow: getComputedStyle(box).overflowX, rows: []};
  Array.prototype.forEach.call(table.rows, function (row) {
    out.rows.push({height: row.getBoundingClientRect().height,
                   lines: Array.prototype.map.call(row.cells, lines),
                   sticky: Array.prototype.map.call(row.cells, function (c) { return getComputedStyle(c).position; })});
  });
  var pre = document.createElement("pre");
  pre.id = "layout";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def layout(page: Path, tmp_path: Path, width: int) -> dict:
    """The table as Chromium lays it out `width` px wide: its width, its box's, and per row (the header
    first) the height and each cell's number of text lines. The measuring script is let in by its hash
    beside the page's own; nothing else of the page changes."""
    digest = base64.b64encode(hashlib.sha256(LAYOUT_JS.encode()).digest()).decode()
    quote = "&#x27;"  # the policy is an attribute: its quotes are escaped
    text = page.read_text()
    assert text.count(f"script-src {quote}sha256-") == 1
    text = text.replace(f"script-src {quote}sha256-", f"script-src {quote}sha256-{digest}{quote} {quote}sha256-")
    measured = tmp_path / f"measured-{width}.html"
    measured.write_text(text.replace("</body>", f"<script>{LAYOUT_JS}</script></body>"), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           f"--window-size={width},1400", "--dump-dom", measured.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="layout">(.*?)</pre>', out.stdout, re.S)
    assert found, f"the measuring script did not run: {out.stderr[-1000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def shipped_pages(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("shipped")
    pages = {}
    for board in SHIPPED:
        pages[board.stem] = tmp / f"{board.stem}.html"
        pages[board.stem].write_text(render_html(load_board(board)), encoding="utf-8")
    return pages


@pytest.mark.parametrize("board", [p.stem for p in SHIPPED])
def test_shipped_boards_keep_every_row_on_two_lines(shipped_pages, tmp_path, board):
    """At 1265 px (a 1280 px laptop window less a scrollbar) the whole table fits, with every cell (the
    header's too) on one or two lines, but for the vs CE cell of a retention board with a clean control,
    whose third line is the share of CE's gap the entry closes; at 800 px the cells keep their lines and the
    table scrolls sideways in its box, the rank and the loss staying in view."""
    vs_ce = 3  # render._HEADERS: rank, loss, time to failure, vs CE, ...
    gap = re.search(r"closes [+-]\d+%", shipped_pages[board].read_text())  # `claim_lines`' third line

    def fits(lines: list[int]) -> bool:
        return all(n <= (3 if gap and i == vs_ce else 2) for i, n in enumerate(lines))

    wide = layout(shipped_pages[board], tmp_path, 1265)
    assert wide["table"] <= wide["box"], f"{board}: the table is {wide['table']:.0f} px in a {wide['box']} px box"
    for i, row in enumerate(wide["rows"]):
        assert fits(row["lines"]), f"{board}: row {i} has a cell of too many lines: {row['lines']}"
        assert row["height"] <= 64, f"{board}: row {i} is {row['height']:.0f} px high"
    narrow = layout(shipped_pages[board], tmp_path, 800)
    assert all(fits(row["lines"]) for row in narrow["rows"])
    assert narrow["scroll"] > narrow["box"] and narrow["overflow"] == "auto"
    assert all(row["sticky"][:2] == ["sticky", "sticky"] and "sticky" not in row["sticky"][2:]
               for row in narrow["rows"])


# A claim's first line: a ratio of times ('0.95x [0.77, 1.17] ...') or, on a retention board, a difference of
# AUCs ('AUC +0.004 [-0.012, +0.019] ...'), then the verdict and a note's number
CLAIM_LINE = re.compile(r"^(?:\d+\.\d+x \[\d+\.\d+, \d+\.\d+\]|AUC [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]) "
                        r"(better|worse|indistinguishable)(\d*)$")


@pytest.mark.parametrize("board", [p.stem for p in SHIPPED])
def test_shipped_boards_show_each_claim_whole_and_no_unsupported_winner(board):
    """Every verdict cell holds the ratio's interval and the verdict, then the raw and the adjusted p, the
    header naming the Holm family (the claims against CE); where the interval excludes 1 beside
    "indistinguishable" a numbered note under the table says why; a lone "1" stands only where the claim
    against CE says so; a "=1 (p)" shows the p that tied the entry to the best."""
    data = load_board(leaderboards_dir() / f"{board}.json")
    ranked = ranking(data["entries"], **board_test(data))
    page = render_html(data)
    dom = _Table()
    dom.feed(page)
    assert len(dom.rows) == len(ranked)
    family = max((r.vs_ce["family"] for r in ranked if r.vs_ce), default=0)
    assert (f"p raw, after Holm over {family} claims" if family > 1 else "p (one claim: nothing to adjust)") in page
    for row, shown in zip(ranked, dom.rows):
        cell = shown["cells"]["vsce"]
        difference = row.vs_ce is not None and row.vs_ce.get("effect") == "difference"
        if row.vs_ce is None or row.vs_ce["diff" if difference else "ratio"] is None:
            assert cell == (["not compared (a ceiling)"] if row.entry.get("control") else ["baseline"]), cell
            continue
        if row.vs_ce["p_value"] is None:  # an arm grown seed by seed, one seed so far: an effect, no test yet
            parts = claim_parts(row.vs_ce)  # with a clean control on the board, the share of its gap (descriptive)
            assert cell == [f"{parts.effect} {row.vs_ce['verdict']}", "too few seeds"] + (
                [f"closes {parts.gap} of the gap"] if parts.gap else []), cell
            continue
        claim = CLAIM_LINE.match(cell[0])
        assert claim and claim.group(1) == row.vs_ce["verdict"], cell
        raw = format_p(row.vs_ce["p_value"], row.vs_ce["splits"])
        assert cell[1] == (f"{raw} raw, {row.vs_ce['p_holm']:.2g} after Holm" if family > 1 else
                           f"{raw}, the board's only claim"), cell
        (lo, hi), null = row.vs_ce["diff_ci"] if difference else row.vs_ce["ratio_ci"], 0 if difference else 1
        if row.vs_ce["verdict"] == "indistinguishable" and (lo > null or hi < null):
            note = dom.notes[f"note-{claim.group(2)}"]
            assert note.startswith((f"the interval excludes {null}", f"the bootstrap interval excludes {null}")), note
        if row.label == "1":
            ce_best = row.entry["loss"]["spec"] in BASELINE_SPECS
            assert (row.vs_ce or {}).get("verdict") == "better" or ce_best and all(
                r.vs_ce["verdict"] == "worse" for r in ranked if r.vs_ce and r.vs_ce["other"] == row.entry["name"])
        if row.label == "=1" and row.tie is not None:
            assert shown["cells"]["rank"] == ["=1", f"p = {row.tie['p_holm']:.2g}"]
