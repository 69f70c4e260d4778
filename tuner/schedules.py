"""Learning-rate schedules: linear warmup, then constant, linear or cosine decay.

Pure functions of the step, giving the multiplier of the peak lr. Step ``s`` (0-based) is
the step about to be taken. Warmup climbs linearly: ``(s + 1) / warmup_steps`` for
``s < warmup_steps``, so the first step uses ``lr / warmup_steps`` and step
``warmup_steps - 1`` the full lr. Decay then runs from 1 at ``s = warmup_steps`` down to
``floor`` at the last step ``s = total_steps - 1``.
"""

from __future__ import annotations

import math

import torch

SCHEDULE_CODES = {"constant": 0, "linear": 1, "cosine": 2}


def decay_progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """Fraction of the decay phase done at ``step``: 0 at warmup end, 1 at the last step."""
    span = max(1, total_steps - warmup_steps - 1)
    return min(1.0, max(0.0, (step - warmup_steps) / span))


def lr_multiplier(
    step: int, *, total_steps: int, warmup_steps: int, schedule: str, floor: float = 0.0
) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    p = decay_progress(step, warmup_steps, total_steps)
    if schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - p)
    if schedule == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULE_CODES)}")


def lr_multiplier_tensor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: torch.Tensor,
    schedule_codes: torch.Tensor,
    floor: torch.Tensor,
) -> torch.Tensor:
    """The same closed forms, one value per population member (tensors of shape [K])."""
    w = warmup_steps.to(torch.float64)
    s = float(step)
    warm = (s + 1.0) / w.clamp(min=1.0)
    span = (total_steps - w - 1.0).clamp(min=1.0)
    p = ((s - w) / span).clamp(0.0, 1.0)
    f = floor.to(torch.float64)
    linear = f + (1.0 - f) * (1.0 - p)
    cosine = f + (1.0 - f) * 0.5 * (1.0 + torch.cos(math.pi * p))
    decayed = torch.where(
        schedule_codes == SCHEDULE_CODES["cosine"],
        cosine,
        torch.where(schedule_codes == SCHEDULE_CODES["linear"], linear, torch.ones_like(p)),
    )
    return torch.where(s < w, warm, decayed)
