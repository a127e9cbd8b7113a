"""Plots for the HTML report, drawn as inline SVG: a bar chart, a heatmap and a timeline.

Hand-drawn SVG instead of a plotting library: the page stays one self-contained file with sharp,
searchable text, and the report task needs no extra dependency on every worker host. Each plot is
laid out here as shapes (text, lines, rectangles) that templates/figure.svg draws, escaping every
label and tooltip; every function returns the `<svg>` element as Markup for report.html.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from markupsafe import Markup

from bqx_queue.report.templating import HTML

INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
PALETTE = ("#2f6fb3", "#e07b39", "#3a9a5b", "#b34a7d", "#7c5cbf", "#c9a227", "#3aa6b9", "#8a6d3b")
OK_COLOUR, FAILED_COLOUR, ESTIMATE_COLOUR = "#2f6fb3", "#c0392b", "#e07b39"
MARK_COLOUR = "#e07b39"
NO_RESULT_FILL = "url(#none)"  # the hatch pattern a heatmap defines for cells without a value


@dataclass(frozen=True)
class Text:
    kind: ClassVar[str] = "text"
    x: float
    y: float
    label: str
    size: int = 11
    anchor: str = "start"
    fill: str = INK
    bold: bool = False
    href: str = ""  # a link: a heatmap cell's value opens what the cell counts


@dataclass(frozen=True)
class Line:
    kind: ClassVar[str] = "line"
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = GRID
    stroke_width: float | None = None
    tooltip: str = ""


@dataclass(frozen=True)
class Rect:
    kind: ClassVar[str] = "rect"
    x: float
    y: float
    width: float
    height: float
    fill: str
    tooltip: str = ""
    rx: float | None = None
    stroke: str | None = None
    stroke_width: float | None = None
    href: str = ""


@dataclass(frozen=True)
class Hatch:
    """The pattern NO_RESULT_FILL names: defined once per plot that has cells without a value."""

    kind: ClassVar[str] = "hatch"


Shape = Text | Line | Rect | Hatch


def _figure(width: float, height: float, shapes: list[Shape], title: str) -> Markup:
    return Markup(HTML.get_template("figure.svg").render(width=width, height=height, shapes=shapes, title=title))


def nice_step(value: float) -> float:
    """Return a round number (1, 2, 2.5 or 5 x 10^k) at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def axis_ticks(peak: float, most: int = 5, integer: bool = False) -> list[float]:
    """Return round tick values from 0 to at least `peak`, at most `most` intervals."""
    if peak <= 0:
        return [0.0, 1.0]
    step = nice_step(peak / most)
    if integer:
        step = max(1.0, math.ceil(step))
    count = max(1, math.ceil(peak / step - 1e-9))
    return [step * i for i in range(count + 1)]


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    marker: float | None = None  # a second value drawn as a tick (e.g. the estimate)
    colour: str = OK_COLOUR
    tooltip: str = ""


def bar_chart(
    bars: Sequence[Bar],
    title: str,
    value_format: str = "{:,.4f}",
    marker_name: str = "",
    width: int = 640,
    integer: bool = False,
) -> Markup:
    """Return horizontal bars, one row per item, with an optional marker tick per row.
    `integer` keeps the axis ticks on whole numbers (for counts)."""
    label_width = min(260, 12 + 7 * max((len(b.label) for b in bars), default=4))
    row, top, right = 20, 26, 90
    height = top + row * max(len(bars), 1) + 30
    plot = width - label_width - right
    ticks = axis_ticks(max([b.value for b in bars] + [b.marker or 0 for b in bars] + [0]), 4, integer)
    top_value = ticks[-1]
    shapes: list[Shape] = [Text(0, 14, title, 13, bold=True)]
    for tick in ticks:
        x = label_width + plot * tick / top_value
        shapes.append(Line(x, top - 4, x, height - 26))
        shapes.append(Text(x, height - 12, value_format.format(tick), 10, "middle", MUTED))
    for i, bar in enumerate(bars):
        y = top + i * row
        length = plot * bar.value / top_value
        tip = bar.tooltip or f"{bar.label}: {value_format.format(bar.value)}"
        shapes.append(Text(label_width - 6, y + 13, bar.label, 11, "end"))
        shapes.append(Rect(label_width, y + 3, max(length, 0.5), row - 6, bar.colour, tip))
        shapes.append(Text(label_width + length + 4, y + 13, value_format.format(bar.value), 10, fill=MUTED))
        if bar.marker is not None:
            x = label_width + plot * bar.marker / top_value
            marker_tip = f"{marker_name}: {value_format.format(bar.marker)}"
            shapes.append(Line(x, y + 1, x, y + row - 1, ESTIMATE_COLOUR, 3, marker_tip))
    if marker_name and any(b.marker is not None for b in bars):
        shapes.append(Line(width - 150, 8, width - 150, 18, ESTIMATE_COLOUR, 3))
        shapes.append(Text(width - 144, 17, marker_name, 10, fill=MUTED))
    return _figure(width, height, shapes, title)


