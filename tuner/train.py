"""One trial: train a workload with one optimizer configuration, evaluate, detect divergence.

Also the vocabulary every trainer shares (this one and the population trainer's,
:func:`tuner.population.run_population`): :class:`TrainSettings`, built once from the job;
:class:`TrialResult`, how a trial or a population member ended; :class:`TrialInterrupted`,
the one cooperative stop, carrying its step, that lets a worker hand its trials back.

The loop is deliberately plain (nanoGPT style): device and autocast are chosen once, the
schedule is a ``LambdaLR`` over the pure functions of :mod:`tuner.schedules`, and every way a
trial can end is a :class:`TrialResult` state, never an exception, except the cooperative stop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from tuner.divergence import DivergenceMonitor
from tuner.optim import OptimConfig, build_optimizer, build_scheduler, evaluation_weights
from tuner.spec import JobSpec, resolve_precision
from tuner.workloads.base import Workload

log = logging.getLogger(__name__)

TrialState = Literal["complete", "pruned", "diverged", "failed"]

STOP_CHECK_EVERY = 5  # steps between two calls of should_stop()
MAX_DIAGNOSTIC_ELEMENTS = 1_000_000  # larger groups are subsampled (evenly strided) for quantiles
MAX_SKIPPED_IN_A_ROW = 30  # fp16 steps skipped in a row (scale / 2**30) before a trial diverges


class TrialInterrupted(Exception):
    """Raised when ``should_stop()`` returns True: the caller should hand its trials back."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"training interrupted at step {step}")


