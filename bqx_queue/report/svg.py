"""Plots for the HTML report, drawn as inline SVG: a bar chart, a heatmap and a timeline.

Hand-drawn SVG instead of a plotting library: the page stays one self-contained file with sharp,
searchable text, and the report task needs no extra dependency on every worker host.
Every function returns an `<svg>` element as a string; all text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
INK = "#1f2933"
MUTED = "#7b8794"
GRID = "#e4e7eb"
PALETTE = ("#2f6fb3", "#e07b39", "#3a9a5b", "#b34a7d", "#7c5cbf", "#c9a227", "#3aa6b9", "#8a6d3b")
OK_COLOUR, FAILED_COLOUR, ESTIMATE_COLOUR = "#2f6fb3", "#c0392b", "#e07b39"
MARK_COLOUR = "#e07b39"


def _text(
    x: float,
    y: float,
    label: str,
    size: int = 11,
    anchor: str = "start",
    fill: str = INK,
    extra: str = "",
) -> str:
    return (
        f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{fill}' {FONT} {extra}>"
        f"{escape(label)}</text>"
    )


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
        f"viewBox='0 0 {width:.0f} {height:.0f}' role='img' aria-label='{escape(title)}'>"
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


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
) -> str:
    """Return horizontal bars, one row per item, with an optional marker tick per row.
    `integer` keeps the axis ticks on whole numbers (for counts)."""
    label_width = min(260, 12 + 7 * max((len(b.label) for b in bars), default=4))
    row, top, right = 20, 26, 90
    height = top + row * max(len(bars), 1) + 30
    plot = width - label_width - right
    ticks = axis_ticks(max([b.value for b in bars] + [b.marker or 0 for b in bars] + [0]), 4, integer)
    top_value = ticks[-1]
    body = [_text(0, 14, title, 13, extra="font-weight='bold'")]
    for tick in ticks:
        x = label_width + plot * tick / top_value
        body.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{height - 26}' stroke='{GRID}'/>")
        body.append(_text(x, height - 12, value_format.format(tick), 10, "middle", MUTED))
    for i, bar in enumerate(bars):
        y = top + i * row
        length = plot * bar.value / top_value
        tip = f"<title>{escape(bar.tooltip or f'{bar.label}: {value_format.format(bar.value)}')}</title>"
        body.append(_text(label_width - 6, y + 13, bar.label, 11, "end"))
        body.append(
            f"<rect x='{label_width}' y='{y + 3}' width='{max(length, 0.5):.1f}' height='{row - 6}' fill='{bar.colour}'>{tip}</rect>"
        )
        body.append(_text(label_width + length + 4, y + 13, value_format.format(bar.value), 10, fill=MUTED))
        if bar.marker is not None:
            x = label_width + plot * bar.marker / top_value
            body.append(
                f"<line x1='{x:.1f}' y1='{y + 1}' x2='{x:.1f}' y2='{y + row - 1}' stroke='{ESTIMATE_COLOUR}' stroke-width='3'>"
                f"<title>{escape(marker_name)}: {escape(value_format.format(bar.marker))}</title></line>"
            )
    if marker_name and any(b.marker is not None for b in bars):
        body.append(
            f"<line x1='{width - 150}' y1='8' x2='{width - 150}' y2='18' stroke='{ESTIMATE_COLOUR}' stroke-width='3'/>"
        )
        body.append(_text(width - 144, 17, marker_name, 10, fill=MUTED))
    return _svg(width, height, body, title)


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
) -> str:
    """Return a grid of cells coloured by value (None: a hatched 'no result' cell), value inside;
    `marked` cells get a heavy outline and a star after the value (e.g. significant)."""
    cell_w, cell_h, top = 58, 22, 44
    width = max(left + cell_w * len(columns) + 110, 8 * len(title))  # the bold title must fit
    height = top + cell_h * len(rows) + 16
    known = [v for v in values.values() if v is not None]
    peak = max(known, default=0) or 1
    body = [
        _text(0, 14, title, 13, extra="font-weight='bold'"),
        "<defs><pattern id='none' width='6' height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'>"
        f"<rect width='6' height='6' fill='#fafafa'/><line x1='0' y1='0' x2='0' y2='6' stroke='{GRID}' stroke-width='3'/>"
        "</pattern></defs>",
    ]
    for j, column in enumerate(columns):
        body.append(_text(left + cell_w * j + cell_w / 2, top - 8, column, 11, "middle"))
    for i, row in enumerate(rows):
        y = top + cell_h * i
        body.append(_text(left - 8, y + 15, row, 11, "end"))
        for j, column in enumerate(columns):
            x = left + cell_w * j
            value = values.get((row, column))
            tip = escape((tooltips or {}).get((row, column), f"{row} {column}: {value}"))
            if value is None:
                body.append(
                    f"<rect x='{x}' y='{y}' width='{cell_w - 2}' height='{cell_h - 2}' fill='url(#none)'><title>{tip}</title></rect>"
                )
                continue
            share = value / peak
            body.append(
                f"<rect x='{x}' y='{y}' width='{cell_w - 2}' height='{cell_h - 2}' fill='{_blend(low, high, share)}'><title>{tip}</title></rect>"
            )
            if (row, column) in (marked or set()):
                body.append(
                    f"<rect x='{x + 1}' y='{y + 1}' width='{cell_w - 4}' height='{cell_h - 4}' fill='none' "
                    f"stroke='{MARK_COLOUR}' stroke-width='2.5'><title>{tip}</title></rect>"
                )
            body.append(
                _text(
                    x + cell_w / 2 - 1,
                    y + 15,
                    f"{value:g}" + ("*" if (row, column) in (marked or set()) else ""),
                    11,
                    "middle",
                    "#ffffff" if share > 0.55 else INK,
                )
            )
    legend_x = left + cell_w * len(columns) + 20
    for k in range(5):
        share = 1 - k / 4
        body.append(
            f"<rect x='{legend_x}' y='{top + k * 16}' width='14' height='14' fill='{_blend(low, high, share)}'/>"
        )
        body.append(_text(legend_x + 20, top + k * 16 + 11, f"{round(peak * share, 1):g}", 10, fill=MUTED))
    return _svg(width, height, body, title)


@dataclass(frozen=True)
class Span:
    lane: str  # who ran it: a worker process
    label: str
    start_s: float  # seconds from the run's start
    end_s: float
    failed: bool = False


def timeline(spans: Sequence[Span], title: str, width: int = 900) -> str:
    """Return a lane per worker process with a bar per task from its start to its end."""
    lanes = sorted({s.lane for s in spans})
    lane_h, top = 26, 30
    left = min(280, 16 + 7 * max((len(lane) for lane in lanes), default=4))
    plot = width - left - 20
    height = top + lane_h * max(len(lanes), 1) + 34
    ticks = axis_ticks(max((s.end_s for s in spans), default=1.0), 6)
    end = ticks[-1]
    body = [_text(0, 14, title, 13, extra="font-weight='bold'")]
    for tick in ticks:
        x = left + plot * tick / end
        body.append(f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{height - 28}' stroke='{GRID}'/>")
        body.append(_text(x, height - 14, f"{tick:,.0f} s", 10, "middle", MUTED))
    for i, lane in enumerate(lanes):
        y = top + lane_h * i
        body.append(_text(left - 8, y + 16, lane, 11, "end"))
        body.append(
            f"<line x1='{left}' y1='{y + lane_h - 1}' x2='{left + plot}' y2='{y + lane_h - 1}' stroke='{GRID}'/>"
        )
    for n, span in enumerate(sorted(spans, key=lambda s: (s.lane, s.start_s))):
        y = top + lane_h * lanes.index(span.lane)
        x0 = left + plot * max(span.start_s, 0) / end
        x1 = left + plot * max(span.end_s, span.start_s) / end
        colour = FAILED_COLOUR if span.failed else PALETTE[n % len(PALETTE)]
        tip = f"{span.label} on {span.lane}: {span.start_s:,.1f} s to {span.end_s:,.1f} s" + (
            " (failed)" if span.failed else ""
        )
        body.append(
            f"<rect x='{x0:.1f}' y='{y + 3}' width='{max(x1 - x0, 1.5):.1f}' height='{lane_h - 8}' rx='3' fill='{colour}' "
            f"stroke='#ffffff' stroke-width='1'><title>{escape(tip)}</title></rect>"
        )
        if x1 - x0 > 7 * len(span.label) + 6:
            body.append(_text((x0 + x1) / 2, y + 16, span.label, 10, "middle", "#ffffff"))
    return _svg(width, height, body, title)
