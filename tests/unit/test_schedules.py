"""Warmup + decay against their closed forms, in Python, as tensors and through LambdaLR."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.schedules import SCHEDULE_CODES, lr_multiplier, lr_multiplier_tensor

TOTAL, WARMUP, FLOOR = 101, 10, 0.1
MID = WARMUP + (TOTAL - WARMUP - 1) // 2  # halfway through the decay: progress exactly 0.5


def m(step: int, schedule: str, warmup: int = WARMUP, floor: float = FLOOR) -> float:
    return lr_multiplier(
        step, total_steps=TOTAL, warmup_steps=warmup, schedule=schedule, floor=floor
    )


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warmup_is_linear_from_one_step(schedule: str) -> None:
    assert m(0, schedule) == pytest.approx(1 / WARMUP)  # warmup start
    assert m(4, schedule) == pytest.approx(5 / WARMUP)
    assert m(WARMUP - 1, schedule) == pytest.approx(1.0)  # last warmup step: full lr
    assert m(WARMUP, schedule) == pytest.approx(1.0)  # warmup end: decay starts at 1


def test_constant_stays_at_peak() -> None:
    assert [m(s, "constant") for s in (WARMUP, MID, TOTAL - 1)] == [1.0, 1.0, 1.0]


def test_linear_closed_form() -> None:
    assert m(MID, "linear") == pytest.approx(FLOOR + (1 - FLOOR) * 0.5)
    assert m(TOTAL - 1, "linear") == pytest.approx(FLOOR)  # last step: the floor
    assert m(TOTAL + 50, "linear") == pytest.approx(FLOOR)  # past the end it stays there


def test_cosine_closed_form() -> None:
    assert m(MID, "cosine") == pytest.approx(FLOOR + (1 - FLOOR) * 0.5)
    q = WARMUP + (TOTAL - WARMUP - 1) // 4
    p = (q - WARMUP) / (TOTAL - WARMUP - 1)
    expected = FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * p))
    assert m(q, "cosine") == pytest.approx(expected)
    assert m(TOTAL - 1, "cosine") == pytest.approx(FLOOR)


def test_no_warmup_starts_at_peak() -> None:
    assert m(0, "cosine", warmup=0, floor=0.0) == 1.0
    assert m(TOTAL - 1, "cosine", warmup=0, floor=0.0) == pytest.approx(0.0)


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="constant, linear, cosine"):
        m(50, "step")


def test_tensor_form_matches_scalar_form() -> None:
    schedules = ["constant", "linear", "cosine", "cosine"]
    warmups = torch.tensor([0, 10, 10, 30])
    floors = torch.tensor([0.0, 0.1, 0.0, 0.2])
    codes = torch.tensor([SCHEDULE_CODES[s] for s in schedules])
    for step in (0, 5, 9, 10, 29, 30, 55, 100):
        got = lr_multiplier_tensor(
            step, total_steps=TOTAL, warmup_steps=warmups, schedule_codes=codes, floor=floors
        )
        for k, schedule in enumerate(schedules):
            want = lr_multiplier(
                step,
                total_steps=TOTAL,
                warmup_steps=int(warmups[k]),
                schedule=schedule,
                floor=float(floors[k]),
            )
            assert float(got[k]) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lambda_lr_applies_the_closed_form(schedule: str) -> None:
    cfg = OptimConfig(lr=0.01, warmup_steps=WARMUP, schedule=schedule, floor=FLOOR)
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, TOTAL)
    for step in range(TOTAL):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * m(step, schedule))
        opt.step()
        sched.step()
