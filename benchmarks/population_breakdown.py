"""The parts of one population step, timed apart: ``population.py --breakdown``.

Stacked forward and backward, the vectorised update, reading the losses back: the median
milliseconds of each over the timed steps, to show whether the model or the update dominates.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from tuner.optim import OptimConfig
from tuner.population import MemberHyperparameters, StackedModel, VectorisedAdam
from tuner.train import autocast
from tuner.workloads import get


def _timed(device: torch.device, fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and its wall time, the device's queue drained on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def breakdown(
    args: argparse.Namespace, configs: Callable[[int], list[OptimConfig]], machine: str
) -> list[dict[str, Any]]:
    """Milliseconds per population step in each part, median over the timed steps.

    ``configs(k)`` gives the K members' configurations; ``machine`` describes the device.
    """
    workload, device = get(args.workload), torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"population step breakdown: {args.workload}, device {args.device} "
        f"({machine}), {args.precision}, median ms over {args.steps} steps"
    )
    print(f"{'K':>5} {'forward+backward':>17} {'update':>8} {'losses':>8} {'update share':>13}")
    rows = []
    for k in args.sizes:
        stacked = StackedModel(workload.make_model(0).to(device), k, workload.loss)
        hyper = MemberHyperparameters.from_configs(configs(k))
        optimizer = VectorisedAdam(stacked.flat, stacked.n_decay, hyper)
        batches = workload.train_batches(0)
        parts: dict[str, list[float]] = {"model": [], "update": [], "losses": []}
        for step in range(args.steps + 3):  # three untimed warm-up steps
            x, y = (t.to(device) for t in next(batches))
            with autocast(device, args.precision):
                (losses, grad), model_s = _timed(device, stacked.loss_and_grad, x, y)
            lr = hyper.lr_at(step, args.steps + 3)
            _, update_s = _timed(device, optimizer.step, grad, lr)
            _, losses_s = _timed(device, losses.float().tolist)
            if step >= 3:
                for name, value in zip(parts, (model_s, update_s, losses_s), strict=True):
                    parts[name].append(1000 * value)
        row: dict[str, Any] = {"k": k}
        row.update({f"{name}_ms": sorted(v)[len(v) // 2] for name, v in parts.items()})
        total = row["model_ms"] + row["update_ms"] + row["losses_ms"]
        row["update_share"] = row["update_ms"] / total
        rows.append(row)
        print(
            f"{k:>5} {row['model_ms']:>17.3f} {row['update_ms']:>8.3f} {row['losses_ms']:>8.3f} "
            f"{row['update_share']:>12.0%}",
            flush=True,
        )
    return rows
