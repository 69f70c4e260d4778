"""Charts drawn server-side as SVG strings: the LR range curve, the trials chart, importances.

Pure functions of the data (no torch, no matplotlib, nothing fetched at run time), so the
job page renders on a machine with no GPU and no internet, and a test can count the points:
every data point is one ``<circle class="pt ...">`` and every importance one ``<rect class="bar">``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, TypeGuard

WIDTH = 640
HEIGHT = 300
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 28
MARGIN_BOTTOM = 40

SUGGESTION_COLOURS = {
    "steepest": "#d62728",
    "valley": "#2ca02c",
    "min_div10": "#9467bd",
    "divergence": "#7f7f7f",
}


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


def _finite(value: object) -> TypeGuard[float]:
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


def _padded(low: float, high: float, log: bool) -> tuple[float, float]:
    """Widen a data range a little so no point sits on the frame."""
    if log:
        lo, hi = math.log10(low), math.log10(high)
        pad = (hi - lo) * 0.05 or 0.5
        return 10 ** (lo - pad), 10 ** (hi + pad)
    pad = (high - low) * 0.05 or (abs(high) * 0.1 or 1.0)
    return low - pad, high + pad


def _svg_open(css_class: str, label: str) -> str:
    return (
        f'<svg class="chart {css_class}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(label)}">'
    )


def _empty(css_class: str, message: str) -> str:
    return (
        _svg_open(css_class, message)
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


def _frame(x: Axis, y: Axis, x_label: str, y_label: str) -> list[str]:
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


def _polyline(
    points: Iterable[tuple[float, float]], css_class: str, colour: str, width: float = 1.5
) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    return (
        f'<polyline class="{css_class}" points="{coords}" fill="none" '
        f'stroke="{colour}" stroke-width="{width}"/>'
    )


def _vline(
    px: float, css_class: str, colour: str, label: str, dash: str = "4 3", extra: str = ""
) -> str:
    return (
        f'<line class="{css_class}"{extra} x1="{px:.1f}" y1="{MARGIN_TOP}" x2="{px:.1f}" '
        f'y2="{HEIGHT - MARGIN_BOTTOM}" stroke="{colour}" stroke-dasharray="{dash}">'
        f"<title>{escape(label)}</title></line>"
    )


def _lr_markers(x: Axis, suggestions: Mapping[str, Any], lr_range: Mapping[str, Any]) -> list[str]:
    """The chosen range as a shaded band, its suggested lr and each sweep suggestion as lines."""
    parts: list[str] = []
    low, high = lr_range.get("low"), lr_range.get("high")
    if _finite(low) and _finite(high) and 0 < low < high:
        x0, x1 = x(max(low, x.low)), x(min(high, x.high))
        parts.append(
            f'<rect class="lr-range" x="{x0:.1f}" y="{MARGIN_TOP}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{HEIGHT - MARGIN_TOP - MARGIN_BOTTOM}" fill="#1f77b4" fill-opacity="0.12">'
            f"<title>searched lr range {fmt(low)} .. {fmt(high)}</title></rect>"
        )
    suggested = lr_range.get("suggested")
    if _finite(suggested) and x.low <= suggested <= x.high:
        label = f"suggested lr {fmt(suggested)}"
        parts.append(_vline(x(suggested), "lr-suggested", "#1f77b4", label, dash="none"))
    for name, value in suggestions.items():
        if _finite(value) and value > 0 and x.low <= value <= x.high:
            colour = SUGGESTION_COLOURS.get(name, "#8c564b")
            label = f"{name}: lr {fmt(value)}"
            extra = f' data-name="{escape(name)}" data-lr="{value!r}"'
            parts.append(_vline(x(value), "suggestion", colour, label, extra=extra))
    return parts


def _legend(entries: Sequence[tuple[str, str]]) -> str:
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


def loss_axis_top(smoothed: Sequence[float]) -> float:
    """The top of the loss axis: the loss at the start, or 1.5x the minimum when the start is
    near the minimum. The blow-up at the end of a sweep would otherwise flatten the valley
    that matters; points above the top are drawn on the edge, hollow (``class="pt clipped"``).
    """
    low, high = min(smoothed), max(smoothed)
    wanted = max(smoothed[0], low + 0.5 * abs(low)) if low > 0 else high
    return min(high, wanted) if wanted > low else high


def _loss_point(x: Axis, y: Axis, lr: float, loss: float) -> str:
    """One point of the sweep; hollow and on the top edge when the loss is off the axis."""
    clipped = loss > y.high
    style = 'fill="#fff" stroke="#333" stroke-width="0.8"' if clipped else 'fill="#333"'
    return (
        f'<circle class="pt{" clipped" if clipped else ""}" cx="{x(lr):.2f}" '
        f'cy="{y(min(loss, y.high)):.2f}" r="2" {style} data-lr="{lr!r}">'
        f"<title>lr {fmt(lr)}: loss {loss:.4g}</title></circle>"
    )


def lr_curve_svg(
    lrs: Sequence[float | None],
    smoothed: Sequence[float | None],
    suggestions: Mapping[str, Any] | None = None,
    lr_range: Mapping[str, Any] | None = None,
) -> str:
    """The LR range test: smoothed loss against lr on a log10 axis, one point per finite value.

    Suggestions are dashed vertical lines (``class="suggestion" data-name=...``); the range
    that the search explores is a shaded band with its suggested lr as a solid line.
    """
    pairs = [
        (lr, loss)
        for lr, loss in zip(lrs, smoothed, strict=False)
        if _finite(lr) and lr > 0 and _finite(loss)
    ]
    if not pairs:
        return _empty("lr-curve", "no LR range test data yet")
    x = Axis(
        *_padded(min(p[0] for p in pairs), max(p[0] for p in pairs), log=True),
        MARGIN_LEFT,
        WIDTH - MARGIN_RIGHT,
        log=True,
    )
    top = loss_axis_top([v for _, v in pairs])
    y = Axis(*_padded(min(v for _, v in pairs), top, log=False), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP)
    parts = [_svg_open("lr-curve", "LR range test: smoothed loss against learning rate")]
    parts += _frame(x, y, "learning rate (log scale)", "smoothed loss")
    parts += _lr_markers(x, suggestions or {}, lr_range or {})
    parts.append(_polyline(((x(lr), y(min(v, y.high))) for lr, v in pairs), "curve", "#333"))
    parts += [_loss_point(x, y, lr, v) for lr, v in pairs]
    marked = [n for n, v in (suggestions or {}).items() if _finite(v)]
    entries = [("suggested range", "#1f77b4")]
    parts.append(_legend(entries + [(n, SUGGESTION_COLOURS.get(n, "#8c564b")) for n in marked]))
    parts.append("</svg>")
    return "".join(parts)


def best_so_far(values: Sequence[float], maximize: bool = False) -> list[float]:
    """The running best of ``values`` (minimum unless ``maximize``)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max(out[-1], v) if maximize else min(out[-1], v)))
    return out


