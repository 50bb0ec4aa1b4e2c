"""The collapse figures are fit for a paper: integer stage ticks, a unit on every axis, the band and every reference
line named, reference lines inside the axes (or a caption), nothing overlapping, PNG and SVG. On real smoke runs."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fortifai_bench.collapse import plots


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> list[dict]:
    """Two seeds of `fortifai-bench collapse --smoke --loss ce` (3 stages each), as their results.json."""
    out = tmp_path_factory.mktemp("plots")
    subprocess.run([sys.executable, "-m", "fortifai_bench", "collapse", "--smoke", "--loss", "ce", "--seeds", "0,1",
                    "--quiet", "--out", str(out)], check=True, capture_output=True)
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("collapse_smoke-ce-s*/results.json"))]
    assert len(runs) == 2
    return runs


def _boxes(fig, artists):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists if a.get_visible() and a.get_text()]


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _check_paper_rules(fig, stages: int):
    """The rules every figure keeps (see the module doc of collapse.plots)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert list(ax.get_xticks()) == list(range(stages)), ax.get_xticks()  # 0, 1, 2: no 0.25, 0.5
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        for line in ax.get_lines():  # reference lines (horizontal, the full width) lie inside the y range
            xs, ys = line.get_xdata(), line.get_ydata()
            if len(ys) == 2 and ys[0] == ys[1] and list(xs) == [0, 1]:
                low, high = ax.get_ylim()
                assert low <= ys[0] <= high, (line.get_label(), ys[0], (low, high))
        # no legend inside the axes' data area, hiding a point
        area = ax.get_window_extent(renderer)
        for legend in _legends(fig):
            assert not legend.get_window_extent(renderer).overlaps(area), legend.get_texts()[0].get_text()
    # no two texts of the figure's frame overlap: the title, the axes' titles, the legends
    frame = [fig._suptitle] if fig._suptitle is not None else []
    frame += [ax.title for ax in fig.axes]
    boxes = _boxes(fig, frame) + [legend.get_window_extent(renderer) for legend in _legends(fig)]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    texts = [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]
    assert not [t for t in texts if "off the axis" in t]
    return texts


