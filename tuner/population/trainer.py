"""Train K trials of one workload at once: the population training loop.

``run_population(workload, configs, settings)`` is ``tuner.train.run_trial`` for K configs: the
same :class:`~tuner.train.TrainSettings`, one :class:`~tuner.train.TrialResult` per member and
the same :class:`~tuner.train.TrialInterrupted` on a cooperative stop.
Each member behaves like a separate ``tuner.train.run_trial`` with the same seed: the same
initial weights (``workload.make_model(seed)``), the same minibatches
(``workload.train_batches(seed)``), validation every ``eval_every`` steps and at the last
step, the same divergence test on the smoothed training loss, and pruning through
``report`` once the member's warmup is over. Members that stop (pruned, diverged) are
dropped from the stack, so they stop costing compute; the survivors' numbers do not change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuner.divergence import DIVERGENCE_FACTOR, DivergenceMonitor
from tuner.optim import OptimConfig
from tuner.population.diagnostics import effective_step_diagnostics
from tuner.population.optimizer import MemberHyperparameters, VectorisedAdam
from tuner.population.scaler import MemberGradScaler
from tuner.population.stacked import StackedModel
from tuner.train import (
    MAX_SKIPPED_IN_A_ROW,
    STOP_CHECK_EVERY,
    StopFn,
    TrainSettings,
    TrialInterrupted,
    TrialResult,
    TrialState,
    autocast,
)
from tuner.workloads.base import Batch, Workload

log = logging.getLogger(__name__)

PopulationReportFn = Callable[[int, list[float | None]], Sequence[bool] | None]


@dataclass
class _Member:
    config: OptimConfig
    monitor: DivergenceMonitor
    curve: list[tuple[int, float]] = field(default_factory=list)
    result: TrialResult | None = None


def clip_grad_norm_rows_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Clip each member's gradient row ``[K, P]`` to ``max_norm`` as ``clip_grad_norm_`` does."""
    norms = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    grad.mul_((max_norm / (norms + 1e-6)).clamp(max=1.0))
    return norms.squeeze(1)


