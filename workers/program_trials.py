"""Asked trials of a program job, trained by the user's program: a batch trainer.

The program counterpart of :func:`tuner.batch.train_trials`: each asked trial gets its role
and configuration from the search, reports every evaluation to the pruner (seeded trials
are never pruned), and has its outcome recorded in its user attrs, as an in-process trial
does; only the training runs in a child process (:class:`workers.program_runner.ProgramRunner`).
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna

from tuner import search
from tuner.batch import record_result
from tuner.driver import TrialOutcome
from tuner.space import ResolvedSpace
from tuner.train import StopFn, TrainSettings
from workers.program_runner import ProgramRunner
from workers.programs import Program


def train_program_trial(
    trial: optuna.Trial,
    runner: ProgramRunner,
    program: Program,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
    log_prefix: str = "",
) -> TrialOutcome:
    """Run ``program`` for one asked trial; does not tell the study.

    Raises :class:`tuner.train.TrialInterrupted` when ``should_stop()`` turns True.
    """
    role, cfg = search.trial_config(trial, space, settings)
    settings = search.trial_settings(trial, settings)

    def report(step: int, value: float) -> bool:
        trial.report(value, step)
        return search.prunable(role) and trial.should_prune()

    result = runner.run_trial(
        program,
        cfg,
        settings,
        number=trial.number,
        report=report,
        should_stop=should_stop,
        log_name=f"{log_prefix}trial-{trial.number}",
    )
    if runner.last_run is not None:
        trial.set_user_attr("log", str(runner.last_run.log_path))
        trial.set_user_attr("pid", runner.last_run.pid)  # checkable: the child is gone after
    return record_result(trial, result)


def train_program_trials(
    trials: Sequence[optuna.Trial],
    runner: ProgramRunner,
    program: Program,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
    log_prefix: str = "",
) -> list[TrialOutcome]:
    """The asked trials, one child process after the other, in order."""
    return [
        train_program_trial(t, runner, program, settings, space, should_stop, log_prefix)
        for t in trials
    ]