def test_run_figures(smoke_runs, tmp_path):
    run = smoke_runs[0]
    kr = plots.kr_figure(run)
    texts = _check_paper_rules(kr, 3)
    assert {"KR split 0", "KR total", "failure threshold (0.75)", "chance (0.5)"} <= set(texts)
    assert "share of questions" in kr.axes[0].get_ylabel()
    kl = plots.kl_figure(run)
    _check_paper_rules(kl, 3)
    assert "(nats)" in kl.axes[0].get_ylabel()
    conf = plots.confidence_figure(run)
    conf.canvas.draw()  # its x axes are probabilities, not stages
    renderer = conf.canvas.get_renderer()
    title = conf._suptitle.get_window_extent(renderer)
    assert not [ax for ax in conf.axes if title.overlaps(ax.title.get_window_extent(renderer))]
    assert all("probability" in ax.get_xlabel() for ax in conf.axes) and conf.axes[0].get_ylabel()
    grad = plots.gradient_figure(run)  # the mask as trained per token class, beside the eval-mode measure
    texts = _check_paper_rules(grad, 3)
    assert {"corrupted regenerated tokens", "faithful regenerated tokens", "fresh real tokens"} <= set(texts)
    assert "TCE(0.9)" in grad.axes[0].get_ylabel() and len(grad.axes) == 2
    fresh = [line for line in grad.axes[0].get_lines() if line.get_label() == "fresh real tokens"][0]
    assert list(fresh.get_ydata()) == [s["gradient"]["trained"]["fresh"]["share_above_gamma"] for s in run["stages"]]
    written = plots.plot_run(run, tmp_path / "plots")
    names = sorted(p.name for p in written)
    assert names == sorted(f"{n}.{e}" for n in ("kr", "kl", "gradient", "confidence") for e in ("png", "svg"))
    svg = (tmp_path / "plots" / "kl.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "nats" in svg  # vector, its text kept as text


def test_the_summary_figure_names_its_band(smoke_runs, tmp_path):
    fig = plots.compare_figure({"ce": smoke_runs})
    texts = _check_paper_rules(fig, 3)
    assert plots.BAND in texts and "faint lines: each seed" in texts and "ce (mean of 2)" in texts
    assert "(nats)" in fig.axes[1].get_ylabel()
    assert [p.suffix for p in plots.plot_compare({"ce": smoke_runs}, tmp_path / "cmp")] == [".png", ".svg"]
    # both smoke seeds start from the one shipped base: its own KR before any stage is a reference line
    base = smoke_runs[0]["chance"]["base_model"]["kr_split0"]
    assert f"base model, before any stage ({base:.3f})" in texts
    shared = [{**copy.deepcopy(r), "chance": {"base_model": {"kr_split0": 0.3}}} for r in smoke_runs]
    texts = _check_paper_rules(plots.compare_figure({"ce": shared}), 3)
    assert "base model, before any stage (0.300)" in texts
    assert "base model, before any stage (0.300)" in _check_paper_rules(plots.kr_figure(shared[0]), 3)
    shared[1]["chance"]["base_model"]["kr_split0"] = 0.35  # a base per seed (the tiny regimes): none drawn
    assert not [t for t in _check_paper_rules(plots.compare_figure({"ce": shared}), 3) if t.startswith("base")]


def test_the_mechanism_figure_over_seeds(smoke_runs, tmp_path):
    """Fig. 1's contrast per loss (the control too) and, per loss but the control, the mask as trained: each
    curve the mean over seeds of what the runs recorded."""
    fig = plots.mechanism_figure({"ce": smoke_runs, "control": smoke_runs[:1]})
    texts = _check_paper_rules(fig, 3)
    assert {"ce: own rewrite (mean of 2)", "clean control: unseen real text (mean of 1)",
            "corrupted regenerated tokens (mean of 2)", "fresh real tokens (mean of 2)", plots.BAND} <= set(texts)
    assert len(fig.axes) == 2 and "TCE(0.9)" in fig.axes[1].get_ylabel()  # no mask panel for the control
    own = [line for line in fig.axes[0].get_lines() if line.get_label() == "ce: own rewrite (mean of 2)"][0]
    expected = [sum(r["stages"][i]["confidence"]["own_generated"]["mean"] for r in smoke_runs) / 2 for i in range(3)]
    assert list(own.get_ydata()) == pytest.approx(expected, rel=1e-12)
    corrupted = [line for line in fig.axes[1].get_lines() if line.get_label().startswith("corrupted")][0]
    assert list(corrupted.get_xdata()) == [1, 2]  # stage 0 trains on real text only: no regenerated class
    assert [p.suffix for p in plots.plot_mechanism({"ce": smoke_runs}, tmp_path / "mech")] == [".png", ".svg"]
    bare = [{**r, "stages": [{k: v for k, v in s.items() if k != "confidence"} for s in r["stages"]]}
            for r in smoke_runs]
    assert plots.plot_mechanism({"ce": bare}, tmp_path / "none") == [] and not list(tmp_path.glob("none*"))


def test_a_kl_floor_far_above_the_curves_is_a_caption(smoke_runs):
    """A floor the axes would have to stretch for (as on the full facts task: 4.42 nats over curves under 0.9) is
    stated under the figure, not drawn off the axes or only in the legend."""
    run = copy.deepcopy(smoke_runs[0])
    top = max(s["kl_split0"] for s in run["stages"])
    run["stages"][0]["kl_floor"] = {"halves": 10 * top, "split1": 1.5 * top}
    fig = plots.kl_figure(run)
    texts = _check_paper_rules(fig, 3)
    assert any("split 0 vs real split 1" in t for t in texts)  # within reach: drawn, and named in the legend
    [caption] = [t.get_text() for t in fig.texts]
    assert f"two real halves of split 0: {10 * top:.2f} nats (above the plotted range)" in caption
    assert fig.axes[0].get_ylim()[1] < 10 * top


def _run_folders(runs: list[dict], stem: Path) -> list[str]:
    """Each run's results.json alone in a folder of its own (STEM0, STEM1, ...), as a moved run folder is."""
    folders = []
    for i, run in enumerate(runs):
        folder = stem.with_name(f"{stem.name}{i}")
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps({k: v for k, v in run.items() if k != "_path"}))
        folders.append(str(folder))
    return folders


def test_an_entry_grown_seed_by_seed_equals_the_one_built_at_once(smoke_runs, tmp_path):
    """Seed 0 published, its folder gone (with its machine), then seed 1 alone: the board's entry keeps seed 0's
    numbers as published and is, field by field (the mechanism's too), the entry of both runs at once."""
    import shutil

    from fortifai_bench.leaderboard import load_board, publish
    from fortifai_bench.leaderboard.board import build_entry, canonical
    from fortifai_bench.results import load_results

    folders = _run_folders(smoke_runs, tmp_path / "seed")
    at_once = build_entry([load_results(f) for f in folders])
    publish(folders[:1], root=tmp_path)
    shutil.rmtree(folders[0])
    report = publish(folders[1:], root=tmp_path)
    [entry] = load_board(tmp_path / "collapse_smoke.json")["entries"]
    assert report.grown == [at_once["name"]] and canonical(entry) == canonical(at_once)
    assert entry["stages"][2]["mask_trained"]["corrupted"]["n"] == 2


