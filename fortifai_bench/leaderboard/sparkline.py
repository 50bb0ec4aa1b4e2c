"""A board's sparklines: each entry's score by stage as a small SVG for the board page.

One y range serves every curve of a board (`y_range`), so rows compare at a glance; the x axis carries
integer stage labels (`stage_ticks`), the y axis its two ends, and the failure threshold is drawn and
labelled. Every string is escaped: an entry's score name comes from a board, which anyone can edit.
"""

from __future__ import annotations

import math
from html import escape

from fortifai_bench.leaderboard.board import stat_bounds
from fortifai_bench.metrics import clip_interval
from fortifai_bench.stats import format_number


def y_range(entries: list[dict]) -> tuple[float, float]:
    """One y range for every curve of a board (so rows compare at a glance): the per-stage means and bands
    and the failure threshold, widened to tenths."""
    values = []
    for e in entries:
        bounds = stat_bounds(e["score_name"])["score"]
        for s in e["stages"]:
            values.append(s["score"]["mean"])
            values.extend(clip_interval(s["score"]["ci"], bounds))
        values.append(e["failure_threshold"])
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = math.floor(min(finite) * 10) / 10, math.ceil(max(finite) * 10) / 10
    return (lo, hi) if hi > lo else (lo - 0.1, hi + 0.1)


def stage_ticks(n_stages: int, most: int = 6) -> list[int]:
    """Integer stages to label on a curve's x axis: every stage when there are few, else a round step
    (2, 5, 10, 20, 25, 50, ...) that gives at most `most` labels, always from stage 0."""
    last = max(n_stages - 1, 0)
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if last // step + 1 <= most:
            return list(range(0, last + 1, step))
    return [0, last]


def _tick(v: float) -> str:
    return f"{v:.1f}" if abs(v * 10 - round(v * 10)) < 1e-9 else f"{v:.2g}"


def curve_svg(entry: dict, y_lim: tuple[float, float] | None = None, width: int = 150, height: int = 48) -> str:
    """The entry's per-stage score as a sparkline: the mean over seeds (a dot per stage when there are few)
    in its 95% band, the y range labelled at both ends (`y_range`: one range for the board), integer stage
    labels on the x axis, the failure threshold dashed and labelled. The title (a tooltip) gives every
    stage's mean."""
    stages = entry["stages"]
    means = [s["score"]["mean"] for s in stages]
    cis = [clip_interval(s["score"]["ci"], stat_bounds(entry["score_name"])["score"]) for s in stages]
    los = [ci[0] if ci[0] is not None else m for ci, m in zip(cis, means)]
    his = [ci[1] if ci[1] is not None else m for ci, m in zip(cis, means)]
    thr = entry["failure_threshold"]
    y_lo, y_hi = y_lim or y_range([entry])
    top, bottom, left, right = 4, 12, 20, 40  # bottom: stage labels; left: y labels; right: "fail 0.75", "stage"
    n = max(len(stages) - 1, 1)
    x_end, y_axis = width - right, height - bottom

    def x(i):
        return left + (x_end - left) * i / n

    def y(v):
        v = min(max(v, y_lo), y_hi)
        return top + (y_axis - top) * (1 - (v - y_lo) / (y_hi - y_lo))

    pts = [(x(i), y(m)) for i, m in enumerate(means) if m is not None]
    band = [(x(i), y(h)) for i, h in enumerate(his) if h is not None]
    band += [(x(i), y(lo)) for i, lo in reversed(list(enumerate(los))) if lo is not None]
    label = (f"{entry['score_name']} by stage (mean over {len(entry['seeds'])} seeds): "
             + ", ".join(f"stage {i}: {format_number(m)}" for i, m in enumerate(means)))
    parts = [f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{y_axis}"/>',
             f'<line class="axis" x1="{left}" y1="{y_axis}" x2="{x_end}" y2="{y_axis}"/>']
    for v, baseline in ((y_hi, top + 5), (y_lo, y_axis)):  # the two ends of the y range, inside the box
        parts.append(f'<line class="tick" x1="{left - 2}" y1="{y(v):.1f}" x2="{left}" y2="{y(v):.1f}"/>'
                     f'<text class="ytick" x="{left - 3}" y="{baseline}" text-anchor="end">{_tick(v)}</text>')
    for i in stage_ticks(len(stages)):
        parts.append(f'<line class="tick" x1="{x(i):.1f}" y1="{y_axis}" x2="{x(i):.1f}" y2="{y_axis + 2}"/>'
                     f'<text class="xtick" x="{x(i):.1f}" y="{height - 2}" text-anchor="middle">{i}</text>')
    parts.append(f'<text class="xlabel" x="{x_end + 12}" y="{height - 2}">stage</text>')
    y_fail = y(thr)
    y_text = y_fail + 3 if y_fail + 3 < y_axis - 6 else y_fail - 2  # clear of the "stage" label below
    parts.append(f'<line class="fail" x1="{left}" y1="{y_fail:.1f}" x2="{x_end}" y2="{y_fail:.1f}"/>'
                 f'<text class="fail-label" x="{x_end + 3}" y="{y_text:.1f}">fail {thr:g}</text>')
    parts.append(f'<polygon class="ci" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in band)}"/>'
                 f'<polyline class="mean" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}"/>')
    if len(stages) <= 12:
        parts.extend(f'<circle class="dot" cx="{a:.1f}" cy="{b:.1f}" r="1.5"/>' for a, b in pts)
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(parts)}</svg>')