def _steps(
    x: Axis, y: Axis, points: Sequence[tuple[int, float]], best: Sequence[float]
) -> list[tuple[float, float]]:
    """The best-so-far as a staircase: flat until a trial improves on it, then a drop."""
    out: list[tuple[float, float]] = []
    for i, ((number, _), b) in enumerate(zip(points, best, strict=True)):
        if i and b != best[i - 1]:
            out.append((x(number), y(best[i - 1])))
        out.append((x(number), y(b)))
    return out


FINISHED = frozenset({"complete", "pruned"})  # as a job's progress counts them


def _trial_points(trials: Sequence[Mapping[str, Any]]) -> list[tuple[int, float, str]]:
    """(number, value, state) of every trial that reported a finite objective."""
    points = []
    for t in trials:
        value, number = t.get("value"), t.get("number")
        if _finite(value) and isinstance(number, int):
            points.append((number, float(value), str(t.get("state", "COMPLETE")).lower()))
    return sorted(points)


def trials_svg(
    trials: Sequence[Mapping[str, Any]],
    baseline: float | None = None,
    maximize: bool = False,
    objective_name: str = "objective",
) -> str:
    """Objective of every trial over the trial number, the best-so-far line of the completed
    ones, and the untuned baseline as a horizontal reference (``class="baseline"``).

    The y axis turns logarithmic when every value is positive and they span > 50×, so a few
    poor trials do not flatten the rest.
    """
    points = _trial_points(trials)
    if not points:
        finished = sum(1 for t in trials if str(t.get("state", "")).lower() in FINISHED)
        if finished:
            return _empty(
                "trials-chart",
                f"{finished} trial{'' if finished == 1 else 's'} finished, "
                "none with a finite objective (pruned or diverged)",
            )
        return _empty("trials-chart", "no finished trials yet")
    values = [v for _, v, _ in points] + ([baseline] if _finite(baseline) else [])
    log_y = min(values) > 0 and max(values) / min(values) > 50
    numbers = [n for n, _, _ in points]
    x_range = _padded(min(numbers), max(numbers), log=False)
    x = Axis(*x_range, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, integer=True)
    y = Axis(
        *_padded(min(values), max(values), log=log_y), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP, log=log_y
    )
    parts = [_svg_open("trials-chart", f"{objective_name} of every trial and the best so far")]
    parts += _frame(x, y, "trial number", objective_name + (" (log scale)" if log_y else ""))
    if baseline is not None and _finite(baseline):
        py = y(baseline)
        parts.append(
            f'<line class="baseline" x1="{MARGIN_LEFT}" y1="{py:.1f}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y2="{py:.1f}" stroke="#ff7f0e" stroke-dasharray="6 3" data-value="{baseline!r}">'
            f"<title>untuned baseline (Adam, lr=1e-3): {baseline:.4g}</title></line>"
        )
    complete = [(n, v) for n, v, s in points if s == "complete"]
    if complete:
        best = best_so_far([v for _, v in complete], maximize)
        parts.append(_polyline(_steps(x, y, complete, best), "best", "#1f77b4", width=2))
    for number, value, state in points:
        colour = "#1f77b4" if state == "complete" else "#bbb"
        parts.append(
            f'<circle class="pt {escape(state)}" cx="{x(number):.2f}" cy="{y(value):.2f}" r="3.5" '
            f'fill="{colour}" data-number="{number}"><title>trial {number} ({escape(state)}): '
            f"{value:.4g}</title></circle>"
        )
    entries = [("trial", "#1f77b4"), ("pruned", "#bbb"), ("best so far", "#1f77b4")]
    parts.append(_legend(entries + [("baseline", "#ff7f0e")]))
    parts.append("</svg>")
    return "".join(parts)