def test_cli_plot_redraws_from_results_alone(smoke_runs, tmp_path, capsys):
    """`fortifai-bench plot`: a run's figures again from its results.json (wherever the folder now is), and with
    --to the figures over seeds; runs of two tasks cannot share a figure (one line, exit 2)."""
    from fortifai_bench.cli import main

    moved = _run_folders(smoke_runs, tmp_path / "moved")
    assert main(["plot", *moved, "--to", str(tmp_path / "both")]) == 0
    for folder in moved:
        assert sorted(p.name for p in (Path(folder) / "plots").iterdir()) == sorted(
            f"{n}.{e}" for n in ("kr", "kl", "gradient", "confidence") for e in ("png", "svg"))
    assert "ce (mean of 2)" in (tmp_path / "both.svg").read_text()
    assert "ce: own rewrite (mean of 2)" in (tmp_path / "both-mechanism.svg").read_text()
    other = json.loads((Path(moved[1]) / "results.json").read_text())
    other["task"]["version"] += 1
    (Path(moved[1]) / "results.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["plot", *moved, "--to", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 tasks" in err and not list(tmp_path.glob("mixed*"))


def test_a_board_entry_keeps_the_mechanism_and_draws_it(smoke_runs, tmp_path):
    """A board entry keeps each stage's Fig. 1 confidence and mask as trained per seed, so `compare BOARD#ENTRY
    --plot` draws the mechanism figure its runs give, to the same numbers; a hand edit of one is refused."""
    from fortifai_bench.compare import compare_runs, load_side
    from fortifai_bench.errors import FortifaiError
    from fortifai_bench.leaderboard import load_board, publish
    from fortifai_bench.leaderboard.board import check_board_consistency
    from fortifai_bench.leaderboard.render import render_html

    folders = _run_folders(smoke_runs, tmp_path / "seed")
    publish(folders, root=tmp_path)
    path = tmp_path / "collapse_smoke.json"
    [entry] = load_board(path)["entries"]
    stage = entry["stages"][2]
    assert stage["confidence"]["own_generated"]["per_seed"] == [
        r["stages"][2]["confidence"]["own_generated"]["mean"] for r in smoke_runs]
    assert stage["mask_trained"]["corrupted"]["per_seed"] == [
        r["stages"][2]["gradient"]["trained"]["corrupted"]["share_above_gamma"] for r in smoke_runs]
    assert set(entry["stages"][0]["mask_trained"]) == {"gamma", "fresh"}  # stage 0 trains on real text only

    name = f"{path}#{entry['name']}"
    compare_runs([name], folders, plot=str(tmp_path / "cmp"))
    from_board = plots.mechanism_figure({"ce": load_side(name)})
    from_runs = plots.mechanism_figure({"ce": smoke_runs})
    for a, b in zip(from_board.axes, from_runs.axes, strict=True):
        assert [(line.get_label(), list(line.get_ydata())) for line in a.get_lines()] == [
            (line.get_label(), list(line.get_ydata())) for line in b.get_lines()]
    assert "A: ce: own rewrite (mean of 2)" in (tmp_path / "cmp-mechanism.svg").read_text()
    # the whole board's figures from its file alone (`leaderboard plot`): each entry an arm, as its runs draw it
    from fortifai_bench.cli import main
    assert main(["leaderboard", "plot", str(path), "--to", str(tmp_path / "board")]) == 0
    assert sorted(p.name for p in tmp_path.glob("board*")) == ["board-mechanism.png", "board-mechanism.svg",
                                                               "board.png", "board.svg"]
    assert "ce (mean of 2)" in (tmp_path / "board.svg").read_text()
    assert "ce: own rewrite (mean of 2)" in (tmp_path / "board-mechanism.svg").read_text()
    toy = Path(__file__).resolve().parent.parent / "leaderboards" / "toy_gaussian.json"
    assert main(["leaderboard", "plot", str(toy), "--to", str(tmp_path / "toy")]) == 2  # its axes are text's
    assert not list(tmp_path.glob("toy*"))
    page = render_html(load_board(path))  # the page's mechanism table: M_0 and the last stage, means over seeds
    own = [f"{sum(r['stages'][i]['confidence']['own_generated']['mean'] for r in smoke_runs) / 2:.3f}" for i in (0, 2)]
    assert "<h2>The mechanism</h2>" in page and f'<td class="num">{own[0]}</td><td class="num">{own[1]}</td>' in page
    assert "share above 0.9 in training, M<sub>2</sub>" in page
    shipped = load_board(Path(__file__).resolve().parent.parent / "leaderboards" / "collapse_facts.json")
    assert "The mechanism" not in render_html(shipped)  # published before entries kept it

    board = load_board(path)
    board["entries"][0]["stages"][1]["confidence"]["unseen_real"]["mean"] += 0.1
    with pytest.raises(FortifaiError, match=r"stages\[1\]\.confidence\.unseen_real: mean .* but the per-seed values"):
        check_board_consistency(board, str(path))
