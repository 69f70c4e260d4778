"""The LR range test: ramp the lr exponentially, watch the smoothed loss, suggest a range.

One short run of Adam whose lr grows from ``lr_min`` to ``lr_max`` over ``steps`` optimizer
steps; the bias-corrected EMA of the training loss is recorded until it exceeds
``divergence_factor`` times its minimum (or is not finite). Everything the run touched is
restored afterwards: parameters, buffers, gradients, optimizer state and the torch, numpy and
Python RNGs. The suggestions are pure functions of the curve, so they are testable alone.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tuner.spec import SweepSpec
from tuner.workloads.base import Workload

log = logging.getLogger(__name__)

# Width of the lr search range, in decades below and above the suggested lr. The best lr for a
# full training run sits most often between the valley and the loss minimum; the range covers
# 1.5 decades, a little more above the suggestion than below (schedules tolerate a high peak).
DECADES_BELOW = 0.75
DECADES_ABOVE = 0.75


@dataclass
class SweepResult:
    """The curve of an LR range test and what it suggests."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float | None]
    lr_range: dict[str, float]
    stop_reason: str
    spec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        return cls(
            lrs=[float(x) for x in data["lrs"]],
            losses=[float(x) for x in data["losses"]],
            smoothed=[float(x) for x in data["smoothed"]],
            suggestions={
                k: (None if v is None else float(v)) for k, v in data["suggestions"].items()
            },
            lr_range={k: float(v) for k, v in data["lr_range"].items()},
            stop_reason=str(data["stop_reason"]),
            spec=dict(data.get("spec") or {}),
        )


# ---------------------------------------------------------------- suggestions (pure functions)


