"""Per-member effective step sizes, in the shape of ``tuner.train``'s trial diagnostics.

For every member: p10/p50/p90 of ``|m_hat| / (sqrt(v_hat) + eps)`` per parameter group
(``decay``, ``no_decay``) and per top-level module. A median far below 1 means Adam's first
moment has averaged out (the layer has mostly stopped moving); near 1 it is still learning.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tuner.population.optimizer import VectorisedAdam
from tuner.population.stacked import StackedModel
from tuner.train import module_labels

MAX_DIAGNOSTIC_ELEMENTS = 1_000_000  # larger groups are subsampled (evenly strided) for quantiles
QUANTILES = (0.1, 0.5, 0.9)


def effective_steps(optimizer: VectorisedAdam) -> torch.Tensor | None:
    """``|m_hat| / (sqrt(v_hat) + eps)`` for every member and parameter, ``[K, P]`` float32."""
    if optimizer.step_count <= 0:
        return None
    t = optimizer.steps.clamp(min=1.0)  # per member: fp16 members may have skipped steps
    h = optimizer.hyper
    second = optimizer.exp_avg_sq
    if optimizer.max_exp_avg_sq is not None:
        rows = h.amsgrad.unsqueeze(1).to(second.device)
        second = torch.where(rows, optimizer.max_exp_avg_sq, second)
    bc1 = optimizer.column(1.0 - h.beta1**t)
    bc2 = optimizer.column(1.0 - h.beta2**t)
    m_hat = optimizer.exp_avg.float() / bc1
    v_hat = second.float() / bc2
    return m_hat.abs() / (v_hat.sqrt() + optimizer.column(h.eps))


def _row_quantiles(values: torch.Tensor) -> list[dict[str, float]]:
    """p10/p50/p90 of each row of ``values`` ``[K, n]``, subsampled like the single-trial code."""
    if values.shape[1] > MAX_DIAGNOSTIC_ELEMENTS:
        values = values[:, :: math.ceil(values.shape[1] / MAX_DIAGNOSTIC_ELEMENTS)]
    q = torch.quantile(values, torch.tensor(QUANTILES, device=values.device), dim=1).T.tolist()
    return [{"p10": a, "p50": b, "p90": c} for a, b, c in q]


def _column_sets(stacked: StackedModel) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The columns of every parameter group and of every top-level module, in optimizer order."""
    groups: dict[str, list[int]] = {}
    modules: dict[str, list[int]] = {}
    labels = module_labels(stacked._base)
    for slot in stacked.slots:
        group = "decay" if slot.offset < stacked.n_decay else "no_decay"
        cols = list(range(slot.offset, slot.offset + slot.numel))
        groups.setdefault(group, []).extend(cols)
        top = slot.name.split(".", 1)[0]
        modules.setdefault(labels.get(top, top), []).extend(cols)
    device = stacked.device

    def as_index(sets: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        return {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in sets.items()}

    return as_index(groups), as_index(modules)


def effective_step_diagnostics(
    stacked: StackedModel, optimizer: VectorisedAdam
) -> list[dict[str, Any]]:
    """One ``{"groups": ..., "modules": ...}`` dict per row of the stack."""
    ratio = effective_steps(optimizer)
    if ratio is None:
        return [{"groups": {}, "modules": {}} for _ in range(stacked.size)]
    groups, modules = _column_sets(stacked)
    by_group = {name: _row_quantiles(ratio.index_select(1, cols)) for name, cols in groups.items()}
    by_module = {
        name: _row_quantiles(ratio.index_select(1, cols)) for name, cols in modules.items()
    }
    return [
        {
            "groups": {name: q[row] for name, q in by_group.items()},
            "modules": {name: q[row] for name, q in by_module.items()},
        }
        for row in range(stacked.size)
    ]
