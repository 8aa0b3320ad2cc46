"""Heatmaps of an expected matrix next to the student's, as inline SVG.

Drawn in plain Python, one ``<rect>`` per cell: a class whose wrong answers
are all different pays a fraction of a millisecond a picture, where a
matplotlib PNG took 0.1-0.5 s (``benchmarks/feedback_pictures.py`` measures
both in one run); nothing here imports matplotlib. Both panels share one
colour scale (viridis, with its colour bar), so a difference in colour is a
difference in value. Cells that are -inf (masked scores), +inf or NaN get a
colour of their own, a label and an entry in the legend, since those are
exactly the cells a masking mistake is about. Small matrices carry their
numbers in the cells; in larger ones (up to 32 x 32) a cell says its value
when hovered.

Every text the picture holds (the title, the numbers) is escaped here: the
result is markup, inserted into ``feedback.html`` as it is.
"""

from __future__ import annotations

import math
from html import escape

ANNOTATE_MAX_CELLS = 81  # beyond 9 x 9 the numbers no longer fit in the cells
TICKS_MAX = 16  # row and column numbers on axes up to this long
HOVER_MAX_CELLS = 1024  # a hover title per cell up to 32 x 32, to keep the page small
PANEL_PX = 320  # the largest side of a panel whose numbers are not written in

# matplotlib's viridis at 0, 1/16, ..., 1; colours in between are interpolated.
VIRIDIS = ("#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
           "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725")
_RGB = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in VIRIDIS]
# The special cells: (legend text, fill, text colour)
SPECIAL = {"-inf": ("-inf (masked)", "#d9d9d9", "#000"), "inf": ("+inf", "#bdbdbd", "#000"),
           "NaN": ("NaN (not a number)", "#f4b6b6", "#8b0000")}
BAR_STEPS = 64  # the colour bar, drawn as this many bands


