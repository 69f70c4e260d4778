"""Asked trials of a program job, trained by the user's program: a batch trainer.

The program counterpart of :func:`tuner.batch.train_trials`: each asked trial gets its role
and configuration from the search, reports every evaluation to the pruner (seeded trials
are never pruned), and has its outcome recorded in its user attrs, as an in-process trial
does; only the training runs in a child process (:class:`workers.program_runner.ProgramRunner`).
The worker and ``adamtune tune`` (a program job run locally) both train with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner import search
from tuner.batch import record_result
from tuner.driver import TrialOutcome
from tuner.space import ResolvedSpace
from tuner.train import StopFn, TrainSettings
from workers.program_runner import ProgramRunner
from workers.programs import Program


@dataclass(frozen=True)
class ProgramTrainer:
    """A batch trainer (:data:`tuner.driver.BatchTrainer`) whose trials run ``program``, one
    child process after the other, in order; the workload argument is ignored (None).

    ``should_stop`` is used where a call passes none. Logs are ``<prefix>trial-N``.
    """

    runner: ProgramRunner
    program: Program
    should_stop: StopFn | None = None
    log_prefix: str = ""

    def __call__(
        self,
        trials: Sequence[optuna.Trial],
        workload: Any,
        settings: TrainSettings,
        space: ResolvedSpace,
        should_stop: StopFn | None = None,
    ) -> list[TrialOutcome]:
        stop = should_stop or self.should_stop
        return [self.train(t, settings, space, stop) for t in trials]

    def train(
        self,
        trial: optuna.Trial,
        settings: TrainSettings,
        space: ResolvedSpace,
        should_stop: StopFn | None = None,
    ) -> TrialOutcome:
        """Run the program for one asked trial; does not tell the study.

        Raises :class:`tuner.train.TrialInterrupted` when ``should_stop()`` turns True. A
        failed trial's reason ends with its log's path.
        """
        role, cfg = search.trial_config(trial, space, settings)
        settings = search.trial_settings(trial, settings)

        def report(step: int, value: float) -> bool:
            trial.report(value, step)
            return search.prunable(role) and trial.should_prune()

        result = self.runner.run_trial(
            self.program,
            cfg,
            settings,
            number=trial.number,
            report=report,
            should_stop=should_stop,
            log_name=f"{self.log_prefix}trial-{trial.number}",
        )
        run = self.runner.last_run
        if run is not None:
            trial.set_user_attr("log", str(run.log_path))
            trial.set_user_attr("pid", run.pid)  # checkable: the child is gone after
        outcome = record_result(trial, result)
        if outcome.state == TrialState.FAIL and run is not None:
            outcome = replace(outcome, reason=f"{outcome.reason}\n(log: {run.log_path})")
        return outcome


def train_program_trials(
    trials: Sequence[optuna.Trial],
    runner: ProgramRunner,
    program: Program,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
) -> list[TrialOutcome]:
    """The asked trials, one child process after the other, in order (the worker's call)."""
    return ProgramTrainer(runner, program)(trials, None, settings, space, should_stop)