def _finite_prefix(
    lrs: Sequence[float], smoothed: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The curve up to its first non-finite point."""
    y = np.asarray(smoothed, dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    n = int(bad[0]) if bad.size else len(y)
    return np.asarray(lrs[:n], dtype=float), y[:n]


def suggest_steepest(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The lr where the smoothed loss falls fastest against log(lr), before its minimum."""
    x, y = _finite_prefix(lrs, smoothed)
    if len(y) < 3:
        return None
    end = int(np.argmin(y)) + 1
    if end < 3:
        return None
    slope = np.gradient(y[:end], np.log(x[:end]))
    return float(x[int(np.argmin(slope))])


def suggest_valley(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """fastai's valley: about half way along the longest descending stretch of the curve."""
    x, y = _finite_prefix(lrs, smoothed)
    n = len(y)
    if n < 3:
        return None
    lds = np.ones(n, dtype=int)  # length of the longest decreasing subsequence ending at i
    max_start, max_end = 0, 0
    for i in range(1, n):
        higher = y[:i] > y[i]
        if higher.any():
            lds[i] = int(lds[:i][higher].max()) + 1
        if lds[i] > lds[max_end]:
            max_end = i
            max_start = max_end - int(lds[max_end]) + 1
    sections = (max_end - max_start) / 3
    idx = max(0, min(n - 1, max_start + int(sections) + int(sections / 2)))
    return float(x[idx])


def suggest_min_div10(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """One tenth of the lr at which the smoothed loss is lowest (the classic rule of thumb)."""
    x, y = _finite_prefix(lrs, smoothed)
    if len(y) == 0:
        return None
    return float(x[int(np.argmin(y))]) / 10.0


def find_divergence(lrs: Sequence[float], smoothed: Sequence[float], factor: float) -> float | None:
    """The first lr whose smoothed loss is not finite or exceeds ``factor`` x its minimum so far."""
    best = math.inf
    for lr, loss in zip(lrs, smoothed, strict=False):
        if not math.isfinite(loss):
            return float(lr)
        best = min(best, loss)
        if best > 0 and loss > factor * best:
            return float(lr)
    return None


def search_range(suggestions: dict[str, float | None]) -> dict[str, float]:
    """The lr range handed to the search: centred between valley and min/10, below divergence.

    ``suggested`` is the geometric mean of the valley and min/10 suggestions (whichever exist,
    else steepest); the range spans ``DECADES_BELOW`` + ``DECADES_ABOVE`` decades around it and
    its top is clipped to half the divergence lr, where training is already unstable.
    """
    picks = [suggestions.get(k) for k in ("valley", "min_div10")]
    found = [v for v in picks if v is not None and v > 0]
    if not found and suggestions.get("steepest"):
        found = [float(suggestions["steepest"])]  # type: ignore[arg-type]
    if not found:
        raise ValueError("the sweep produced no usable suggestion: the loss never decreased")
    suggested = math.exp(sum(math.log(v) for v in found) / len(found))
    low = suggested * 10**-DECADES_BELOW
    high = suggested * 10**DECADES_ABOVE
    divergence = suggestions.get("divergence")
    if divergence is not None and divergence > 0 and high > divergence / 2:
        high = max(divergence / 2, suggested * 10**0.25)
        low = high * 10 ** -(DECADES_BELOW + DECADES_ABOVE)
    suggested = min(suggested, high)
    return {"low": float(low), "suggested": float(suggested), "high": float(high)}


def suggest(
    lrs: Sequence[float], smoothed: Sequence[float], factor: float
) -> dict[str, float | None]:
    return {
        "steepest": suggest_steepest(lrs, smoothed),
        "valley": suggest_valley(lrs, smoothed),
        "min_div10": suggest_min_div10(lrs, smoothed),
        "divergence": find_divergence(lrs, smoothed, factor),
    }


# ---------------------------------------------------------------- the run, with restoration


@dataclass
class _Snapshot:
    """Everything a sweep may change, copied so it can be put back bit for bit."""

    model_state: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]
    optimizer_state: dict[str, Any] | None
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    numpy_rng: Any
    python_rng: Any
    training: bool

    @classmethod
    def take(cls, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> _Snapshot:
        return cls(
            model_state={
                k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()
            },
            grads=[None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
            optimizer_state=copy.deepcopy(optimizer.state_dict())
            if optimizer is not None
            else None,
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            numpy_rng=np.random.get_state(),
            python_rng=random.getstate(),
            training=model.training,
        )

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        model.load_state_dict(self.model_state)
        for p, g in zip(model.parameters(), self.grads, strict=True):
            p.grad = None if g is None else g.clone()
        if optimizer is not None and self.optimizer_state is not None:
            optimizer.load_state_dict(self.optimizer_state)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        model.train(self.training)


def ramp(spec: SweepSpec) -> list[float]:
    """The exponential lr ramp: ``spec.steps`` values from ``lr_min`` to ``lr_max``."""
    ratio = spec.lr_max / spec.lr_min
    return [spec.lr_min * ratio ** (i / (spec.steps - 1)) for i in range(spec.steps)]


class RangeTestMonitor:
    """The range test's stop rule, one step at a time, recording the curve as it goes.

    Bias-corrected EMA of the training loss; the run stops when it is not finite or exceeds
    ``spec.divergence_factor`` x its minimum. Used by :func:`run_lr_range_test` and by the
    range test of a user's own program (the SDK reports each step's loss to its worker).
    """

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best = 0.0, math.inf

    def update(self, lr: float, loss: float) -> str | None:
        """Record the loss at ``lr``; return why the test must stop now, or None."""
        beta = self.spec.smoothing
        self._avg = beta * self._avg + (1 - beta) * loss
        smooth = self._avg / (1 - beta ** (len(self.lrs) + 1))
        self.lrs.append(lr)
        self.losses.append(loss)
        self.smoothed.append(smooth)
        if not math.isfinite(smooth):
            return f"non-finite loss at lr {lr:.3g}"
        self._best = min(self._best, smooth)
        if smooth > self.spec.divergence_factor * self._best:
            return f"loss exceeded {self.spec.divergence_factor:g}x its minimum at lr {lr:.3g}"
        return None

    def result(self, stop_reason: str) -> SweepResult:
        """The curve so far and its suggestions (ValueError if none can be made)."""
        suggestions = suggest(self.lrs, self.smoothed, self.spec.divergence_factor)
        return SweepResult(
            self.lrs,
            self.losses,
            self.smoothed,
            suggestions,
            search_range(suggestions),
            stop_reason,
            self.spec.model_dump(),
        )


class SweepInterrupted(RuntimeError):
    """The caller's ``should_stop`` asked the range test to stop (e.g. a lost sweep lease)."""


def _sweep(
    workload: Workload,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    seed: int,
    device: torch.device,
    spec: SweepSpec,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[RangeTestMonitor, str]:
    monitor = RangeTestMonitor(spec)
    batches = workload.train_batches(seed)
    model.train()
    for lr in ramp(spec):
        if should_stop is not None and should_stop():
            raise SweepInterrupted(f"LR range test stopped by its caller at lr {lr:.3g}")
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = next(batches)
        loss = workload.loss(model(inputs.to(device)), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stop = monitor.update(lr, float(loss.detach()))
        if stop is not None:
            return monitor, stop
    return monitor, "reached lr_max"


def run_lr_range_test(
    workload: Workload,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    spec: SweepSpec | None = None,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SweepResult:
    """Run the LR range test on ``model`` (a fresh one from the workload if None).

    ``should_stop`` is polled before every step; True raises :class:`SweepInterrupted`.

    With no ``optimizer`` the test uses Adam with torch's defaults (the baseline's optimizer);
    a caller's optimizer is used as is and its state restored afterwards, like the model's.
    """
    spec = spec or SweepSpec()
    dev = torch.device(device)
    if model is None:
        torch.manual_seed(seed)
        model = workload.make_model(seed).to(dev)
    snapshot = _Snapshot.take(model, optimizer)
    opt = (
        optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=spec.lr_min)
    )
    saved_lrs = [g["lr"] for g in opt.param_groups]
    try:
        monitor, stop = _sweep(workload, model, opt, seed, dev, spec, should_stop)
    finally:
        snapshot.restore(model, optimizer)
        for group, lr in zip(opt.param_groups, saved_lrs, strict=True):
            group["lr"] = lr
    result = monitor.result(stop)
    log.info(
        "lr range test: %s; suggested lr %.3g in [%.3g, %.3g]",
        stop,
        result.lr_range["suggested"],
        result.lr_range["low"],
        result.lr_range["high"],
    )
    return result