def _blend(low: str, high: str, share: float) -> str:
    a = [int(low[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(high[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b, strict=True))


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: dict[tuple[str, str], float | None],
    title: str,
    tooltips: dict[tuple[str, str], str] | None = None,
    low: str = "#f4f8fc",
    high: str = "#1d4f91",
    marked: set[tuple[str, str]] | None = None,
    left: int = 80,
    links: dict[tuple[str, str], str] | None = None,
) -> Markup:
    """Return a grid of cells coloured by value (None: a hatched 'no result' cell), value inside;
    `marked` cells get a heavy outline and a star after the value (e.g. significant); a cell in
    `links` is a link to its address (e.g. "#pair-eurusd-h15")."""
    cell_w, cell_h, top = 58, 22, 44
    width = max(left + cell_w * len(columns) + 110, 8 * len(title))  # the bold title must fit
    height = top + cell_h * len(rows) + 16
    known = [v for v in values.values() if v is not None]
    peak = max(known, default=0) or 1
    marked = marked or set()
    shapes: list[Shape] = [Text(0, 14, title, 13, bold=True), Hatch()]
    for j, column in enumerate(columns):
        shapes.append(Text(left + cell_w * j + cell_w / 2, top - 8, column, 11, "middle"))
    for i, row in enumerate(rows):
        y = top + cell_h * i
        shapes.append(Text(left - 8, y + 15, row, 11, "end"))
        for j, column in enumerate(columns):
            x = left + cell_w * j
            value = values.get((row, column))
            tip = (tooltips or {}).get((row, column), f"{row} {column}: {value}")
            href = (links or {}).get((row, column), "")
            if value is None:
                shapes.append(Rect(x, y, cell_w - 2, cell_h - 2, NO_RESULT_FILL, tip, href=href))
                continue
            share = value / peak
            shapes.append(Rect(x, y, cell_w - 2, cell_h - 2, _blend(low, high, share), tip, href=href))
            star = (row, column) in marked
            if star:
                shapes.append(
                    Rect(
                        x + 1,
                        y + 1,
                        cell_w - 4,
                        cell_h - 4,
                        "none",
                        tip,
                        stroke=MARK_COLOUR,
                        stroke_width=2.5,
                        href=href,
                    )
                )
            label = f"{value:g}" + ("*" if star else "")
            colour = "#ffffff" if share > 0.55 else INK
            shapes.append(Text(x + cell_w / 2 - 1, y + 15, label, 11, "middle", colour, href=href))
    legend_x = left + cell_w * len(columns) + 20
    for k in range(5):
        share = 1 - k / 4
        shapes.append(Rect(legend_x, top + k * 16, 14, 14, _blend(low, high, share)))
        shapes.append(Text(legend_x + 20, top + k * 16 + 11, f"{round(peak * share, 1):g}", 10, fill=MUTED))
    return _figure(width, height, shapes, title)


@dataclass(frozen=True)
class Span:
    lane: str  # who ran it: a worker process
    label: str
    start_s: float  # seconds from the run's start
    end_s: float
    failed: bool = False


def timeline(spans: Sequence[Span], title: str, width: int = 900) -> Markup:
    """Return a lane per worker process with a bar per task from its start to its end."""
    lanes = sorted({s.lane for s in spans})
    lane_h, top = 26, 30
    left = min(280, 16 + 7 * max((len(lane) for lane in lanes), default=4))
    plot = width - left - 20
    height = top + lane_h * max(len(lanes), 1) + 34
    ticks = axis_ticks(max((s.end_s for s in spans), default=1.0), 6)
    end = ticks[-1]
    shapes: list[Shape] = [Text(0, 14, title, 13, bold=True)]
    for tick in ticks:
        x = left + plot * tick / end
        shapes.append(Line(x, top - 4, x, height - 28))
        shapes.append(Text(x, height - 14, f"{tick:,.0f} s", 10, "middle", MUTED))
    for i, lane in enumerate(lanes):
        y = top + lane_h * i
        shapes.append(Text(left - 8, y + 16, lane, 11, "end"))
        shapes.append(Line(left, y + lane_h - 1, left + plot, y + lane_h - 1))
    for n, span in enumerate(sorted(spans, key=lambda s: (s.lane, s.start_s))):
        y = top + lane_h * lanes.index(span.lane)
        x0 = left + plot * max(span.start_s, 0) / end
        x1 = left + plot * max(span.end_s, span.start_s) / end
        colour = FAILED_COLOUR if span.failed else PALETTE[n % len(PALETTE)]
        tip = f"{span.label} on {span.lane}: {span.start_s:,.1f} s to {span.end_s:,.1f} s" + (
            " (failed)" if span.failed else ""
        )
        shapes.append(
            Rect(x0, y + 3, max(x1 - x0, 1.5), lane_h - 8, colour, tip, rx=3, stroke="#ffffff", stroke_width=1)
        )
        if x1 - x0 > 7 * len(span.label) + 6:
            shapes.append(Text((x0 + x1) / 2, y + 16, span.label, 10, "middle", "#ffffff"))
    return _figure(width, height, shapes, title)


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # one per x; None leaves a gap


def line_chart(x: Sequence[float], series: Sequence[Series], title: str, width: int = 300, height: int = 190) -> Markup:
    """Return a small plot of each series against `x` (points joined where both ends are known),
    with a zero line: a confirmed feature's dependence curve."""
    known = [v for s in series for v in s.values if v is not None]
    low, high = min(known + [0.0]), max(known + [0.0])
    span = (high - low) or 1.0
    left, right, top, bottom = 46, 10, 24, 34 + 14 * len(series)
    plot_w, plot_h = width - left - right, height - top - bottom
    x_low, x_high = min(x), max(x)
    x_span = (x_high - x_low) or 1.0

    def at(xv: float, yv: float) -> tuple[float, float]:
        return left + plot_w * (xv - x_low) / x_span, top + plot_h * (high - yv) / span

    shapes: list[Shape] = [Text(0, 14, title, 11, bold=True)]
    for value, anchor_y in ((high, 0.0), (low, 1.0)):
        shapes.append(Text(left - 4, top + plot_h * anchor_y + 4, f"{value:+.3f}", 9, "end", MUTED))
    zero_y = at(x_low, 0.0)[1]
    shapes.append(Line(left, zero_y, left + plot_w, zero_y))
    shapes.append(Text(left, top + plot_h + 14, f"{x_low:+.2f}", 9, "start", MUTED))
    shapes.append(Text(left + plot_w, top + plot_h + 14, f"{x_high:+.2f}", 9, "end", MUTED))
    for k, line in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        points = [(xv, yv) for xv, yv in zip(x, line.values, strict=True)]
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            if y0 is None or y1 is None:
                continue
            (a, b), (c, d) = at(x0, y0), at(x1, y1)
            tip = f"{line.label}: {y0:+.4f} at {x0:+.2f}, {y1:+.4f} at {x1:+.2f}"
            shapes.append(Line(a, b, c, d, colour, 2, tip))
        legend_y = top + plot_h + 28 + 14 * k
        shapes.append(Line(left, legend_y - 4, left + 16, legend_y - 4, colour, 2))
        shapes.append(Text(left + 22, legend_y, line.label, 9, fill=MUTED))
    return _figure(width, height, shapes, title)
