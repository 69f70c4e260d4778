"""The suite's own training loop: how every method's pick is trained and scored.

Independent of the engine's loop on purpose (the instrument must not move when the engine
does): build the optimizer a user would build from a method's configuration, train for a
fixed number of steps on a seed (model init and batch order), and return the final
validation loss. A non-finite training or validation loss is a divergence: ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.schedules import lr_multiplier
from tuner.workloads.base import Workload

# A configuration is a JSON-able dict: "kind" names the optimizer, the rest its settings.
Config = dict[str, Any]
KINDS = ("adam", "adamw", "nadamw", "radamw", "schedulefree", "prodigy")
# NAdamW and RAdamW default to AlgoPerf's recipe (warmup, then cosine decay to 0); a
# configuration may say ``"schedule": "constant"`` (the optimizer-family ablation does).
DECOUPLED = {"nadamw": torch.optim.NAdam, "radamw": torch.optim.RAdam}


@dataclass
class Built:
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler | None
    schedule_free: bool = False  # needs optimizer.train() to train and .eval() to evaluate


def optim_config(cfg: Config) -> OptimConfig:
    """The engine's OptimConfig for an Adam/AdamW configuration (what the snippet builds)."""
    return OptimConfig(
        optimizer=cfg["kind"], lr=cfg["lr"], beta1=cfg.get("beta1", 0.9),
        beta2=cfg.get("beta2", 0.999), eps=cfg.get("eps", 1e-8),
        weight_decay=cfg.get("weight_decay", 0.0), amsgrad=cfg.get("amsgrad", False),
        warmup_steps=cfg.get("warmup_steps", 0), schedule=cfg.get("schedule", "constant"),
        floor=cfg.get("floor", 0.0),
    )


def build(cfg: Config, model: nn.Module, steps: int) -> Built:
    """The optimizer and scheduler of ``cfg`` for ``model``, trained for ``steps`` steps."""
    kind = cfg["kind"]
    if kind in ("adam", "adamw"):
        opt_cfg = optim_config(cfg)
        # a plain user script puts weight decay on every parameter; the engine skips 1-D ones
        optimizer = build_optimizer(model, opt_cfg, decay_1d=bool(cfg.get("decay_1d")))
        return Built(optimizer, build_scheduler(optimizer, opt_cfg, steps))
    if kind in DECOUPLED:
        optimizer = DECOUPLED[kind](
            model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
            eps=cfg.get("eps", 1e-8), weight_decay=cfg["weight_decay"],
            decoupled_weight_decay=True,
        )
        fn = partial(lr_multiplier, total_steps=steps, warmup_steps=cfg.get("warmup_steps", 0),
                     schedule=cfg.get("schedule", "cosine"))
        return Built(optimizer, LambdaLR(optimizer, fn))
    if kind == "schedulefree":
        import schedulefree

        return Built(schedulefree.AdamWScheduleFree(model.parameters()), None, True)
    if kind == "prodigy":
        from prodigyopt import Prodigy

        optimizer = Prodigy(model.parameters())
        cosine = cfg.get("schedule") == "cosine"
        return Built(optimizer, CosineAnnealingLR(optimizer, T_max=steps) if cosine else None)
    raise ValueError(f"unknown optimizer kind {kind!r}; use one of {', '.join(KINDS)}")


def validation_loss(model: nn.Module, workload: Workload) -> float:
    """Mean validation loss over the workload's fixed batches, weighted by batch size."""
    total, count = 0.0, 0
    with torch.no_grad():
        for inputs, targets in workload.val_batches():
            total += float(workload.loss(model(inputs), targets)) * len(targets)
            count += len(targets)
    return total / count


def train_final(workload: Workload, cfg: Config, steps: int, seed: int) -> float:
    """Train ``cfg`` on ``workload`` for ``steps`` steps on ``seed``: the final validation
    loss, or ``inf`` when a loss went non-finite."""
    torch.manual_seed(seed)
    model = workload.make_model(seed)
    model.train()
    built = build(cfg, model, steps)
    if built.schedule_free:
        built.optimizer.train()  # type: ignore[attr-defined]
    batches = workload.train_batches(seed)
    for _ in range(steps):
        inputs, targets = next(batches)
        built.optimizer.zero_grad(set_to_none=True)
        loss = workload.loss(model(inputs), targets)
        if not torch.isfinite(loss):
            return math.inf
        loss.backward()
        built.optimizer.step()
        if built.scheduler is not None:
            built.scheduler.step()
    model.eval()
    if built.schedule_free:
        built.optimizer.eval()  # type: ignore[attr-defined]  # evaluate at the averaged x
    value = validation_loss(model, workload)
    return value if math.isfinite(value) else math.inf


def losses_on_seeds(workload: Workload, cfg: Config, steps: int, seeds: list[int]) -> list[float]:
    """``train_final`` on every seed (the losses, in seed order)."""
    return [train_final(workload, cfg, steps, seed) for seed in seeds]
