"""Asked trials of a program job, trained by the user's program: a batch trainer.

The program counterpart of :func:`tuner.batch.train_trials`: each asked trial gets its role
and configuration from the search, reports every evaluation to the pruner (seeded trials
are never pruned), and has its outcome recorded in its user attrs, as an in-process trial
does (:func:`tuner.batch.run_asked_trial`); only the training runs in a child process
(:class:`workers.program_runner.ProgramRunner`). The worker and ``adamtune tune`` (a program
job run locally) both train with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.batch import run_asked_trial
from tuner.driver import TrialOutcome
from tuner.optim import OptimConfig
from tuner.space import ResolvedSpace
from tuner.train import ReportFn, StopFn, TrainSettings, TrialInterrupted, TrialResult
from workers.program_runner import ProgramRun, ProgramRunner
from workers.programs import Program


@dataclass(frozen=True)
class ProgramTrainer:
    """A batch trainer (:data:`tuner.driver.BatchTrainer`) whose trials run ``program``, one
    child process after the other, in order; the workload argument is ignored (None).

    ``should_stop`` is used where a call passes none; :class:`tuner.train.TrialInterrupted`
    is raised when it turns True, after ``on_interrupt(trials)``. A failed trial's reason ends
    with its log's path (``log_dir/<program>-trial-N.log``).
    """

    runner: ProgramRunner
    program: Program
    should_stop: StopFn | None = None
    on_interrupt: Callable[[Sequence[optuna.Trial]], None] | None = None

    def __call__(
        self,
        trials: Sequence[optuna.Trial],
        workload: Any,
        settings: TrainSettings,
        space: ResolvedSpace,
        should_stop: StopFn | None = None,
    ) -> list[TrialOutcome]:
        stop = should_stop or self.should_stop
        try:
            return [self._train(t, settings, space, stop) for t in trials]
        except TrialInterrupted:
            if self.on_interrupt is not None:
                self.on_interrupt(trials)
            raise

    def _train(
        self,
        trial: optuna.Trial,
        settings: TrainSettings,
        space: ResolvedSpace,
        stop: StopFn | None,
    ) -> TrialOutcome:
        def started(run: ProgramRun) -> None:
            # recorded while the trial runs: its log is served at once, and the pid is
            # checkable after a cancel or a hand-back too (the child must be gone)
            trial.set_user_attr("log", str(run.log_path))
            trial.set_user_attr("pid", run.pid)

        def run(cfg: OptimConfig, settings: TrainSettings, report: ReportFn) -> TrialResult:
            return self.runner.run_trial(
                self.program, cfg, settings, number=trial.number, report=report,
                should_stop=stop, on_start=started,
            )

        outcome = run_asked_trial(trial, space, settings, run)
        last = self.runner.last_run  # this trial's run (None if its child could not start)
        if outcome.state == TrialState.FAIL and last is not None:
            outcome = replace(outcome, reason=f"{outcome.reason}\n(log: {last.log_path})")
        return outcome
