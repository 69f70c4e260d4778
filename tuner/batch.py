"""Asked trials, trained one at a time: the sequential batch trainer, and what a trial records.

A batch trainer takes asked Optuna trials and returns one :class:`tuner.driver.TrialOutcome`
per trial, without telling the study: each trial gets its role and configuration
(:func:`tuner.search.trial_config`), reports every evaluation to the pruner once its warmup is
over (seeded trials are never pruned, :func:`tuner.search.prunable`), and has its outcome,
curve, reason and diagnostics recorded in its user attrs. :func:`train_trials` trains them one
after the other; :func:`tuner.population.train_population` has the same signature and trains
them as one vmapped population.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState

from tuner import search
from tuner.driver import TrialOutcome
from tuner.optim import OptimConfig
from tuner.space import ResolvedSpace
from tuner.train import ReportFn, StopFn, TrainSettings, TrialResult, run_trial
from tuner.workloads.base import Workload

MAX_CURVE_POINTS = 200  # a stored curve is thinned to this many points (the last one kept)


def outcome_of(result: TrialResult) -> TrialOutcome:
    """Map a training result to an Optuna state: diverged trials are pruned, errors fail."""
    if result.state == "complete":
        return TrialOutcome(TrialState.COMPLETE, result.value)
    if result.state in ("pruned", "diverged"):
        return TrialOutcome(TrialState.PRUNED, result.value, result.reason)
    return TrialOutcome(TrialState.FAIL, None, result.reason)


def thin_curve(
    curve: Sequence[tuple[int, float]], limit: int = MAX_CURVE_POINTS
) -> list[list[float]]:
    """At most ``limit`` evenly spaced points of a validation curve, always ending at its end."""
    stride = max(1, math.ceil(len(curve) / limit))
    points = list(curve[::stride])
    if curve and points[-1] != curve[-1]:
        points[-1] = curve[-1]
    return [[int(s), float(v)] for s, v in points]


def record_result(trial: optuna.Trial, result: TrialResult) -> TrialOutcome:
    """Store how the trial ended in its user attrs (outcome, curve, reason, diagnostics);
    return what to tell the study."""
    trial.set_user_attr("outcome", result.state)
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("curve", thin_curve(result.curve))
    if result.reason is not None:
        trial.set_user_attr("reason", result.reason)
    if result.diagnostics is not None:
        trial.set_user_attr("diagnostics", result.diagnostics)
    return outcome_of(result)


RunFn = Callable[[OptimConfig, TrainSettings, ReportFn], TrialResult]
"""``(config, settings, report) -> result``: trains one configuration (in this process, or a
program's child process), reporting each evaluation to ``report`` (True: prune)."""


def run_asked_trial(
    trial: optuna.Trial, space: ResolvedSpace, settings: TrainSettings, run: RunFn
) -> TrialOutcome:
    """Train one asked trial with ``run``: its role and configuration from the search, its
    evaluations reported to the pruner (seeded trials never pruned), its result recorded;
    does not tell the study."""
    role, cfg = search.trial_config(trial, space, settings)
    settings = search.trial_settings(trial, settings)  # a confirmation's seed, a reference's

    def report(step: int, value: float) -> bool:
        trial.report(value, step)
        return search.prunable(role) and trial.should_prune()

    return record_result(trial, run(cfg, settings, report))


def train_trial(
    trial: optuna.Trial,
    workload: Workload,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
) -> TrialOutcome:
    """Train one asked trial, reporting to the pruner; does not tell the study.

    Raises :class:`tuner.train.TrialInterrupted` when ``should_stop()`` turns True.
    """

    def run(cfg: OptimConfig, settings: TrainSettings, report: ReportFn) -> TrialResult:
        return run_trial(workload, cfg, settings, report=report, should_stop=should_stop)

    return run_asked_trial(trial, space, settings, run)


def train_trials(
    trials: Sequence[optuna.Trial],
    workload: Workload,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
) -> list[TrialOutcome]:
    """The sequential batch trainer: the asked trials, one after the other, in order."""
    return [train_trial(t, workload, settings, space, should_stop) for t in trials]
