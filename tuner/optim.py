"""Build Adam/AdamW with ``torch.optim`` (the maths is torch's) and the lr schedule.

Also the two tuning-free references every job runs beside its baseline, at their documented
defaults: Schedule-Free AdamW (``schedulefree``, constant lr 0.0025) and Prodigy
(``prodigyopt``, lr 1 with a cosine decay, as its authors advise).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from tuner.schedules import lr_multiplier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    """One trial's optimizer hyperparameters."""

    optimizer: str = "adam"  # "adam" | "adamw" (| a reference: "schedulefree", "prodigy")
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    warmup_steps: int = 0
    schedule: str = "constant"  # "constant" | "linear" | "cosine"
    floor: float = 0.0  # decay floor, a fraction of the peak lr

    @classmethod
    def baseline(cls) -> OptimConfig:
        """The untuned default every job measures: Adam, lr 1e-3, torch's defaults."""
        return cls()

    @classmethod
    def reference(cls, name: str) -> OptimConfig:
        """A tuning-free reference at its documented defaults (see the module doc)."""
        if name == "schedulefree":
            return cls(optimizer="schedulefree", lr=0.0025)
        if name == "prodigy":
            return cls(optimizer="prodigy", lr=1.0, schedule="cosine")
        raise ValueError(f"unknown reference {name!r}; use 'schedulefree' or 'prodigy'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def param_groups(
    model: nn.Module, weight_decay: float, decay_1d: bool = False
) -> list[dict[str, Any]]:
    """Two groups: matrices (decayed) and 1-D parameters (biases, norm weights: not decayed)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 or decay_1d else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


FUSED_DEVICES = ("cuda", "cpu")  # measured on CPU: 2-3.5x faster steps than the default


def fused_supported(device: torch.device) -> bool:
    """Whether torch.optim's fused Adam/AdamW kernel (one kernel for every parameter) runs on
    ``device``: on CUDA, and on CPU since torch 2.4, where it beats the foreach path too."""
    return device.type in FUSED_DEVICES


def build_optimizer(
    model: nn.Module, cfg: OptimConfig, decay_1d: bool = False
) -> torch.optim.Optimizer:
    return optimizer_from_groups(param_groups(model, cfg.weight_decay, decay_1d), cfg)


def optimizer_from_groups(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """``cfg``'s optimizer over ``groups``; a group's own settings (weight_decay, ...) win."""
    device = next(p for g in groups for p in g["params"]).device
    if cfg.optimizer in REFERENCES:
        return reference_optimizer(groups, cfg)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(cfg.optimizer)
    if cls is None:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'adam' or 'adamw'")
    kwargs: dict[str, Any] = dict(
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, amsgrad=cfg.amsgrad
    )
    if fused_supported(device):
        kwargs["fused"] = True
    return cls(groups, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int
) -> LambdaLR:
    fn = partial(
        lr_multiplier,
        total_steps=total_steps,
        warmup_steps=cfg.warmup_steps,
        schedule=cfg.schedule,
        floor=cfg.floor,
    )
    return LambdaLR(optimizer, fn)


REFERENCES = ("schedulefree", "prodigy")


def reference_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Schedule-Free AdamW (put in train mode) or Prodigy over ``groups``."""
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "schedulefree":
        import schedulefree

        optimizer: torch.optim.Optimizer = schedulefree.AdamWScheduleFree(
            groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        optimizer.train()  # type: ignore[attr-defined]
        return optimizer
    from prodigyopt import Prodigy

    return Prodigy(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def evaluation_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Evaluate at the weights an optimizer means to be evaluated at: Schedule-Free's averaged
    ``x`` (its ``eval()``), not the ``y`` it steps from; a no-op for every other optimizer."""
    switch = callable(getattr(optimizer, "eval", None)) and callable(
        getattr(optimizer, "train", None)
    )
    if switch:
        optimizer.eval()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if switch:
            optimizer.train()  # type: ignore[attr-defined]