class PopulationRun:
    """One population while it trains; ``run()`` returns every member's result in order."""

    def __init__(
        self,
        workload: Workload,
        configs: Sequence[OptimConfig],
        settings: TrainSettings,
        divergence_factor: float,
    ):
        self.workload, self.settings = workload, settings
        self.total_steps, self.eval_every = settings.total_steps, settings.eval_every
        self.seed, self.device = settings.seed, torch.device(settings.device)
        self.members = [
            _Member(c, DivergenceMonitor(c.warmup_steps, divergence_factor)) for c in configs
        ]
        self.alive = list(range(len(configs)))  # the member index of every row still in the stack
        torch.manual_seed(self.seed)
        model = workload.make_model(self.seed).to(self.device)
        model.train()
        self.stacked = StackedModel(model, len(configs), workload.loss)
        hyper = MemberHyperparameters.from_configs(configs)
        self.optimizer = VectorisedAdam(self.stacked.flat, self.stacked.n_decay, hyper)
        self.precision = settings.precision
        self.scaler = MemberGradScaler(len(configs), self.device, self.precision == "fp16")
        self.val = [self._to_device(b) for b in workload.val_batches()]
        if not self.val:
            raise ValueError(f"workload {workload.name!r} has no validation batches")

    def _to_device(self, batch: Batch) -> Batch:
        return batch[0].to(self.device), batch[1].to(self.device)

    def run(
        self, report: PopulationReportFn | None, should_stop: StopFn | None
    ) -> list[TrialResult]:
        batches = self.workload.train_batches(self.seed)
        step = 0
        try:
            for step in range(self.total_steps):
                if should_stop is not None and step % STOP_CHECK_EVERY == 0 and should_stop():
                    raise TrialInterrupted(step)
                self._train_step(step, self._to_device(next(batches)))
                if (step + 1) % self.eval_every == 0 or step + 1 == self.total_steps:
                    self._evaluate(step + 1, report)
                self._compact()
                if not self.alive:
                    break
        except TrialInterrupted:
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
        with autocast(self.device, self.precision):
            losses, grad = self.stacked.loss_and_grad(*batch, self.scaler.loss_scale())
        # clipping and the optimizer state (read by the diagnostics) see true gradients
        overflowed = self.scaler.unscale_(grad)
        if self.settings.grad_clip is not None:
            clip_grad_norm_rows_(grad, self.settings.grad_clip)
        lr = self.optimizer.hyper.lr_at(step, self.total_steps)
        self.optimizer.step(grad, lr, skip=overflowed)
        self.scaler.update(overflowed)
        in_a_row = self.scaler.skipped_in_a_row.tolist() if overflowed is not None else None
        for row, (i, loss) in enumerate(zip(self.alive, losses.float().tolist(), strict=True)):
            reason = self.members[i].monitor.update(step, loss)
            if reason is None and in_a_row is not None:
                reason = _overflow(in_a_row[row], step)
            if reason is not None:
                self._finish(i, "diverged", None, reason, step + 1)

    def _evaluate(self, done: int, report: PopulationReportFn | None) -> None:
        with autocast(self.device, self.precision):
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
        state: TrialState,
        value: float | None,
        reason: str | None,
        steps: int,
        diagnostics: dict[str, Any] | None = None,
    ) -> None:
        member = self.members[i]
        if member.result is None:
            member.result = TrialResult(
                state, value, reason, steps, list(member.curve), diagnostics, member.config
            )
            log.debug("member %d %s after %d steps: %s", i, state, steps, reason)

    def _complete_survivors(self) -> None:
        diagnostics: list[dict[str, Any] | None] = [None] * len(self.alive)
        if self.settings.collect_diagnostics and self.alive:
            diagnostics = list(effective_step_diagnostics(self.stacked, self.optimizer))
            if self.scaler.enabled:
                for entry, skipped in zip(diagnostics, self.scaler.skipped.tolist(), strict=True):
                    entry["skipped_steps"] = skipped  # type: ignore[index]
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
            self.scaler.keep(rows)


def _overflow(skipped_in_a_row: int, step: int) -> str | None:
    """A member's fp16 divergence: non-finite gradients at every loss scale (as a trial's)."""
    if skipped_in_a_row < MAX_SKIPPED_IN_A_ROW:
        return None
    return f"fp16: non-finite gradients for {skipped_in_a_row} steps in a row at step {step + 1}"


def run_population(
    workload: Workload,
    configs: Sequence[OptimConfig],
    settings: TrainSettings,
    *,
    report: PopulationReportFn | None = None,
    should_stop: StopFn | None = None,
    divergence_factor: float = DIVERGENCE_FACTOR,
) -> list[TrialResult]:
    """Train one member per config together; return their results in the configs' order.

    ``report(step, values)`` is called after an evaluation with one validation loss per
    member, None where there is nothing to report (member stopped, or still in warmup), and
    may return one bool per member: True prunes it (never at the last step). ``should_stop()``
    is checked every few steps; True raises :class:`~tuner.train.TrialInterrupted`.
    Divergence and workload errors end members with a state and a reason, never an exception.
    Check ``can_vmap(workload)`` first: a workload that cannot be vmapped fails every member.
    """
    if not configs:
        raise ValueError("configs is empty: give at least one OptimConfig")
    try:
        run = PopulationRun(workload, configs, settings, divergence_factor)
    except Exception as exc:  # a broken workload or config fails its trials, not the worker
        log.warning("population of %d could not start: %r", len(configs), exc)
        return [TrialResult("failed", None, repr(exc), 0, config=c) for c in configs]
    log.info(
        "population: %d members of %s on %s, %d steps",
        len(configs),
        workload.name,
        settings.device,
        settings.total_steps,
    )
    return run.run(report, should_stop)
