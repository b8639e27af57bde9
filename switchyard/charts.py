"""Inline SVG charts for the journey report: no script and no fetch, so the HTML file opens
anywhere, offline, and prints as it shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Colour-blind-safe (Okabe-Ito), in series order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _legend(names: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        left = x + i * 130
        out.append(f'<rect x="{left}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{left + 14}" y="{y}">{escape(name)}</text>')
    return out


def grouped_bars(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], percent: bool = False
) -> str:
    """Horizontal bars: one group per label, one bar per series (a funnel's steps)."""
    names = list(series)
    top = max((v for values in series.values() for v in values), default=0) or 1
    bar, gap, label_width, plot = 14, 10, 170, 420
    group = bar * len(names) + gap
    height = 30 + group * len(labels) + 10
    body = _legend(names, label_width, 14)
    for row, label in enumerate(labels):
        y0 = 30 + row * group
        body.append(
            f'<text x="{label_width - 6}" y="{y0 + group / 2}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        for i, name in enumerate(names):
            value = series[name][row]
            width = plot * value / top
            y = y0 + i * bar
            body.append(
                f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar - 2}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(name)}: {_fmt(value, percent)}'
                "</title></rect>"
            )
            body.append(
                f'<text x="{label_width + width + 4:.1f}" y="{y + bar - 4}">'
                f"{_fmt(value, percent)}</text>"
            )
    return _svg(label_width + plot + 70, height, body, title)


def stacked_columns(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]
) -> str:
    """Vertical stacked columns: one per label (a week), stacked by series (channels)."""
    names = list(series)
    totals = [sum(series[n][i] for n in names) for i in range(len(labels))]
    top = max(totals, default=0) or 1
    left, plot_height, column, gap = 50, 200, 36, 14
    width = left + len(labels) * (column + gap) + 20
    body = _legend(names, left, 14)
    base = 30 + plot_height
    body.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>')
    body.append(f'<text x="{left - 6}" y="{34}" text-anchor="end">{_fmt(top)}</text>')
    for i, label in enumerate(labels):
        x = left + i * (column + gap)
        y = float(base)
        for s, name in enumerate(names):
            h = plot_height * series[name][i] / top
            y -= h
            body.append(
                f'<rect x="{x}" y="{y:.1f}" width="{column}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(label)} {escape(name)}: '
                f"{_fmt(series[name][i])}</title></rect>"
            )
        body.append(
            f'<text x="{x + column / 2}" y="{base + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    return _svg(max(width, 360), base + 26, body, title)


def intervals(title: str, rows: Sequence[tuple[str, float, float, float, bool]]) -> str:
    """Each row: (label, estimate, low, high, readable) on a shared axis with a zero line; an
    estimate not readable yet is drawn hollow."""
    label_width, plot, row_height = 230, 420, 28
    values = [v for _, est, low, high, _ in rows for v in (est, low, high)] + [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def x(v: float) -> float:
        return label_width + plot * (v - lo) / (hi - lo)

    height = 20 + row_height * len(rows) + 24
    body = [
        f'<line x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 20}" stroke="#999" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 6}" text-anchor="middle">0</text>',
        f'<text x="{label_width}" y="{height - 6}">{_fmt(lo, True)}</text>',
        f'<text x="{label_width + plot}" y="{height - 6}" text-anchor="end">'
        f"{_fmt(hi, True)}</text>",
    ]
    for i, (label, est, low, high, readable) in enumerate(rows):
        y = 20 + i * row_height + row_height / 2
        colour = PALETTE[0]
        body.append(
            f'<text x="{label_width - 8}" y="{y + 4}" text-anchor="end">{escape(label)}</text>'
        )
        body.append(
            f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        fill = colour if readable else "white"
        body.append(
            f'<circle cx="{x(est):.1f}" cy="{y}" r="5" fill="{fill}" stroke="{colour}" '
            f'stroke-width="2"><title>{escape(label)}: {_fmt(est, True)} '
            f"[{_fmt(low, True)}, {_fmt(high, True)}]</title></circle>"
        )
    return _svg(label_width + plot + 30, height, body, title)


def _fmt(value: float, percent: bool = False) -> str:
    if percent:
        return f"{value * 100:.1f}%"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
