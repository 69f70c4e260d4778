"""LR range test: suggestions on hand-built curves, a real sweep, and bit-exact restoration."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from tuner.lr_range import (
    SweepResult,
    find_divergence,
    ramp,
    run_lr_range_test,
    search_range,
    suggest_min_div10,
    suggest_steepest,
    suggest_valley,
)
from tuner.spec import SweepSpec
from tuner.workloads import get

LOGS = np.linspace(-6.0, 0.0, 61)  # log10(lr), step 0.1
LRS = [float(10**x) for x in LOGS]
MIN_INDEX = 45  # log10 lr = -1.5


def _curve() -> list[float]:
    """Falls fastest at log10 lr = -3 (tanh's centre), lowest at -1.5, then blows up."""
    out = []
    for i, x in enumerate(LOGS):
        if i <= MIN_INDEX:
            out.append(2.0 - math.tanh(2.0 * (x + 3.0)) - 0.001 * i)  # strictly decreasing
        else:
            out.append(out[MIN_INDEX] * (1.0 + (i - MIN_INDEX) ** 2))
    return out


def test_steepest_is_the_fastest_fall_against_log_lr() -> None:
    assert suggest_steepest(LRS, _curve()) == pytest.approx(1e-3)


def test_valley_is_half_way_along_the_longest_descent() -> None:
    # the descent runs over indices 0..45: sections = 15, index 15 + 7 = 22 (log10 lr = -3.8)
    assert suggest_valley(LRS, _curve()) == pytest.approx(10**-3.8)


def test_valley_skips_a_short_early_dip() -> None:
    curve = _curve()
    curve[2] = 0.5  # an early, short descent must not win over the long one
    curve[3] = 5.0
    assert suggest_valley(LRS, curve) == pytest.approx(10**-3.8, rel=0.3)


def test_min_div10_and_divergence() -> None:
    curve = _curve()
    assert suggest_min_div10(LRS, curve) == pytest.approx(10**-1.5 / 10)
    # 4x the minimum: 1 + (i - 45)^2 > 4 first at i = 47
    assert find_divergence(LRS, curve, 4.0) == pytest.approx(LRS[47])
    curve[50] = math.nan
    assert find_divergence(LRS, curve, 100.0) == pytest.approx(LRS[50])
    assert find_divergence(LRS[:40], curve[:40], 4.0) is None


def test_non_finite_points_end_the_usable_curve() -> None:
    curve = _curve()
    curve[46:] = [math.inf] * (len(curve) - 46)
    assert suggest_min_div10(LRS, curve) == pytest.approx(10**-1.5 / 10)
    assert suggest_steepest(LRS[:2], curve[:2]) is None


def test_search_range_centres_on_valley_and_min_div10() -> None:
    rng = search_range({"steepest": 1e-3, "valley": 1e-3, "min_div10": 1e-2, "divergence": 10.0})
    assert rng["suggested"] == pytest.approx(10**-2.5)
    assert math.log10(rng["high"] / rng["low"]) == pytest.approx(1.5)
    assert rng["low"] < rng["suggested"] < rng["high"]


def test_search_range_stays_below_divergence() -> None:
    rng = search_range({"steepest": None, "valley": 1e-2, "min_div10": 1e-2, "divergence": 2e-2})
    assert rng["high"] <= 2e-2
    assert math.log10(rng["high"] / rng["low"]) == pytest.approx(1.5)
    assert rng["low"] <= rng["suggested"] <= rng["high"]
    with pytest.raises(ValueError, match="no usable suggestion"):
        search_range({"steepest": None, "valley": None, "min_div10": None, "divergence": None})


def test_ramp_is_exponential() -> None:
    lrs = ramp(SweepSpec(lr_min=1e-6, lr_max=1.0, steps=13))
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(lrs)), 0.5)


def test_real_sweep_suggests_a_sane_range() -> None:
    result = run_lr_range_test(get("regression_mlp"), seed=0)
    s, r = result.suggestions, result.lr_range
    assert "exceeded 4x" in result.stop_reason or "non-finite" in result.stop_reason
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 100
    assert s["divergence"] is not None and s["valley"] is not None and s["steepest"] is not None
    assert s["valley"] < s["divergence"]
    assert 1e-4 < r["low"] < r["suggested"] < r["high"] < s["divergence"]
    data = json.loads(json.dumps(result.to_dict()))
    assert SweepResult.from_dict(data) == result


def _state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, object]:
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [p.grad.clone() for p in model.parameters()],
        "opt": {i: {k: v.clone() for k, v in s.items()} for i, s in enumerate(opt.state.values())},
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),
        "python": random.getstate(),
        "training": model.training,
    }


def _assert_identical(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_identical(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_identical(x, y)
    else:
        assert a == b


def test_callers_model_optimizer_and_rngs_are_restored_bit_for_bit() -> None:
    w = get("regression_mlp")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Dropout(0.1), nn.ReLU(), nn.Linear(32, 1)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    batches = w.train_batches(1)
    for _ in range(3):  # a model in the middle of training: optimizer state, BN stats, grads
        x, y = next(batches)
        opt.zero_grad()
        w.loss(model(x), y).backward()
        opt.step()
    model.eval()
    np.random.seed(7)
    random.seed(7)
    before = _state(model, opt)
    result = run_lr_range_test(w, seed=0, model=model, optimizer=opt, spec=SweepSpec(steps=30))
    assert len(result.lrs) > 5
    _assert_identical(before, _state(model, opt))
    after = (torch.rand(3), np.random.rand(), random.random())
    torch.set_rng_state(before["torch"])  # type: ignore[arg-type]
    np.random.seed(7)
    random.seed(7)
    assert torch.equal(after[0], torch.rand(3))
    assert after[1] == np.random.rand() and after[2] == random.random()
