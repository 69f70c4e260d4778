"""SVG primitives for the server-side charts: axes, ticks, frame, lines, legend.

Every function returns SVG markup as a string; :mod:`api.charts` composes them into charts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TypeGuard

WIDTH = 640
HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 40

@dataclass(frozen=True)
class Axis:
    """A linear or log10 mapping from data values onto pixel positions."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False
    integer: bool = False

    def _t(self, value: float) -> float:
        return math.log10(value) if self.log else value

    def __call__(self, value: float) -> float:
        lo, hi = self._t(self.low), self._t(self.high)
        span = hi - lo or 1.0
        return self.start + (self._t(value) - lo) / span * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        """Round values inside the axis: decades (or 1-2-5 steps) on a log axis."""
        if self.log:
            return _log_ticks(self.low, self.high)
        if self.high == self.low:
            return [self.low]
        step = nice_step(self.high - self.low, count)
        if self.integer:
            step = max(1.0, round(step))
        first = math.ceil(self.low / step) * step
        n = int((self.high - first) / step + 1e-9) + 1
        return [round(first + i * step, 12) for i in range(n)]


def nice_step(span: float, count: int) -> float:
    """The 1, 2 or 5 times a power of ten that cuts ``span`` into about ``count`` parts."""
    raw = span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return min((m * magnitude for m in (1, 2, 5, 10)), key=lambda step: abs(step - raw))


def _log_ticks(low: float, high: float) -> list[float]:
    first, last = math.ceil(math.log10(low)), math.floor(math.log10(high))
    if last - first >= 1:
        step = max(1, math.ceil((last - first + 1) / 8))
        return [10.0**e for e in range(first, last + 1, step)]
    exponents = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    candidates = (m * 10.0**e for e in exponents for m in (1, 2, 5))
    return [round(v, 15) for v in candidates if low <= v <= high]


def finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: float) -> str:
    """A short label: ``1e-5`` for powers of ten, 3 significant digits otherwise."""
    if value == 0:
        return "0"
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    exponent = math.log10(abs(value))
    if abs(exponent - round(exponent)) < 1e-9:
        return f"{'-' if value < 0 else ''}1e{round(exponent)}"
    return f"{value:.2g}"


def padded(low: float, high: float, log: bool) -> tuple[float, float]:
    """Widen a data range a little so no point sits on the frame."""
    if log:
        lo, hi = math.log10(low), math.log10(high)
        pad = (hi - lo) * 0.05 or 0.5
        return 10 ** (lo - pad), 10 ** (hi + pad)
    pad = (high - low) * 0.05 or (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def svg_open(css_class: str, label: str) -> str:
    return (
        f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}">'
    )


def empty_chart(css_class: str, message: str) -> str:
    return (
        svg_open(css_class, message)
        + f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
        f'fill="#666">{escape(message)}</text></svg>'
    )


def _tick(
    value: float,
    css_class: str,
    grid: tuple[object, object, object, object],
    label_at: tuple[object, object],
    anchor: str,
) -> str:
    """One tick: its grid line from (x1, y1) to (x2, y2) and its label, at coordinates
    already written as they appear in the SVG."""
    x1, y1, x2, y2 = grid
    return (
        f'<line class="grid" x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#eee"/>'
        f'<text class="{css_class}" x="{label_at[0]}" y="{label_at[1]}" text-anchor="{anchor}" '
        f'font-size="11" data-value="{value!r}">{escape(fmt(value))}</text>'
    )


def frame(x: Axis, y: Axis, x_label: str, y_label: str) -> list[str]:
    """Plot area border, ticks with labels and both axis titles."""
    top, bottom = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    parts = [
        f'<rect class="frame" x="{left}" y="{top}" width="{right - left}" '
        f'height="{bottom - top}" fill="none" stroke="#ccc"/>'
    ]
    for value in x.ticks():
        px = f"{x(value):.1f}"
        parts.append(_tick(value, "tick-x", (px, top, px, bottom), (px, bottom + 14), "middle"))
    for value in y.ticks():
        py = y(value)
        parts.append(_tick(value, "tick-y", (left, f"{py:.1f}", right, f"{py:.1f}"),
                           (left - 6, f"{py + 4:.1f}"), "end"))
    parts.append(
        f'<text class="axis-label" x="{(left + right) / 2}" y="{HEIGHT - 6}" '
        f'text-anchor="middle" font-size="12">{escape(x_label)}</text>'
        f'<text class="axis-label" x="14" y="{(top + bottom) / 2}" text-anchor="middle" '
        f'font-size="12" transform="rotate(-90 14 {(top + bottom) / 2})">{escape(y_label)}</text>'
    )
    return parts


def polyline(
    points: Iterable[tuple[float, float]], css_class: str, colour: str, width: float = 1.5
) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return (
        f'<polyline class="{css_class}" points="{coords}" fill="none" '
        f'stroke="{colour}" stroke-width="{width}"/>'
    )


def vline(
    px: float, css_class: str, colour: str, label: str, dash: str = "4 3", extra: str = ""
) -> str:
    return (
        f'<line class="{css_class}"{extra} x1="{px:.1f}" y1="{MARGIN_TOP}" x2="{px:.1f}" '
        f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="{colour}" stroke-dasharray="{dash}">'
        f"<title>{escape(label)}</title></line>"
    )


def legend(entries: Sequence[tuple[str, str]]) -> str:
    """A one-line legend at the top right of the plot area."""
    parts, px = [], WIDTH - MARGIN_RIGHT - 8
    for label, colour in reversed(entries):
        px -= 7 * len(label) + 20
        parts.append(
            f'<g class="legend"><rect x="{px}" y="{MARGIN_TOP - 20}" width="10" height="10" '
            f'fill="{colour}"/><text x="{px + 14}" y="{MARGIN_TOP - 11}" font-size="11">'
            f"{escape(label)}</text></g>"
        )
    return "".join(parts)
