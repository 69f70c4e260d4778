"""Charts drawn server-side as SVG strings: the LR range curve, the trials chart, importances.

Pure functions of the data (no torch, no matplotlib, nothing fetched at run time), so the
job page renders on a machine with no GPU and no internet, and a test can count the points:
every data point is one ``<circle class="pt ...">`` and every importance one ``<rect class="bar">``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from api.svg import (
    HEIGHT,
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    WIDTH,
    Axis,
    empty_chart,
    finite,
    fmt,
    frame,
    legend,
    padded,
    polyline,
    svg_open,
    vline,
)

SUGGESTION_COLOURS = {
    "steepest": "#d62728",
    "valley": "#2ca02c",
    "min_div10": "#9467bd",
    "divergence": "#7f7f7f",
}


def _lr_markers(x: Axis, suggestions: Mapping[str, Any], lr_range: Mapping[str, Any]) -> list[str]:
    """The chosen range as a shaded band, its suggested lr and each sweep suggestion as lines."""
    parts: list[str] = []
    low, high = lr_range.get("low"), lr_range.get("high")
    if finite(low) and finite(high) and 0 < low < high:
        x0, x1 = x(max(low, x.low)), x(min(high, x.high))
        parts.append(
            f'<rect class="lr-range" x="{x0:.1f}" y="{MARGIN_TOP}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{HEIGHT - MARGIN_TOP - MARGIN_BOTTOM}" fill="#1f77b4" fill-opacity="0.12">'
            f"<title>searched lr range {fmt(low)} .. {fmt(high)}</title></rect>"
        )
    suggested = lr_range.get("suggested")
    if finite(suggested) and x.low <= suggested <= x.high:
        label = f"suggested lr {fmt(suggested)}"
        parts.append(vline(x(suggested), "lr-suggested", "#1f77b4", label, dash="none"))
    for name, value in suggestions.items():
        if finite(value) and value > 0 and x.low <= value <= x.high:
            colour = SUGGESTION_COLOURS.get(name, "#8c564b")
            label = f"{name}: lr {fmt(value)}"
            extra = f' data-name="{escape(name)}" data-lr="{value!r}"'
            parts.append(vline(x(value), "suggestion", colour, label, extra=extra))
    return parts


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
        if finite(lr) and lr > 0 and finite(loss)
    ]
    if not pairs:
        return empty_chart("lr-curve", "no LR range test data yet")
    x = Axis(
        *padded(min(p[0] for p in pairs), max(p[0] for p in pairs), log=True),
        MARGIN_LEFT,
        WIDTH - MARGIN_RIGHT,
        log=True,
    )
    top = loss_axis_top([v for _, v in pairs])
    y = Axis(*padded(min(v for _, v in pairs), top, log=False), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP)
    parts = [svg_open("lr-curve", "LR range test: smoothed loss against learning rate")]
    parts += frame(x, y, "learning rate (log scale)", "smoothed loss")
    parts += _lr_markers(x, suggestions or {}, lr_range or {})
    parts.append(polyline(((x(lr), y(min(v, y.high))) for lr, v in pairs), "curve", "#333"))
    parts += [_loss_point(x, y, lr, v) for lr, v in pairs]
    marked = [n for n, v in (suggestions or {}).items() if finite(v)]
    entries = [("suggested range", "#1f77b4")]
    parts.append(legend(entries + [(n, SUGGESTION_COLOURS.get(n, "#8c564b")) for n in marked]))
    parts.append("</svg>")
    return "".join(parts)


def best_so_far(values: Sequence[float]) -> list[float]:
    """The running minimum of ``values`` (every study minimises)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else min(out[-1], v))
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
        if finite(value) and isinstance(number, int):
            points.append((number, float(value), str(t.get("state", "COMPLETE")).lower()))
    return sorted(points)


def trials_svg(
    trials: Sequence[Mapping[str, Any]],
    baseline: float | None = None,
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
            return empty_chart(
                "trials-chart",
                f"{finished} trial{'' if finished == 1 else 's'} finished, "
                "none with a finite objective (pruned or diverged)",
            )
        return empty_chart("trials-chart", "no finished trials yet")
    values = [v for _, v, _ in points] + ([baseline] if finite(baseline) else [])
    log_y = min(values) > 0 and max(values) / min(values) > 50
    numbers = [n for n, _, _ in points]
    x_range = padded(min(numbers), max(numbers), log=False)
    x = Axis(*x_range, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, integer=True)
    y = Axis(
        *padded(min(values), max(values), log=log_y), HEIGHT - MARGIN_BOTTOM, MARGIN_TOP, log=log_y
    )
    parts = [svg_open("trials-chart", f"{objective_name} of every trial and the best so far")]
    parts += frame(x, y, "trial number", objective_name + (" (log scale)" if log_y else ""))
    if baseline is not None and finite(baseline):
        py = y(baseline)
        parts.append(
            f'<line class="baseline" x1="{MARGIN_LEFT}" y1="{py:.1f}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y2="{py:.1f}" stroke="#ff7f0e" stroke-dasharray="6 3" data-value="{baseline!r}">'
            f"<title>untuned baseline (Adam, lr=1e-3): {baseline:.4g}</title></line>"
        )
    complete = [(n, v) for n, v, s in points if s == "complete"]
    if complete:
        best = best_so_far([v for _, v in complete])
        parts.append(polyline(_steps(x, y, complete, best), "best", "#1f77b4", width=2))
    for number, value, state in points:
        colour = "#1f77b4" if state == "complete" else "#bbb"
        parts.append(
            f'<circle class="pt {escape(state)}" cx="{x(number):.2f}" cy="{y(value):.2f}" r="3.5" '
            f'fill="{colour}" data-number="{number}"><title>trial {number} ({escape(state)}): '
            f"{value:.4g}</title></circle>"
        )
    entries = [("trial", "#1f77b4"), ("pruned", "#bbb"), ("best so far", "#1f77b4")]
    parts.append(legend(entries + [("baseline", "#ff7f0e")]))
    parts.append("</svg>")
    return "".join(parts)


def importances_svg(
    importances: Mapping[str, float] | None, hidden_reason: str | None = None
) -> str:
    """Parameter importances as horizontal bars, largest first, one ``rect.bar`` each; none,
    with ``hidden_reason`` said instead, where they rest on too few trials."""
    items = sorted(
        ((k, float(v)) for k, v in (importances or {}).items() if finite(v) and v >= 0),
        key=lambda kv: -kv[1],
    )
    if hidden_reason:
        return empty_chart("importances-chart", hidden_reason)
    if not items:
        return empty_chart("importances-chart", "importances need a few finished trials")
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