def _label(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return f"{x:.2f}"


def _interpolate(fraction: float) -> str:
    f = min(max(fraction, 0.0), 1.0) * (len(_RGB) - 1)
    i = min(int(f), len(_RGB) - 2)
    a, b = _RGB[i], _RGB[i + 1]
    return "#%02x%02x%02x" % tuple(round(x + (y - x) * (f - i)) for x, y in zip(a, b))


SHADES = tuple(_interpolate(k / 255) for k in range(256))  # 256 steps, as matplotlib's colour maps


def colour(fraction: float) -> str:
    """viridis at ``fraction`` in [0, 1]."""
    return SHADES[round(min(max(fraction, 0.0), 1.0) * 255)]


# The colour bar's bands, one unit high each (scaled to the panels' height where drawn).
_BAR = "".join(f'<rect x="0" y="{k}" width="14" height="1.05" fill="{colour(1 - (k + 0.5) / BAR_STEPS)}"/>'
               for k in range(BAR_STEPS))


def _matrix(t) -> list[list[float]]:
    return t.detach().double().cpu().tolist()


class _Canvas:
    """SVG elements as text, in drawing order. Texts are escaped here."""

    def __init__(self):
        self.parts: list[str] = []

    def text(self, x: float, y: float, s: str, size: int = 10, anchor: str = "middle", fill: str = "#222",
             extra: str = "") -> None:
        self.parts.append(f'<text x="{x:g}" y="{y:g}" font-size="{size}" text-anchor="{anchor}" '
                          f'fill="{fill}"{extra}>{escape(s)}</text>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> None:
        self.parts.append(f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" fill="{fill}"{extra}/>')


def _cells(c: _Canvas, name: str, m: list[list[float]], x0: int, y0: int, cell: int, lo: float, hi: float,
           annotate: bool, hover: bool) -> None:
    """One panel's cells: the hot loop of a picture, plain string building on integer coordinates.
    A cell's number is written in it (``annotate``) or, for larger matrices, shown when hovered."""
    scale, half, parts = 1.0 / (hi - lo), cell // 2, c.parts
    for i, row in enumerate(m):
        y = y0 + i * cell
        for j, v in enumerate(row):
            x = x0 + j * cell
            if math.isfinite(v):
                label, f = f"{v:.2f}", (v - lo) * scale
                fill, ink = SHADES[round(min(max(f, 0.0), 1.0) * 255)], "#fff" if f < 0.6 else "#000"
            else:
                label = _label(v)
                _, fill, ink = SPECIAL[label]
            rect = f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}"'
            if annotate:
                parts.append(f'{rect}/><text x="{x + half}" y="{y + half + 3}" font-size="9" text-anchor="middle" '
                             f'fill="{ink}">{label}</text>')
            elif hover:
                parts.append(f"{rect}><title>{name}, row {i}, column {j}: {label}</title></rect>")
            else:
                parts.append(rect + "/>")


def svg(expected, actual, title: str) -> str:
    """The expected matrix (2-D tensor) next to the student's (2-D, same shape, or None), as one ``<svg>``."""
    panels = [("expected", _matrix(expected))] + ([("yours", _matrix(actual))] if actual is not None else [])
    values = [v for _, m in panels for row in m for v in row]
    finite = [v for v in values if math.isfinite(v)] + [0.0]
    present = {_label(v) for v in values if not math.isfinite(v)}
    specials = [s for s in SPECIAL if s in present]
    lo, hi = min(finite), max(finite)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    rows, cols = len(panels[0][1]), len(panels[0][1][0]) if panels[0][1] else 0
    annotate = rows * cols <= ANNOTATE_MAX_CELLS
    cell = 36 if annotate else max(2, min(24, PANEL_PX // max(rows, cols, 1)))  # whole pixels: integer coordinates
    hover = rows * cols <= HOVER_MAX_CELLS  # when the numbers are not written in
    ticks_x, ticks_y = cols <= TICKS_MAX, rows <= TICKS_MAX

    left, top, bottom = 48, 44, 40  # room for the row numbers and axis name, the titles, the column numbers
    gap = left + 12
    width_panel, height_panel = cols * cell, rows * cell
    bar_x = left + len(panels) * width_panel + (len(panels) - 1) * gap + 24
    width = max(bar_x + 70 + (120 if specials else 0), 7 * len(title) + 20)
    height = top + height_panel + bottom
    c = _Canvas()
    c.text(width / 2, 14, title, size=12, extra=' font-weight="bold"')

    for p, (name, m) in enumerate(panels):
        x0, y0 = left + p * (width_panel + gap), top
        c.text(x0 + width_panel / 2, y0 - 8, name, size=11)
        _cells(c, name, m, x0, y0, cell, lo, hi, annotate, hover)
        if ticks_y:  # row and column numbers
            c.parts += [f'<text x="{x0 - 4}" y="{y0 + i * cell + cell // 2 + 3}" font-size="9" text-anchor="end">{i}</text>'
                        for i in range(rows)]
        if ticks_x:
            c.parts += [f'<text x="{x0 + j * cell + cell // 2}" y="{y0 + height_panel + 12}" font-size="9" '
                        f'text-anchor="middle">{j}</text>' for j in range(cols)]
        c.text(x0 + width_panel / 2, y0 + height_panel + 28, "key (column)")
        ly = y0 + height_panel / 2
        c.text(x0 - 30, ly, "query (row)", extra=f' transform="rotate(-90 {x0 - 30:g} {ly:g})"')

    # The colour bar of the shared scale: high values at the top.
    bar = max(height_panel, 60)
    c.parts.append(f'<g transform="translate({bar_x} {top}) scale(1 {bar / BAR_STEPS:g})">{_BAR}</g>')
    for value, y in ((hi, top), ((lo + hi) / 2, top + bar / 2), (lo, top + bar)):
        c.rect(bar_x + 14, y - 0.5, 4, 1, "#222")
        c.text(bar_x + 21, y + 3, f"{value:.3g}", size=9, anchor="start")
    for k, s in enumerate(specials):  # the legend of the special cells
        label, fill, _ = SPECIAL[s]
        y = top + k * 18
        c.rect(bar_x + 60, y, 12, 12, fill, extra=' stroke="#999"')
        c.text(bar_x + 77, y + 10, label, size=10, anchor="start")

    height = max(height, top + bar + 16, top + len(specials) * 18 + 16)
    label = f"{title}: expected values next to yours" if actual is not None else f"{title}: expected values"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}" '
            f'font-family="system-ui, sans-serif" shape-rendering="crispEdges">'
            f"<title>{escape(label)}</title>{''.join(c.parts)}</svg>")
