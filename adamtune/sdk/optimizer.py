"""``Trial.build_optimizer``: torch.optim Adam/AdamW and a LambdaLR, exactly as the snippet.

Imported on the first ``build_optimizer`` call only: this is where the SDK loads torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from tuner.lr_range import ramp
from tuner.optim import OptimConfig, build_scheduler, optimizer_from_groups, param_groups
from tuner.spec import SweepSpec

Params = nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _groups(params: Params, cfg: OptimConfig, decay_1d: bool) -> list[dict[str, Any]]:
    """Parameter groups with every group's lr and weight decay set, its own settings kept.

    A module is split as every trial splits it (no decay on 1-D parameters unless
    ``decay_1d``); a group's ``lr_scale`` multiplies the trial's lr, and a group's own
    ``weight_decay`` (0.0 for a no-decay group) wins over the trial's.
    """
    if isinstance(params, nn.Module):
        return param_groups(params, cfg.weight_decay, decay_1d)
    items: list[Any] = list(params)
    if not items:
        raise ValueError("build_optimizer got no parameters: pass a model or parameter groups")
    if not all(isinstance(item, dict) for item in items):
        items = [{"params": items}]
    groups = []
    for i, given in enumerate(items):
        group: dict[str, Any] = dict(given)
        if "lr" in group:
            raise ValueError(
                f"parameter group {i} sets 'lr', which the trial tunes: give 'lr_scale' "
                "(a multiplier of the trial's lr) instead"
            )
        group["params"] = list(group["params"])
        group["lr"] = cfg.lr * float(group.get("lr_scale", 1.0))
        group.setdefault("weight_decay", cfg.weight_decay)
        groups.append(group)
    return groups


def _ramp_schedule(optimizer: torch.optim.Optimizer, spec: SweepSpec) -> LambdaLR:
    """The range test's exponential ramp as a LambdaLR over optimizer steps (base lr_min)."""
    lrs = ramp(spec)
    last = len(lrs) - 1
    return LambdaLR(optimizer, lambda step: lrs[min(step, last)] / lrs[0])


def build(
    params: Params,
    *,
    phase: str,
    config: dict[str, Any],
    total_steps: int | None,
    sweep: dict[str, Any] | None,
    decay_1d: bool = False,
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """The phase's optimizer and its scheduler (call ``scheduler.step()`` after each step)."""
    if phase == "sweep":
        spec = SweepSpec(**(sweep or {}))
        cfg = OptimConfig(lr=spec.lr_min)  # the baseline's Adam, its lr ramped
        optimizer = optimizer_from_groups(_groups(params, cfg, decay_1d), cfg)
        return optimizer, _ramp_schedule(optimizer, spec)
    cfg = OptimConfig(**config)
    if total_steps is None and (cfg.schedule != "constant" or cfg.warmup_steps):
        raise ValueError(
            f"a {cfg.schedule} schedule with {cfg.warmup_steps} warmup steps needs the run's "
            "length: pass adamtune.trial(total_steps=N) or a recommendation with total_steps"
        )
    optimizer = optimizer_from_groups(_groups(params, cfg, decay_1d), cfg)
    return optimizer, build_scheduler(optimizer, cfg, total_steps or 1)
