"""Server-rendered inline SVG charts for the researcher console: line, bar, horizontal bar and
heatmap.

Pure: no Django imports, plain data in, an SVG string out, so the charts can be tested (and
reused from a notebook) without a database. No JavaScript and nothing from a CDN: the console
must work on locked-down hospital and university networks. Every chart carries a <title> (its
accessible name, referenced by aria-labelledby) and every mark its own <title>, which screen
readers announce and browsers show as a tooltip. All text is escaped here, so callers may mark
the result safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from studyplatform.core.html_text import escape_html as _e

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

Series = Sequence[tuple[str, Sequence[float]]]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n at or above `value` (at least 1), for a readable axis top."""
    if value <= 1:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))  # pragma: no cover - the loop always returns


def _open(chart_id: str, title: str, width: int, height: int, desc: str = "") -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{_e(chart_id)}-title'
        + (f' {_e(chart_id)}-desc"' if desc else '"')
        + ">",
        f'<title id="{_e(chart_id)}-title">{_e(title)}</title>',
    ]
    if desc:
        parts.append(f'<desc id="{_e(chart_id)}-desc">{_e(desc)}</desc>')
    return parts


def _empty(chart_id: str, title: str, message: str, width: int = 640) -> str:
    parts = _open(chart_id, title, width, 60)
    parts.append(f'<text x="{width // 2}" y="34" text-anchor="middle" fill="#555">')
    parts.append(f"{_e(message)}</text></svg>")
    return "".join(parts)


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts: list[str] = []
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{color}"></rect>'
            f'<text x="{x + 14:.1f}" y="{y:.1f}" font-size="11">{_e(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return parts


def _y_axis(left: int, top: int, plot_h: int, plot_w: int, y_max: float) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        y = top + plot_h - fraction * plot_h
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"></line>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
            f"{_e(_fmt(y_max * fraction))}</text>"
        )
    return parts


def _x_labels(labels: Sequence[str], xs: Sequence[float], y: float) -> list[str]:
    # At most ~8 labels so dates never overlap; the marks' titles carry every value anyway.
    step = max(1, math.ceil(len(labels) / 8))
    return [
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="middle" font-size="10">{_e(label)}</text>'
        for i, (label, x) in enumerate(zip(labels, xs, strict=True))
        if i % step == 0 or i == len(labels) - 1
    ]


