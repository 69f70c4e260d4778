"""Train K trials of one workload at once: the population training loop.

Each member behaves like a separate ``tuner.train.run_trial`` with the same seed: the same
initial weights (``workload.make_model(seed)``), the same minibatches
(``workload.train_batches(seed)``), validation every ``eval_every`` steps and at the last
step, the same divergence test on the smoothed training loss, and pruning through
``report`` once the member's warmup is over. Members that stop (pruned, diverged) are
dropped from the stack, so they stop costing compute; the survivors' numbers do not change.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from tuner.divergence import DIVERGENCE_FACTOR, DivergenceMonitor
from tuner.optim import OptimConfig
from tuner.population.diagnostics import effective_step_diagnostics
from tuner.population.optimizer import MemberHyperparameters, VectorisedAdam
from tuner.population.stacked import StackedModel
from tuner.workloads.base import Batch, Workload

log = logging.getLogger(__name__)

MemberState = Literal["complete", "pruned", "diverged", "failed"]
STOP_CHECK_EVERY = 5  # steps between two calls of should_stop()

ReportFn = Callable[[int, list[float | None]], Sequence[bool] | None]
StopFn = Callable[[], bool]


class PopulationInterrupted(Exception):
    """Raised when ``should_stop()`` returns True: the caller should hand every trial back."""

    def __init__(self, step: int):
        self.step = step
        super().__init__(f"population interrupted at step {step}")


@dataclass
class PopulationMemberResult:
    """How one member ended: the fields of ``tuner.train.TrialResult``, plus its config.

    ``value`` is the final validation loss of a complete member and the last one of a pruned
    member; ``steps`` the optimizer steps it took; ``curve`` its (step, validation loss) points.
    """

    state: MemberState
    value: float | None
    reason: str | None
    steps: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    diagnostics: dict[str, Any] | None = None
    config: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class _Member:
    config: OptimConfig
    monitor: DivergenceMonitor
    curve: list[tuple[int, float]] = field(default_factory=list)
    result: PopulationMemberResult | None = None


def clip_grad_norm_rows_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Clip each member's gradient row ``[K, P]`` to ``max_norm`` as ``clip_grad_norm_`` does."""
    norms = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    grad.mul_((max_norm / (norms + 1e-6)).clamp(max=1.0))
    return norms.squeeze(1)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA only, as ``tuner.train`` does: CPU autocast is slower here."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PopulationRun:
    """One population while it trains; ``run()`` returns every member's result in order."""

    def __init__(
        self,
        workload: Workload,
        configs: Sequence[OptimConfig],
        *,
        total_steps: int,
        eval_every: int,
        seed: int,
        device: torch.device,
        grad_clip: float | None,
        divergence_factor: float,
        collect_diagnostics: bool,
    ):
        self.workload, self.total_steps, self.eval_every = workload, total_steps, eval_every
        self.seed, self.device, self.grad_clip = seed, device, grad_clip
        self.collect_diagnostics = collect_diagnostics
        self.members = [
            _Member(c, DivergenceMonitor(c.warmup_steps, divergence_factor)) for c in configs
        ]
        self.alive = list(range(len(configs)))  # the member index of every row still in the stack
        torch.manual_seed(seed)
        model = workload.make_model(seed).to(device)
        model.train()
        self.stacked = StackedModel(model, len(configs), workload.loss)
        hyper = MemberHyperparameters.from_configs(configs)
        self.optimizer = VectorisedAdam(self.stacked.flat, self.stacked.n_decay, hyper)
        self.val = [self._to_device(b) for b in workload.val_batches()]
        if not self.val:
            raise ValueError(f"workload {workload.name!r} has no validation batches")

    def _to_device(self, batch: Batch) -> Batch:
        return batch[0].to(self.device), batch[1].to(self.device)

    def run(
        self, report: ReportFn | None, should_stop: StopFn | None
    ) -> list[PopulationMemberResult]:
        batches = self.workload.train_batches(self.seed)
        step = 0
        try:
            for step in range(self.total_steps):
                if should_stop is not None and step % STOP_CHECK_EVERY == 0 and should_stop():
                    raise PopulationInterrupted(step)
                self._train_step(step, self._to_device(next(batches)))
                if (step + 1) % self.eval_every == 0 or step + 1 == self.total_steps:
                    self._evaluate(step + 1, report)
                self._compact()
                if not self.alive:
                    break
        except PopulationInterrupted:
            raise
        except Exception as exc:  # a broken workload or report must not kill the worker
            log.warning(
                "population of %d failed at step %d: %r",
                len(self.members),
                step,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            for i in self.alive:
                self._finish(i, "failed", None, repr(exc), step)
            self.alive = []
        self._complete_survivors()
        return [m.result for m in self.members if m.result is not None]

    def _train_step(self, step: int, batch: Batch) -> None:
        with _autocast(self.device):
            losses, grad = self.stacked.loss_and_grad(*batch)
        if self.grad_clip is not None:
            clip_grad_norm_rows_(grad, self.grad_clip)
        self.optimizer.step(grad, self.optimizer.hyper.lr_at(step, self.total_steps))
        for i, loss in zip(self.alive, losses.float().tolist(), strict=True):
            reason = self.members[i].monitor.update(step, loss)
            if reason is not None:
                self._finish(i, "diverged", None, reason, step + 1)

    def _evaluate(self, done: int, report: ReportFn | None) -> None:
        with _autocast(self.device):
            vals = self.stacked.evaluate(self.val).tolist()
        reported: list[float | None] = [None] * len(self.members)
        for i, val in zip(self.alive, vals, strict=True):
            member = self.members[i]
            if member.result is not None:
                continue  # diverged on this step's training loss
            if not math.isfinite(val):
                self._finish(
                    i, "diverged", None, f"non-finite validation loss at step {done}", done
                )
                continue
            member.curve.append((done, val))
            if done >= member.config.warmup_steps:
                reported[i] = val
        if report is None or all(v is None for v in reported):
            return
        prune = report(done, reported)
        if prune is None:
            return
        if len(prune) != len(self.members):
            raise ValueError(f"report returned {len(prune)} flags for {len(self.members)} members")
        for i, (flag, val) in enumerate(zip(prune, reported, strict=True)):
            if flag and val is not None and done < self.total_steps:  # the last one is never pruned
                self._finish(i, "pruned", val, f"pruned at step {done}", done)

    def _finish(
        self,
        i: int,
        state: MemberState,
        value: float | None,
        reason: str | None,
        steps: int,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        member = self.members[i]
        if member.result is None:
            member.result = PopulationMemberResult(
                state, value, reason, steps, list(member.curve), diagnostics, member.config
            )
            log.debug("member %d %s after %d steps: %s", i, state, steps, reason)

    def _complete_survivors(self) -> None:
        diagnostics: list[dict[str, Any] | None] = [None] * len(self.alive)
        if self.collect_diagnostics and self.alive:
            diagnostics = list(effective_step_diagnostics(self.stacked, self.optimizer))
        for row, i in enumerate(self.alive):
            final = self.members[i].curve[-1][1]
            self._finish(i, "complete", final, None, self.total_steps, diagnostics[row])

    def _compact(self) -> None:
        """Drop the rows of members that have finished, so they stop costing compute."""
        keep = [row for row, i in enumerate(self.alive) if self.members[i].result is None]
        if len(keep) == len(self.alive):
            return
        self.alive = [self.alive[row] for row in keep]
        if keep:
            rows = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.stacked.keep(rows)
            self.optimizer.keep(rows, self.stacked.flat)


def train_population(
    workload: Workload,
    configs: Sequence[OptimConfig],
    *,
    total_steps: int,
    eval_every: int,
    seed: int,
    device: str | torch.device = "cpu",
    grad_clip: float | None = None,
    report: ReportFn | None = None,
    should_stop: StopFn | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
    collect_diagnostics: bool = True,
) -> list[PopulationMemberResult]:
    """Train one member per config together; return their results in the configs' order.

    ``report(step, values)`` is called after an evaluation with one validation loss per
    member, None where there is nothing to report (member stopped, or still in warmup), and
    may return one bool per member: True prunes it (never at the last step). ``should_stop()``
    is checked every few steps; True raises :class:`PopulationInterrupted`. Divergence and
    workload errors end members with a state and a reason, never an exception.
    Check ``can_vmap(workload)`` first: a workload that cannot be vmapped fails every member.
    """
    if not configs:
        raise ValueError("configs is empty: give at least one OptimConfig")
    if total_steps < 1 or eval_every < 1:
        raise ValueError(f"total_steps ({total_steps}) and eval_every ({eval_every}) must be >= 1")
    if grad_clip is not None and grad_clip <= 0:
        raise ValueError(f"grad_clip must be > 0 or None (got {grad_clip})")
    dev = torch.device(device)
    try:
        run = PopulationRun(
            workload,
            configs,
            total_steps=total_steps,
            eval_every=eval_every,
            seed=seed,
            device=dev,
            grad_clip=grad_clip,
            divergence_factor=divergence_factor,
            collect_diagnostics=collect_diagnostics,
        )
    except Exception as exc:  # a broken workload or config fails its trials, not the worker
        log.warning("population of %d could not start: %r", len(configs), exc)
        return [PopulationMemberResult("failed", None, repr(exc), 0, config=c) for c in configs]
    log.info(
        "population: %d members of %s on %s, %d steps",
        len(configs),
        workload.name,
        dev,
        total_steps,
    )
    return run.run(report, should_stop)
