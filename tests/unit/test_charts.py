"""The server-side SVG charts: well-formed, one element per data point, a real log axis."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from api import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def with_class(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in root.iter(SVG + tag) if css_class in (e.get("class") or "").split()]


def geometric(n: int, low: float = 1e-6, high: float = 1.0) -> list[float]:
    return [low * (high / low) ** (i / (n - 1)) for i in range(n)]


def test_lr_curve_has_one_point_per_finite_value_and_skips_the_rest() -> None:
    lrs = geometric(40)
    smoothed = [2.0 - 0.02 * i for i in range(38)] + [math.nan, None]
    root = parse(charts.lr_curve_svg(lrs, smoothed))
    assert len(with_class(root, "circle", "pt")) == 38
    polyline = with_class(root, "polyline", "curve")[0]
    assert len(polyline.get("points", "").split()) == 38


def test_lr_curve_x_axis_is_logarithmic() -> None:
    lrs = geometric(9, 1e-6, 1e2)  # one point per decade
    root = parse(charts.lr_curve_svg(lrs, [1.0 + i for i in range(9)]))
    xs = [float(p.get("cx", "nan")) for p in with_class(root, "circle", "pt")]
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    assert max(gaps) - min(gaps) < 0.05  # equal steps in log10(lr) are equal on screen
    ticks = [
        float(t.get("data-value", "nan"))
        for t in root.iter(SVG + "text")
        if t.get("class") == "tick-x"
    ]
    assert ticks and all(abs(math.log10(t) - round(math.log10(t))) < 1e-9 for t in ticks)


def test_lr_curve_marks_suggestions_and_the_chosen_range() -> None:
    lrs = geometric(50)
    smoothed = [1.0 + (math.log10(lr) + 3) ** 2 for lr in lrs]
    suggestions = {"steepest": 1e-4, "valley": 3e-4, "min_div10": 1e-4, "divergence": None}
    lr_range = {"low": 1e-5, "suggested": 3e-4, "high": 1e-2}
    root = parse(charts.lr_curve_svg(lrs, smoothed, suggestions, lr_range))
    lines = with_class(root, "line", "suggestion")
    marked = {e.get("data-name"): float(e.get("x1", "nan")) for e in lines}
    assert set(marked) == {"steepest", "valley", "min_div10"}
    assert marked["steepest"] < marked["valley"]
    band = with_class(root, "rect", "lr-range")[0]
    x0 = float(band.get("x", "nan"))
    x1 = x0 + float(band.get("width", "nan"))
    assert x0 < marked["steepest"] < marked["valley"] < x1
    assert len(with_class(root, "line", "lr-suggested")) == 1


def test_empty_lr_curve_says_so() -> None:
    root = parse(charts.lr_curve_svg([], []))
    assert not with_class(root, "circle", "pt")
    assert "no LR range test data" in "".join(root.itertext())


def _trial(number: int, value: float | None, state: str = "COMPLETE") -> dict[str, object]:
    return {"number": number, "value": value, "state": state}


def test_trials_chart_points_best_so_far_and_baseline() -> None:
    values = [0.9, 0.5, 0.7, 0.3, 0.4, 0.35]
    trials = [_trial(i, v) for i, v in enumerate(values)]
    trials += [_trial(6, 1.2, "PRUNED"), _trial(7, None, "FAIL"), _trial(8, None, "RUNNING")]
    root = parse(charts.trials_svg(trials, baseline=0.8))
    assert len(with_class(root, "circle", "pt")) == 7
    assert len(with_class(root, "circle", "pruned")) == 1
    best = with_class(root, "polyline", "best")[0]
    ys = [float(p.split(",")[1]) for p in best.get("points", "").split()]
    assert (
        len(ys) == len(values) + 2
    )  # a staircase: one extra vertex per improvement after the first
    assert all(b >= a for a, b in zip(ys, ys[1:], strict=False))  # lower is better: it only falls
    best_point = [c for c in with_class(root, "circle", "pt") if c.get("data-number") == "3"][0]
    assert ys[-1] == pytest.approx(float(best_point.get("cy", "nan")), abs=0.1)
    baseline = with_class(root, "line", "baseline")[0]
    point_08 = [c for c in with_class(root, "circle", "pt") if c.get("data-number") == "0"][0]
    assert float(baseline.get("y1", "nan")) > float(point_08.get("cy", "nan"))  # 0.8 below 0.9


def test_linear_ticks_are_round_and_trial_numbers_integers() -> None:
    root = parse(charts.trials_svg([_trial(i, 0.1 + 0.013 * i) for i in range(13)]))
    xs = [
        float(t.get("data-value", "nan"))
        for t in root.iter(SVG + "text")
        if t.get("class") == "tick-x"
    ]
    assert xs and all(v == int(v) for v in xs)
    ys = [
        float(t.get("data-value", "nan"))
        for t in root.iter(SVG + "text")
        if t.get("class") == "tick-y"
    ]
    assert len(ys) >= 3 and all(round(v * 100, 9) == int(round(v * 100)) for v in ys)


def test_best_so_far_follows_the_direction() -> None:
    assert charts.best_so_far([3, 1, 2, 0]) == [3, 1, 1, 0]


def test_trials_chart_switches_to_a_log_axis_for_wide_ranges() -> None:
    root = parse(charts.trials_svg([_trial(0, 100.0), _trial(1, 1.0), _trial(2, 0.01)]))
    cy = [float(c.get("cy", "nan")) for c in with_class(root, "circle", "pt")]
    assert cy[2] - cy[1] == pytest.approx(cy[1] - cy[0], abs=0.05)


def test_importances_one_bar_each_largest_first() -> None:
    root = parse(charts.importances_svg({"lr": 0.6, "beta1": 0.1, "weight_decay": 0.3}))
    bars = with_class(root, "rect", "bar")
    assert [b.get("data-name") for b in bars] == ["lr", "weight_decay", "beta1"]
    widths = [float(b.get("width", "nan")) for b in bars]
    assert widths == sorted(widths, reverse=True)


def test_labels_are_escaped() -> None:
    root = parse(charts.importances_svg({"<script>": 1.0}))
    assert with_class(root, "rect", "bar")[0].get("data-name") == "<script>"


def test_divergence_does_not_flatten_the_valley() -> None:
    lrs = geometric(30, 1e-6, 10.0)
    smoothed = [2.3 - 0.1 * math.exp(-((math.log10(lr) + 3) ** 2)) for lr in lrs]
    smoothed[-3:] = [5.0, 12.0, 28.0]  # the blow-up at the end of the sweep
    root = parse(charts.lr_curve_svg(lrs, smoothed))
    points = with_class(root, "circle", "pt")
    assert len(points) == 30  # every point is still drawn
    clipped = with_class(root, "circle", "clipped")
    assert len(clipped) == 3
    assert len({c.get("cy") for c in clipped}) == 1  # on the top edge
    ticks = [
        float(t.get("data-value", "nan"))
        for t in root.iter(SVG + "text")
        if t.get("class") == "tick-y"
    ]
    assert max(ticks) < 5.0  # the axis is scaled to the valley, not to the blow-up


def test_importances_withheld_say_why_and_draw_no_bar() -> None:
    reason = "hidden: importances need 5 completed searched trials, 3 so far; fewer are noise"
    root = parse(charts.importances_svg({"lr": 0.9}, hidden_reason=reason))
    assert with_class(root, "rect", "bar") == []
    assert [t.text for t in with_class(root, "text", "empty")] == [reason]


def test_trials_chart_counts_finished_trials_without_an_objective() -> None:
    trials = [{"number": i, "state": "pruned", "value": None} for i in range(3)]
    trials.append({"number": 3, "state": "running", "value": None})
    root = parse(charts.trials_svg(trials))
    [empty] = with_class(root, "text", "empty")
    assert empty.text == "3 trials finished, none with a finite objective (pruned or diverged)"
    nothing = parse(charts.trials_svg([{"number": 0, "state": "running", "value": None}]))
    assert [t.text for t in with_class(nothing, "text", "empty")] == ["no finished trials yet"]
