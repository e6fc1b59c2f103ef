"""Server-rendered SVG charts for the admin: the one place a chart is drawn.

No JavaScript and no external assets. Every label and tooltip is escaped here, so each
function returns markup that is safe to put in a page as it is.

Two families, by where they are shown:

- the metrics dashboard's charts (`svg_lines`, `svg_bars`, `svg_funnel`, `svg_heatmap`):
  each has a <title> and a <desc> for screen readers (ids from its `key`), a <title>
  tooltip on every mark (class `kc-mark`), axis labels, and colours told apart with the
  common colour-vision deficiencies; they are styled by the dashboard's stylesheet
  (`kc-*` classes);
- small charts on ordinary admin pages, styled inline (`svg_hbars`: horizontal bars with
  their values, `svg_sparkline`: a trend line).

`figure_text` writes a figure for people (thousands separated, two decimals for money and
rates, a dash when there is none): the tooltips use it, and so do the tables beside them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 720
# Okabe–Ito colours: told apart with the common colour-vision deficiencies; lines also
# differ by dash, so the legend never depends on colour alone.
COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7")
DASHES = ("", "6 4", "2 3", "8 3 2 3")
ADMIN_BLUE = "#417690"  # Django admin's own, for the inline-styled charts


# --- numbers -------------------------------------------------------------------------------


def figure_text(value, suffix: str = "") -> str:
    """A figure for people: thousands separated, money and rates with two decimals (a
    whole rate without them); a dash, without the unit, when there is no figure."""
    if value is None:
        return "—"
    if isinstance(value, bool | str):
        return f"{value}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    if isinstance(value, Decimal | float):
        text = f"{value:,.2f}"
        if isinstance(value, float) and text.endswith(".00"):
            text = text[:-3]
        return f"{text}{suffix}"
    return f"{value}{suffix}"


# --- primitives ----------------------------------------------------------------------------


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    value, last = math.floor(low / step) * step, math.ceil(high / step) * step
    ticks = []
    while value <= last + step / 2:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _n(value: float) -> str:
    return f"{value:.1f}"


def _open(key: str, title: str, desc: str, height: int, width: int = WIDTH) -> list[str]:
    """The root of a dashboard chart, labelled by its <title> and <desc>."""
    return [
        f'<svg class="kc-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="{key}-title {key}-desc">',
        f'<title id="{key}-title">{escape(title)}</title>',
        f'<desc id="{key}-desc">{escape(desc)}</desc>',
    ]


def _open_inline(label: str, width: int, height: int) -> str:
    """The root of a small chart on an admin page: its own size, no stylesheet there and
    no style attribute (the Content-Security-Policy allows none); `label` is what a screen
    reader says."""
    return (
        f'<svg role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">'
    )


def _legend(names: Sequence[str], x: float, y: float, lines: bool) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        colour = COLOURS[i % len(COLOURS)]
        if lines:
            dash = (
                f' stroke-dasharray="{DASHES[i % len(DASHES)]}"' if DASHES[i % len(DASHES)] else ""
            )
            parts.append(
                f'<line x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x + 22)}" y2="{_n(y - 4)}" '
                f'stroke="{colour}" stroke-width="2.5"{dash}/>'
            )
        else:
            parts.append(
                f'<rect x="{_n(x + 6)}" y="{_n(y - 10)}" width="12" height="12" fill="{colour}"/>'
            )
        parts.append(f'<text x="{_n(x + 28)}" y="{_n(y)}">{escape(name)}</text>')
        x += 40 + 7 * len(name)
    return parts


def _y_axis(ticks, y, left, right, label, top, bottom) -> list[str]:
    parts = []
    for tick in ticks:
        parts.append(
            f'<line class="kc-grid" x1="{left}" x2="{right}" y1="{_n(y(tick))}" y2="{_n(y(tick))}"/>'
        )
        parts.append(
            f'<text class="kc-tick" x="{left - 6}" y="{_n(y(tick) + 4)}" text-anchor="end">'
            f"{_tick_label(tick)}</text>"
        )
    middle = (top + bottom) / 2
    parts.append(
        f'<text class="kc-axis" x="14" y="{_n(middle)}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_n(middle)})">{escape(label)}</text>'
    )
    return parts


def _short(label: str, size: int = 16) -> str:
    return label if len(label) <= size else label[: size - 1] + "…"


# --- the dashboard's charts ----------------------------------------------------------------


def svg_lines(
    key: str,
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    y_label: str,
    unit: str = "",
    reference: tuple[float, str] | None = None,
    y_range: tuple[float, float] | None = None,
) -> SafeString:
    """A line per series over the months; a gap where a value is missing (no customers,
    no answers), a marked point with a tooltip for each value."""
    height, left, right, top, bottom = 300, 64, WIDTH - 16, 36, 300 - 52
    values = [v for _, vs in series for v in vs if v is not None]
    if y_range:
        low, high = y_range
    else:
        low = min([0.0, *values])
        high = max([*values, reference[0] if reference else 0.0, 1.0])
    ticks = _ticks(low, high)
    low, high = ticks[0], ticks[-1]
    n = max(len(labels), 1)
    band = (right - left) / n

    def x(i: int) -> float:
        return left + band * (i + 0.5)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - low) / (high - low)

    first_last = f" from {labels[0]} to {labels[-1]}" if labels else ""
    names = ", ".join(name for name, _ in series)
    parts = _open(
        key,
        title,
        f"Line chart of {names} by month{first_last}; the numbers "
        "are in the table below the chart.",
        height,
    )
    parts += _y_axis(ticks, y, left, right, y_label, top, bottom)
    if reference is not None and low <= reference[0] <= high:
        parts.append(
            f'<line class="kc-ref" x1="{left}" x2="{right}" y1="{_n(y(reference[0]))}" '
            f'y2="{_n(y(reference[0]))}"/>'
        )
    every = math.ceil(n / 12)
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text class="kc-tick" x="{_n(x(i))}" y="{bottom + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append(
        f'<text class="kc-axis" x="{_n((left + right) / 2)}" y="{height - 8}" '
        'text-anchor="middle">Month</text>'
    )
    for s, (name, vs) in enumerate(series):
        colour, dash = COLOURS[s % len(COLOURS)], DASHES[s % len(DASHES)]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        run: list[str] = []
        for i, v in enumerate([*vs, None]):
            if v is not None:
                run.append(f"{_n(x(i))},{_n(y(v))}")
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2.5"{dashed} '
                    f'points="{" ".join(run)}"/>'
                )
                run = []
        for i, v in enumerate(vs):
            if v is None:
                continue
            parts.append(
                f'<circle class="kc-mark" cx="{_n(x(i))}" cy="{_n(y(v))}" r="4" fill="{colour}">'
                f"<title>{escape(name)}, {escape(labels[i])}: {escape(figure_text(v, unit))}</title>"
                "</circle>"
            )
    parts += _legend([name for name, _ in series], left, 18, lines=True)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def svg_bars(
    key: str,
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    y_label: str,
    unit: str = "",
    notes: Sequence[str] = (),
) -> SafeString:
    """Grouped vertical bars, one group per label, a note (a ratio, a lift) over each."""
    height, left, right, top, bottom = 320, 64, WIDTH - 16, 44, 320 - 52
    values = [v for _, vs in series for v in vs if v is not None]
    ticks = _ticks(min([0.0, *values]), max([*values, 1.0]))
    low, high = ticks[0], ticks[-1]
    n = max(len(labels), 1)
    band = (right - left) / n
    bar = band * 0.7 / max(len(series), 1)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - low) / (high - low)

    names = ", ".join(name for name, _ in series)
    parts = _open(
        key,
        title,
        f"Bar chart of {names} for {len(labels)} groups; the numbers "
        "are in the table below the chart.",
        height,
    )
    parts += _y_axis(ticks, y, left, right, y_label, top, bottom)
    for i, label in enumerate(labels):
        start = left + band * i + band * 0.15
        for s, (name, vs) in enumerate(series):
            v = vs[i]
            if v is None:
                continue
            y0, y1 = y(max(v, 0.0)), y(min(v, 0.0))
            parts.append(
                f'<rect class="kc-mark" x="{_n(start + bar * s)}" y="{_n(y0)}" '
                f'width="{_n(max(bar - 2, 1))}" height="{_n(max(y1 - y0, 1))}" '
                f'fill="{COLOURS[s % len(COLOURS)]}"><title>{escape(label)}, {escape(name)}: '
                f"{escape(figure_text(v, unit))}</title></rect>"
            )
        centre = left + band * (i + 0.5)
        parts.append(
            f'<text class="kc-tick" x="{_n(centre)}" y="{bottom + 16}" text-anchor="middle">'
            f"<title>{escape(label)}</title>{escape(_short(label, max(int(band / 7), 4)))}</text>"
        )
        if i < len(notes) and notes[i]:
            tallest = max([v for _, vs in series if (v := vs[i]) is not None] or [0.0])
            parts.append(
                f'<text class="kc-note" x="{_n(centre)}" y="{_n(y(max(tallest, 0.0)) - 6)}" '
                f'text-anchor="middle">{escape(notes[i])}</text>'
            )
    parts.append(
        f'<line class="kc-base" x1="{left}" x2="{right}" y1="{_n(y(0))}" y2="{_n(y(0))}"/>'
    )
    parts += _legend([name for name, _ in series], left, 18, lines=False)
    parts.append("</svg>")
    return mark_safe("".join(parts))


def svg_funnel(
    key: str,
    *,
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    shares: Sequence[float | None],
) -> SafeString:
    """Centred horizontal bars, one per stage, widest for the largest stage."""
    row, left, area = 34, 170, 440
    height = row * len(labels) + 16
    top = max(values, default=0) or 1
    parts = _open(
        key,
        title,
        f"Funnel of {len(labels)} lifecycle stages with their contact "
        "counts; the numbers are in the table below the chart.",
        height,
    )
    for i, (label, value, share) in enumerate(zip(labels, values, shares, strict=True)):
        y = 8 + row * i
        width = max(area * value / top, 2)
        x = left + (area - width) / 2
        parts.append(
            f'<text class="kc-tick" x="{left - 10}" y="{y + 20}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        parts.append(
            f'<rect class="kc-mark" x="{_n(x)}" y="{y + 3}" width="{_n(width)}" height="{row - 8}" '
            f'rx="3" fill="{COLOURS[0]}" fill-opacity="{_n(1 - 0.09 * i)}">'
            f"<title>{escape(label)}: {value:,} contacts ({figure_text(share, '%')})</title></rect>"
        )
        parts.append(
            f'<text class="kc-tick" x="{left + area + 10}" y="{y + 20}">{value:,}'
            f"{f' ({figure_text(share)}%)' if share is not None else ''}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _shade(t: float) -> str:
    """From pale to deep blue as t goes 0 → 1 (a single-hue sequential scale)."""
    t = min(max(t, 0.0), 1.0)
    pale, deep = (236, 244, 250), (12, 68, 124)
    rgb = (round(p + (d - p) * t) for p, d in zip(pale, deep, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def svg_heatmap(
    key: str,
    *,
    title: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    cells: Sequence[Sequence[tuple[float, str, str] | None]],
    x_label: str,
    y_label: str,
    legend: tuple[str, str],
    cell_height: int = 24,
) -> SafeString:
    """Cells shaded by value (t in 0–1), each with its figure written in when it fits and a
    tooltip; None leaves a cell out (a cohort's months still to come)."""
    left, top = 92, 48
    cols = max(len(col_labels), 1)
    cell = min(64.0, (WIDTH - left - 16) / cols)
    height = top + cell_height * len(row_labels) + 56
    parts = _open(
        key,
        title,
        f"Heatmap of {len(row_labels)} rows ({y_label}) by {cols} "
        f"columns ({x_label}); darker is higher; the numbers are in the table below "
        "the chart.",
        height,
    )
    parts.append(f'<text class="kc-axis" x="{left}" y="14">{escape(x_label)} →</text>')
    every = math.ceil(cols * 22 / (WIDTH - left - 16)) or 1
    for j, label in enumerate(col_labels):
        if j % every == 0:
            parts.append(
                f'<text class="kc-tick" x="{_n(left + cell * (j + 0.5))}" y="{top - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for i, label in enumerate(row_labels):
        y = top + cell_height * i
        parts.append(
            f'<text class="kc-tick" x="{left - 8}" y="{_n(y + cell_height / 2 + 4)}" '
            f'text-anchor="end">{escape(label)}</text>'
        )
        for j, value in enumerate(cells[i]):
            if value is None:
                continue
            t, text, tip = value
            x = left + cell * j
            parts.append(
                f'<rect class="kc-mark" x="{_n(x)}" y="{y}" width="{_n(cell - 2)}" '
                f'height="{cell_height - 2}" fill="{_shade(t)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if cell >= 8 * len(text) + 6:
                ink = "#ffffff" if t > 0.55 else "#1b1b1b"
                parts.append(
                    f'<text x="{_n(x + (cell - 2) / 2)}" y="{_n(y + cell_height / 2 + 3)}" '
                    f'text-anchor="middle" fill="{ink}" font-size="11" aria-hidden="true">'
                    f"{escape(text)}</text>"
                )
    parts.append(f'<text class="kc-axis" x="10" y="{top - 8}">{escape(y_label)} ↓</text>')
    bar_y = top + cell_height * len(row_labels) + 18
    parts.append(
        f'<defs><linearGradient id="{key}-scale"><stop offset="0" stop-color="{_shade(0)}"/>'
        f'<stop offset="1" stop-color="{_shade(1)}"/></linearGradient></defs>'
        f'<rect x="{left}" y="{bar_y}" width="160" height="10" fill="url(#{key}-scale)"/>'
        f'<text class="kc-tick" x="{left - 8}" y="{bar_y + 9}" text-anchor="end">'
        f"{escape(legend[0])}</text>"
        f'<text class="kc-tick" x="{left + 168}" y="{bar_y + 9}">{escape(legend[1])}</text>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))


# --- small charts on admin pages ------------------------------------------------------------


def svg_hbars(
    bars: Sequence[tuple[str, Decimal | float | int]],
    *,
    title: str,
    text: Callable[[Decimal | float | int], str] = figure_text,
) -> SafeString:
    """Horizontal bars, one per (label, value), the label left of its bar and the value,
    written by `text`, right of it; the longest bar is the largest value."""
    width, label_width, value_width, bar, gap = 640, 130, 110, 22, 8
    top = max((float(value) for _, value in bars), default=0.0) or 1.0
    room = width - label_width - value_width
    parts = []
    for i, (label, value) in enumerate(bars):
        y = gap + i * (bar + gap)
        length = max(float(value) / top * room, 0.0)
        shown = text(value)
        parts.append(
            f'<text x="{label_width - 8}" y="{_n(y + bar * 0.7)}" text-anchor="end" '
            f'font-size="12" fill="currentColor">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{_n(length)}" height="{bar}" '
            f'fill="{ADMIN_BLUE}"><title>{escape(label)}: {escape(shown)}</title></rect>'
            f'<text x="{_n(label_width + length + 6)}" y="{_n(y + bar * 0.7)}" '
            f'font-size="12" fill="currentColor">{escape(shown)}</text>'
        )
    height = gap + len(bars) * (bar + gap)
    return mark_safe(
        f"{_open_inline(title, width, height)}<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )


def svg_sparkline(
    values: Sequence[int],
    *,
    label: str,
    first: str,
    last: str,
    width: int = 640,
    height: int = 160,
) -> SafeString:
    """A line through equally spaced values (two at least), scaled to the largest, which is
    written at the top; `first` and `last` name the two ends under it."""
    pad = 30
    top = max(values, default=0) or 1
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join(
        f"{_n(pad + i * step)},{_n(height - pad - (value / top) * (height - 2 * pad))}"
        for i, value in enumerate(values)
    )
    return mark_safe(
        f"{_open_inline(label, width, height)}"
        f'<polyline fill="none" stroke="{ADMIN_BLUE}" stroke-width="2" points="{points}"/>'
        f'<text x="{pad}" y="{pad - 10}" font-size="12">{top:,}</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="12">{escape(first)}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="12" text-anchor="end">'
        f"{escape(last)}</text></svg>"
    )
