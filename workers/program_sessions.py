"""What a worker makes of a program's reports: the range test's curve, a trial's result.

A session answers the SDK's messages (:mod:`adamtune.sdk.protocol`) and, once the run has
ended one way or another, holds its outcome in the engine's vocabulary: a
:class:`tuner.lr_range.SweepResult`, or a :class:`tuner.train.TrialResult` decided by the
same rules as an in-process trial (divergence test, pruning only after warmup and never at
the last evaluation).
"""

from __future__ import annotations

import math
from typing import Any

from adamtune.sdk import protocol
from tuner.divergence import DivergenceMonitor
from tuner.lr_range import RangeTestMonitor, SweepResult, ramp
from tuner.optim import OptimConfig
from tuner.spec import SweepSpec
from tuner.train import ReportFn, TrialResult


def _step(message: dict[str, Any]) -> int:
    step = message.get("step")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"'step' must be a non-negative integer, got {step!r}")
    return step


class SweepSession:
    """The LR range test of a program: the SDK ramps the lr, the worker reads the losses."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec
        self.lrs = ramp(spec)
        self.monitor = RangeTestMonitor(spec)
        self.stop_reason: str | None = None
        self.last_step = -1
        self.finished = False

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "finish":
            self.finished = True
            return protocol.reply("stop", self.stop_reason)
        if self.stop_reason is not None:
            return protocol.reply("stop", self.stop_reason)
        if op == "report" and message.get("loss") is not None:
            step = _step(message)
            if step < len(self.lrs) and step > self.last_step:
                self.last_step = step
                self.stop_reason = self.monitor.update(self.lrs[step], float(message["loss"]))
            if self.stop_reason is None and step >= len(self.lrs) - 1:
                self.stop_reason = "reached lr_max"
        elif op not in ("report", "should_stop"):
            raise ValueError(f"unknown op {op!r}")
        return protocol.reply("stop" if self.stop_reason else "continue", self.stop_reason)

    @property
    def ended(self) -> bool:
        return self.finished

    def result(self) -> SweepResult:
        """The curve and its suggestions (ValueError when the program reported too little)."""
        if not self.monitor.lrs:
            raise ValueError("the program reported no training loss (trial.report(step, loss=))")
        reason = self.stop_reason or f"the program stopped at step {self.last_step}"
        return self.monitor.result(reason)


class TrialSession:
    """One trial of a program, judged by the worker's pruner and the divergence test."""

    def __init__(
        self,
        cfg: OptimConfig,
        total_steps: int,
        report: ReportFn | None = None,
    ):
        self.cfg, self.total_steps = cfg, total_steps
        self.report_fn = report
        self.monitor = DivergenceMonitor(cfg.warmup_steps)
        self.curve: list[tuple[int, float]] = []
        self.steps = 0  # optimizer steps reported so far
        self.outcome: TrialResult | None = None
        self.handed_back = False  # set by the runner when the worker stops: answers "stop"

    def _end(self, state: Any, value: float | None, reason: str | None) -> dict[str, Any]:
        self.outcome = TrialResult(state, value, reason, self.steps, self.curve, config=self.cfg)
        return protocol.reply("stop" if state == "complete" else "prune", reason)

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if self.outcome is not None:
            action: protocol.Action = "stop" if self.outcome.state == "complete" else "prune"
            return protocol.reply(action, self.outcome.reason)
        if self.handed_back:
            return protocol.reply("stop", "the worker is handing the trial back")
        if op == "report":
            return self._report(_step(message), message.get("loss"), message.get("val_loss"))
        if op == "finish":
            return self._finish(message.get("val_loss"))
        if op != "should_stop":
            raise ValueError(f"unknown op {op!r}")
        return protocol.reply("continue")

    def _report(self, step: int, loss: Any, val_loss: Any) -> dict[str, Any]:
        self.steps = max(self.steps, step + 1)
        if loss is not None:
            reason = self.monitor.update(step, float(loss))
            if reason is not None:
                return self._end("diverged", None, reason)
        if val_loss is None:
            return protocol.reply("continue")
        done, value = step + 1, float(val_loss)
        if not math.isfinite(value):
            return self._end("diverged", None, f"non-finite validation loss at step {done}")
        if self.curve and self.curve[-1][0] == done:  # evaluated again at the same step
            self.curve[-1] = (done, value)
            return protocol.reply("continue")
        self.curve.append((done, value))
        prune = (
            self.report_fn is not None
            and done >= self.cfg.warmup_steps
            and self.report_fn(done, value)  # the last evaluation too, as in process,
            and done < self.total_steps  # but it is never pruned
        )
        if prune:
            return self._end("pruned", value, f"pruned at step {done}")
        return protocol.reply("continue")

    def _finish(self, val_loss: Any) -> dict[str, Any]:
        if val_loss is None:
            if not self.curve:
                return self._end("failed", None, "finish() was called without a val_loss")
            val_loss = self.curve[-1][1]
        value = float(val_loss)
        if not math.isfinite(value):
            return self._end("diverged", None, f"non-finite final validation loss ({value})")
        if not self.curve or self.curve[-1][0] != self.steps:
            self.curve.append((self.steps, value))
        return self._end("complete", value, None)

    @property
    def ended(self) -> bool:
        return self.outcome is not None
