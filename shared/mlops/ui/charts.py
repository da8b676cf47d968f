"""Line charts as inline SVG, drawn on the server.

Why not a JavaScript chart library: the pages are rendered on the server anyway, a chart of at most a
page of points needs no interaction beyond a tooltip (SVG `<title>` gives one), there is no licence
or minified file to vendor and keep current, and the pages work with JavaScript off. A test counts a
chart's points in the HTML (`data-points`, one `<circle class="point">` each), as the browser shows it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 640, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 12, 28
PALETTE = ("#1a73e8", "#e8710a", "#188038", "#d93025", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368")


@dataclass(frozen=True)
class Point:
    label: str  # the x-axis tick: a version, a time
    value: float
    tip: str = ""  # the tooltip
    css: str = ""  # e.g. "promote" / "reject" / "breached"


@dataclass
class Series:
    name: str
    points: list[Point] = field(default_factory=list)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def line_chart(series: list[Series], title: str, threshold: float | None = None, chart_id: str = "") -> str:
    """An SVG line chart; x is the position in each series (the caller orders points oldest first),
    so points of different series at the same position share an x. Values that are not finite are
    left out. Returns markup to insert as is (every text in it is escaped)."""
    series = [Series(s.name, [p for p in s.points if math.isfinite(p.value)]) for s in series]
    values = [p.value for s in series for p in s.points] + ([threshold] if threshold is not None else [])
    count = sum(len(s.points) for s in series)
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    head = (f'<svg class="chart"{ident} role="img" aria-label="{escape(title)}" data-points="{count}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMinYMin meet">'
            f"<title>{escape(title)}</title>")
    if not values:
        return head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">no data</text></svg>'
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    span = high - low
    low, high = low - span * 0.05, high + span * 0.05
    slots = max(len(s.points) for s in series)
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(i: int) -> float:
        return PAD_LEFT + (plot_w * (i + 0.5) / slots)

    def y(v: float) -> float:
        return PAD_TOP + plot_h * (1 - (v - low) / (high - low))

    parts = [head, f'<rect x="{PAD_LEFT}" y="{PAD_TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>']
    for tick in (low + span * 0.05, (low + high) / 2, high - span * 0.05):
        parts.append(f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{PAD_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" class="axis">{escape(_fmt(tick))}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                     f'class="threshold"><title>threshold {escape(_fmt(threshold))}</title></line>')
    longest = max(series, key=lambda s: len(s.points))
    every = max(1, math.ceil(slots / 12))  # at most a dozen x labels
    for i, point in enumerate(longest.points):
        if i % every == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">'
                         f"{escape(point.label)}</text>")
    for number, s in enumerate(series):
        color = PALETTE[number % len(PALETTE)]
        path = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(s.points))
        parts.append(f'<g class="series" data-series="{escape(s.name)}" data-count="{len(s.points)}">')
        if len(s.points) > 1:
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, p in enumerate(s.points):
            tip = p.tip or f"{s.name} {p.label}: {_fmt(p.value)}"
            parts.append(f'<circle class="point {escape(p.css)}" cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="4" '
                         f'fill="{color}" data-label="{escape(p.label)}" data-value="{p.value!r}">'
                         f"<title>{escape(tip)}</title></circle>")
        parts.append("</g>")
    if len(series) > 1:
        legend_x = PAD_LEFT + 6
        for number, s in enumerate(series):
            parts.append(f'<text x="{legend_x}" y="{PAD_TOP + 14 + 14 * number}" class="legend" '
                         f'fill="{PALETTE[number % len(PALETTE)]}">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