@dataclass(frozen=True)
class TrainSettings:
    """How every trial of a job trains; the same for every trial, built once from the job."""

    total_steps: int
    eval_every: int
    seed: int
    device: str = "cpu"
    grad_clip: float | None = None
    lr_floor: float = 0.0  # decay floor, a fraction of the peak lr
    collect_diagnostics: bool = True
    precision: str = "auto"  # resolved for the device at construction: fp32, bf16 or fp16

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision, self.device))
        if self.total_steps < 1 or self.eval_every < 1:
            raise ValueError(
                f"total_steps ({self.total_steps}) and eval_every ({self.eval_every}) must be >= 1"
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or None (got {self.grad_clip})")

    @classmethod
    def from_spec(cls, spec: JobSpec, device: str | torch.device = "cpu") -> TrainSettings:
        """The settings of ``spec``'s trials on ``device``."""
        return cls(
            total_steps=spec.budget.steps_per_trial,
            eval_every=spec.budget.eval_every,
            seed=spec.seed,
            device=str(device),
            grad_clip=spec.grad_clip,
            lr_floor=spec.lr_floor,
            precision=spec.precision,
        )


@dataclass
class TrialResult:
    """How one trial (or population member) ended.

    ``value`` is the final validation loss of a complete trial and the last one of a pruned
    trial; ``steps`` the optimizer steps it took; ``curve`` its (step, validation loss) points.
    """

    state: TrialState
    value: float | None
    reason: str | None
    steps: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    diagnostics: dict[str, Any] | None = None
    config: OptimConfig | None = None


ReportFn = Callable[[int, float], bool]
StopFn = Callable[[], bool]


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(
    device: torch.device, precision: str = "auto"
) -> contextlib.AbstractContextManager[Any]:
    """Autocast for ``precision`` (``auto``: bf16 on CUDA; fp32 on CPU, where autocast is
    slower for these small models); fp32 runs without it."""
    dtype = AUTOCAST_DTYPES.get(resolve_precision(precision, str(device)))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A dynamic loss scaler for fp16 (fp16 gradients underflow without one); a disabled,
    pass-through one for fp32 and bf16 (bf16 has fp32's exponent range)."""
    enabled = resolve_precision(precision, str(device)) == "fp16"
    return torch.amp.GradScaler(device.type, enabled=enabled)


@torch.no_grad()
def validation_loss(
    model: nn.Module, workload: Workload, device: str | torch.device, precision: str = "auto"
) -> float:
    """Mean validation loss over the workload's validation batches, weighted by batch size."""
    dev = torch.device(device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for inputs, targets in workload.val_batches():
            inputs, targets = inputs.to(dev), targets.to(dev)
            with autocast(dev, precision):
                loss = workload.loss(model(inputs), targets)
            n = int(inputs.shape[0])
            total += float(loss.float()) * n
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"workload {workload.name!r} has no validation batches")
    return total / count


def _quantiles(values: torch.Tensor) -> dict[str, float]:
    flat = values.flatten().float()
    if flat.numel() > MAX_DIAGNOSTIC_ELEMENTS:
        stride = math.ceil(flat.numel() / MAX_DIAGNOSTIC_ELEMENTS)
        flat = flat[::stride]
    q = torch.quantile(flat, torch.tensor([0.1, 0.5, 0.9], device=flat.device))
    return {"p10": float(q[0]), "p50": float(q[1]), "p90": float(q[2])}


def _effective_step(
    p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
) -> torch.Tensor | None:
    """|m_hat| / (sqrt(v_hat) + eps) of one parameter from Adam's state; None before a step."""
    if "exp_avg" not in state:
        return None
    beta1, beta2 = group["betas"]
    t = float(state["step"])
    if t <= 0:
        return None
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    m_hat = state["exp_avg"].float() / (1.0 - beta1**t)
    v_hat = v.float() / (1.0 - beta2**t)
    return (m_hat.abs() / (v_hat.sqrt() + group["eps"])).detach()


def module_labels(model: nn.Module) -> dict[str, str]:
    """A top-level module's name for people: its attribute name, with its type where the
    name is only a position (``0 (Linear)`` in an ``nn.Sequential``)."""
    return {
        name: f"{name} ({type(child).__name__})" if name.isdigit() else name
        for name, child in model.named_children()
    }


def effective_step_diagnostics(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """p10/p50/p90 of the effective step size per parameter group and per top-level module.

    A median far below 1 means Adam's first moment has averaged out: that layer has mostly
    stopped moving (converged, or its gradient is noise); near 1 it is still learning.
    """
    labels = module_labels(model)
    module_of = {
        id(p): labels.get(name.split(".", 1)[0], name.split(".", 1)[0])
        for name, p in model.named_parameters()
    }
    by_group: dict[str, list[torch.Tensor]] = {}
    by_module: dict[str, list[torch.Tensor]] = {}
    for i, group in enumerate(optimizer.param_groups):
        gname = str(group.get("name", f"group{i}"))
        for p in group["params"]:
            ratio = _effective_step(p, optimizer.state.get(p, {}), group)
            if ratio is None:
                continue
            by_group.setdefault(gname, []).append(ratio.flatten())
            by_module.setdefault(module_of.get(id(p), "?"), []).append(ratio.flatten())
    return {
        "groups": {k: _quantiles(torch.cat(v)) for k, v in by_group.items()},
        "modules": {k: _quantiles(torch.cat(v)) for k, v in by_module.items()},
    }


@dataclass
class _Loop:
    """The mutable state of one run, so the steps can be short functions."""

    workload: Workload
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    grad_clip: float | None
    precision: str = "fp32"
    skipped_steps: int = 0  # fp16: steps the loss scaler skipped (non-finite gradients)
    skipped_in_a_row: int = 0
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        self.scaler = grad_scaler(self.device, self.precision)

    def train_step(self) -> float:
        inputs, targets = next(self.batches)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        with autocast(self.device, self.precision):
            loss = self.workload.loss(self.model(inputs), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        # clipping and the optimizer state (read by the diagnostics) see true gradients
        self.scaler.unscale_(self.optimizer)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self._step_scaled()
        with warnings.catch_warnings():  # a skipped first step makes torch warn of the order
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.scheduler.step()  # the schedule follows iterations, skipped or not (torch's way)
        return float(loss.detach().float())

    def _step_scaled(self) -> None:
        """``optimizer.step()`` through the scaler, which skips it when a gradient is not
        finite and then halves the scale; a lower scale after ``update()`` means a skip."""
        if not self.scaler.is_enabled():
            self.optimizer.step()
            return
        before = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        skipped = self.scaler.get_scale() < before
        self.skipped_steps += skipped
        self.skipped_in_a_row = self.skipped_in_a_row + 1 if skipped else 0

    def overflow_reason(self, step: int) -> str | None:
        """Why an fp16 trial counts as diverged: non-finite gradients at every loss scale."""
        if self.skipped_in_a_row < MAX_SKIPPED_IN_A_ROW:
            return None
        return (
            f"fp16: non-finite gradients for {self.skipped_in_a_row} steps in a row at step "
            f"{step} (loss scale down to {self.scaler.get_scale():.3g})"
        )


def run_trial(
    workload: Workload,
    cfg: OptimConfig,
    settings: TrainSettings,
    *,
    report: ReportFn | None = None,
    should_stop: StopFn | None = None,
) -> TrialResult:
    """Train ``workload`` with ``cfg`` for ``settings.total_steps`` steps; say how it ended.

    ``report(step, val_loss)`` is called after each evaluation once warmup is over and returns
    True to prune. Divergence and workload exceptions end the trial with a state and a reason;
    only ``should_stop()`` returning True raises (:class:`TrialInterrupted`).
    """
    dev = torch.device(settings.device)
    try:
        torch.manual_seed(settings.seed)
        model = workload.make_model(settings.seed).to(dev)
        model.train()
        optimizer = build_optimizer(model, cfg)
        loop = _Loop(
            workload,
            model,
            optimizer,
            build_scheduler(optimizer, cfg, settings.total_steps),
            workload.train_batches(settings.seed),
            dev,
            settings.grad_clip,
            settings.precision,
        )
        return _run(loop, cfg, settings, report, should_stop)
    except TrialInterrupted:
        raise
    except Exception as exc:  # a broken workload or config must not kill the worker
        log.warning("trial failed: %r", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return TrialResult("failed", None, repr(exc), 0, config=cfg)


def _run(
    loop: _Loop,
    cfg: OptimConfig,
    settings: TrainSettings,
    report: ReportFn | None,
    should_stop: StopFn | None,
) -> TrialResult:
    total_steps, eval_every = settings.total_steps, settings.eval_every
    monitor = DivergenceMonitor(cfg.warmup_steps)
    curve: list[tuple[int, float]] = []
    for step in range(total_steps):
        if should_stop is not None and step % STOP_CHECK_EVERY == 0 and should_stop():
            raise TrialInterrupted(step)
        reason = monitor.update(step, loop.train_step()) or loop.overflow_reason(step + 1)
        if reason is not None:
            return TrialResult("diverged", None, reason, step + 1, curve, config=cfg)
        done = step + 1
        if done % eval_every != 0 and done != total_steps:
            continue
        with evaluation_weights(loop.optimizer):  # Schedule-Free: at its averaged weights
            val = validation_loss(loop.model, loop.workload, loop.device, loop.precision)
        if not math.isfinite(val):
            reason = f"non-finite validation loss at step {done}"
            return TrialResult("diverged", None, reason, done, curve, config=cfg)
        curve.append((done, val))
        prune = report is not None and done >= cfg.warmup_steps and report(done, val)
        if prune and done < total_steps:  # the last evaluation is reported, never pruned
            return TrialResult("pruned", val, f"pruned at step {done}", done, curve, config=cfg)
    diagnostics = None
    if settings.collect_diagnostics:
        diagnostics = effective_step_diagnostics(loop.model, loop.optimizer)
        if loop.scaler.is_enabled():
            diagnostics["skipped_steps"] = loop.skipped_steps
    return TrialResult("complete", curve[-1][1], None, total_steps, curve, diagnostics, cfg)