def importances_svg(
    importances: Mapping[str, float] | None, hidden_reason: str | None = None
) -> str:
    """Parameter importances as horizontal bars, largest first, one ``rect.bar`` each; none,
    with ``hidden_reason`` said instead, where they rest on too few trials."""
    items = sorted(
        ((k, float(v)) for k, v in (importances or {}).items() if _finite(v) and v >= 0),
        key=lambda kv: -kv[1],
    )
    if hidden_reason:
        return _empty("importances-chart", hidden_reason)
    if not items:
        return _empty("importances-chart", "importances need a few finished trials")
    row, label_w = 24, 150
    height = 24 + row * len(items)
    top = max(v for _, v in items) or 1.0
    parts = [
        f'<svg class="chart importances-chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-label="parameter importances">'
    ]
    for i, (name, value) in enumerate(items):
        py = 12 + i * row
        width = (WIDTH - label_w - 70) * value / top
        parts.append(
            f'<text class="bar-label" x="{label_w - 8}" y="{py + 15}" text-anchor="end" '
            f'font-size="12">{escape(name)}</text>'
            f'<rect class="bar" x="{label_w}" y="{py + 3}" width="{max(width, 1):.1f}" '
            f'height="{row - 6}" '
            f'fill="#1f77b4" data-name="{escape(name)}" data-value="{value!r}">'
            f"<title>{escape(name)}: {value:.3f}</title></rect>"
            f'<text x="{label_w + width + 6:.1f}" y="{py + 15}" font-size="11">{value:.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
