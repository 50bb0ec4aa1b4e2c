"""The rendered leaderboard page, read back from a real headless Chromium after its JavaScript ran.

Chromium is Debian's `chromium` package (`.ci/run` installs it). The page is opened from a file:// URL with
networking disabled, so this also proves it needs nothing from the network.
"""

from __future__ import annotations

import json
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fortifai_bench.leaderboard import load_board, publish
from fortifai_bench.leaderboard.render import render_html
from results_factory import write_seeds

CHROMIUM = os.environ.get("FORTIFAI_CHROMIUM", "/usr/bin/chromium")
# Each payload would mark the page if it ever ran as code.
SCRIPT_LOSS = "<script>document.documentElement.setAttribute('data-pwned','script')</script>"
IMG_MODEL = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','img')\">"


class _Table(HTMLParser):
    """Rows of the leaderboard table: each row's attributes and each cell's own text (not its children's)."""

    def __init__(self):
        super().__init__()
        self.html_attrs: dict = {}
        self.table_attrs: dict = {}
        self.rows: list[dict] = []
        self.scripts = 0
        self.links: list[str] = []
        self.svgs: list[dict] = []  # per curve: its <line> attributes and its <text> elements
        self._text: dict | None = None
        self._cell: dict | None = None
        self._depth = 0
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self.svgs.append({"lines": [], "texts": []})
        elif tag == "line" and self.svgs:
            self.svgs[-1]["lines"].append(attrs)
        elif tag == "text" and self.svgs:
            self._text = {**attrs, "text": ""}
            self.svgs[-1]["texts"].append(self._text)
        if tag == "a":
            self.links.append(attrs.get("href"))
        if tag == "html":
            self.html_attrs = attrs
        elif tag == "script":
            self.scripts += 1
        elif tag == "table" and attrs.get("id") == "board":
            self.table_attrs = attrs
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append({"attrs": attrs, "cells": {}})
        elif tag == "td" and self._in_body:
            self._cell = {"class": (attrs.get("class") or "").split()[-1:] or [""], "text": ""}
            self._depth = 0
        elif self._cell is not None:
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "text":
            self._text = None
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1]["cells"][self._cell["class"][0]] = self._cell["text"].strip()
            self._cell = None
        elif self._cell is not None:
            self._depth -= 1

    def handle_data(self, data):
        if self._text is not None:
            self._text["text"] += data
        if self._cell is not None and self._depth == 0:
            self._cell["text"] += data


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
    losses = [r["cells"]["loss"] for r in dom.rows]
    assert losses == ["tce:0.9", SCRIPT_LOSS, "ce"]  # ranked: never fails, fails at 2.5, fails at ~1.6
    # two seeds a side (6 splits: p >= 1/3); the tests against tce:0.9, the best, are a family of two (Holm:
    # 2 x 1/3), so all share its rank; the board's one claim, tce:0.9 against CE, is not adjusted
    ranks = [r["cells"]["num"] for r in dom.rows]
    assert ranks == ["=1", "=1 (p = 0.67)", "=1 (p = 0.67)"]
    vs_ce = [r["cells"]["vsce"] for r in dom.rows]
    assert vs_ce[0].startswith("1.85x") and vs_ce[0].endswith(
        "indistinguishable (p = 0.33, the board's only claim; the interval excludes 1, but 2 vs 2 seeds cannot "
        "reach p < 0.05 (smallest p 0.33))")
    assert vs_ce[1:] == ["-", "baseline"]  # the script loss has another model: no CE to compare with
    assert dom.rows[0]["cells"]["ttf"] == "not within 3 stages (2 of 2 never failed)"
    assert dom.rows[2]["cells"]["ttf"].startswith("1.62 [")
    assert "data-sorted" not in dom.table_attrs
    assert page.read_text().count("<svg") == 3


def test_page_links_the_paper_the_code_and_the_runs(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    assert dom.links[:2] == ["https://arxiv.org/abs/2509.08972", "https://github.com/pedramaghazadeh/ForTIFAI"]
    results = [link for link in dom.links[2:] if link.endswith("/results.json")]
    assert len(results) == 2 and all(Path(link).is_file() for link in results)  # ce's two seeds, where recorded
    text = page.read_text()
    assert "fortifai-bench collapse --loss ce --seed 1</code>" in text and "commit <code>abc123</code>" in text


def test_injected_strings_render_as_text_and_never_run(page, tmp_path):
    dom = dump_dom(page, tmp_path)
    row = dom.rows[1]
    assert row["cells"]["loss"] == SCRIPT_LOSS and row["cells"]["model"] == IMG_MODEL  # shown literally
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
    assert [r["cells"]["loss"] for r in dom.rows] == expected
    key, direction = fragment[len("#sort="):].split("&dir=")
    assert dom.table_attrs.get("data-sorted") == f"{key}:{direction}"


def test_curves_have_a_y_axis_and_a_labelled_threshold(page, tmp_path):
    """Every sparkline, as Chromium built it: ticks 0.5 and 1.0 (1.0 above), a threshold line labelled with
    its value, lying between the ticks where the threshold does."""
    dom = dump_dom(page, tmp_path)
    assert len(dom.svgs) == 3
    for svg in dom.svgs:
        ticks = {t["text"]: float(t["y"]) for t in svg["texts"] if t.get("class") == "ytick"}
        assert set(ticks) == {"0.5", "1.0"} and ticks["1.0"] < ticks["0.5"]
        [label] = [t for t in svg["texts"] if t.get("class") == "fail-label"]
        assert label["text"] == "fail 0.75"
        [fail] = [ln for ln in svg["lines"] if ln.get("class") == "fail"]
        y_fail = float(fail["y1"])
        assert ticks["1.0"] < y_fail < ticks["0.5"] and abs(float(label["y"]) - 3 - y_fail) < 0.2
        assert sum(ln.get("class") == "tick" for ln in svg["lines"]) == 2


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
    assert [r["cells"]["loss"] for r in dom.rows] == ["ce", SCRIPT_LOSS]  # shown as text
    assert dom.rows[0]["cells"]["r0"].startswith("1.62 [") and dom.rows[0]["cells"]["r1"].startswith("2.50")
    assert dom.rows[1]["cells"]["r0"].startswith("3.00, 2/2 never failed") and dom.rows[1]["cells"]["r1"] == "-"
    assert dom.rows[1]["cells"]["summary"] == "0 better, 0 worse, 1 indistinguishable"
    assert "data-pwned" not in dom.html_attrs and dom.scripts == 0