def line_chart(
    *,
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Series,
    empty_message: str = "No data yet.",
    width: int = 640,
    height: int = 220,
) -> str:
    """One line per series over shared x labels (e.g. days), with a point per value."""
    if not x_labels or not series:
        return _empty(chart_id, title, empty_message, width)
    left, right, top, bottom = 40, 10, 24, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    y_max = nice_max(max((max(values, default=0) for _, values in series), default=0))
    n = len(x_labels)
    xs = [left + (plot_w * (i + 0.5) / n) for i in range(n)]
    parts = _open(chart_id, title, width, height)
    parts += _y_axis(left, top, plot_h, plot_w, y_max)
    parts += _legend([name for name, _ in series], left, 14)
    for index, (name, values) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        points = [(x, top + plot_h - (v / y_max) * plot_h) for x, v in zip(xs, values, strict=True)]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2">'
                f"</polyline>"
            )
        for (x, y), label, value in zip(points, x_labels, values, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{_e(name)}, {_e(label)}: {_e(_fmt(value))}</title></circle>"
            )
    parts += _x_labels(x_labels, xs, height - 10)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Series,
    empty_message: str = "No data yet.",
    width: int = 640,
    height: int = 220,
) -> str:
    """Vertical bars per x label; several series are stacked (e.g. messages per day per arm)."""
    if not x_labels or not series:
        return _empty(chart_id, title, empty_message, width)
    left, right, top, bottom = 40, 10, 24, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(x_labels)
    totals = [sum(values[i] for _, values in series) for i in range(n)]
    y_max = nice_max(max(totals, default=0))
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.7)
    xs = [left + slot * (i + 0.5) for i in range(n)]
    parts = _open(chart_id, title, width, height)
    parts += _y_axis(left, top, plot_h, plot_w, y_max)
    if len(series) > 1:
        parts += _legend([name for name, _ in series], left, 14)
    base = [0.0] * n
    for index, (name, values) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        for i, value in enumerate(values):
            if value <= 0:
                continue
            h = (value / y_max) * plot_h
            y = top + plot_h - base[i] - h
            base[i] += h
            parts.append(
                f'<rect x="{xs[i] - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{_e(name)}, {_e(x_labels[i])}: '
                f"{_e(_fmt(value))}</title></rect>"
            )
    parts += _x_labels(x_labels, xs, height - 10)
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    *,
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, float]],
    max_value: float | None = None,
    suffix: str = "",
    empty_message: str = "No data yet.",
    width: int = 640,
) -> str:
    """One horizontal bar per labelled row (funnel stages, arms, completion per wave); the
    value is printed at the bar's end so the chart reads without a y axis."""
    if not rows:
        return _empty(chart_id, title, empty_message, width)
    label_w, row_h, value_w = 170, 26, 70
    height = row_h * len(rows) + 8
    plot_w = width - label_w - value_w
    top_value = max_value if max_value else nice_max(max(v for _, v in rows))
    parts = _open(chart_id, title, width, height)
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_h
        w = 0 if top_value <= 0 else max(0.0, min(1.0, value / top_value)) * plot_w
        text = f"{_fmt(value)}{suffix}"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" font-size="12">'
            f"{_e(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 8}" '
            f'fill="#f1f1f1"></rect>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{PALETTE[0]}"><title>{_e(label)}: {_e(text)}</title></rect>'
            f'<text x="{label_w + plot_w + 6}" y="{y + 16}" font-size="12">{_e(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def heatmap(
    *,
    chart_id: str,
    title: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cells: Sequence[Sequence[str]],
    states: Mapping[str, tuple[str, str]],
    empty_message: str = "No data yet.",
    cell: int = 18,
) -> str:
    """A grid of categorical cells: `cells[r][c]` is a key of `states`, which maps each state to
    (fill colour, label). The legend names every state, so colour is never the only cue: each
    cell's <title> says its row, column and state in words."""
    if not row_labels or not col_labels:
        return _empty(chart_id, title, empty_message)
    label_w, head_h, legend_h = 110, 70, 24
    width = max(label_w + cell * len(col_labels) + 10, 420)
    height = legend_h + head_h + cell * len(row_labels) + 6
    parts = _open(chart_id, title, width, height)
    x = 4.0
    for fill, label in states.values():
        parts.append(
            f'<rect x="{x:.1f}" y="6" width="12" height="12" fill="{fill}" stroke="#999">'
            f'</rect><text x="{x + 16:.1f}" y="16" font-size="11">{_e(label)}</text>'
        )
        x += 30 + 6.5 * len(label)
    for c, label in enumerate(col_labels):
        cx = label_w + c * cell + cell / 2
        cy = legend_h + head_h - 4
        parts.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" '
            f'transform="rotate(-60 {cx:.1f} {cy:.1f})">{_e(label)}</text>'
        )
    for r, row_label in enumerate(row_labels):
        y = legend_h + head_h + r * cell
        parts.append(
            f'<text x="{label_w - 6}" y="{y + cell - 5}" text-anchor="end" font-size="11">'
            f"{_e(row_label)}</text>"
        )
        for c, state in enumerate(cells[r]):
            fill, state_label = states.get(state, ("#ffffff", state))
            parts.append(
                f'<rect x="{label_w + c * cell}" y="{y}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="{fill}" stroke="#bbb"><title>{_e(row_label)}, {_e(col_labels[c])}: '
                f"{_e(state_label)}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)
