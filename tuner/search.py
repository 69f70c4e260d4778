"""The Optuna study: sampler, pruner, first trials, one trial's evaluation, ask/tell.

Workers share a study through Optuna's RDB storage and drive it with ask/tell; ``adamtune
tune`` drives an in-memory (or ``--storage``) study with :func:`run_local_search`.

Budget: a job's budget counts the trials that *finished* — COMPLETE and PRUNED (diverged trials
are pruned). FAILED trials do not count (a worker that died mid-trial must not eat the budget),
but a local search stops once as many trials have failed as the budget allows, so a broken
workload cannot loop forever.

Every trial of a job uses the job's seed for the model and the data order: trials differ only
by their hyperparameters (common random numbers), which makes comparisons far less noisy.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from tuner.lr_range import SweepResult, run_lr_range_test
from tuner.optim import OptimConfig
from tuner.recommend import build_recommendation
from tuner.space import (
    ResolvedSpace,
    resolve_space,
    schedule_suggestion_params,
    sweep_suggestion_params,
)
from tuner.spec import JobSpec
from tuner.train import TrialResult, run_trial
from tuner.workloads import Workload
from tuner.workloads import get as get_workload

log = logging.getLogger(__name__)

ROLE_BASELINE = "baseline"
ROLE_SWEEP = "sweep_suggestion"
ROLE_SCHEDULE = "schedule_suggestion"
ROLE_SEARCH = "search"
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TrialOutcome:
    """What to tell the study about one trial."""

    state: TrialState
    value: float | None
    reason: str | None = None


class StudyConflictError(ValueError):
    """A study of that name exists in the storage for a different job."""


# ---------------------------------------------------------------- sampler, pruner, study


def startup_trials(spec: JobSpec) -> int:
    """Random trials before TPE models the space: a third of the budget, between 3 and 10."""
    return max(3, min(10, spec.budget.trials // 3))


def make_sampler(seed: int, *, n_startup_trials: int = 10) -> optuna.samplers.TPESampler:
    """Seeded multivariate TPE. ``group=True`` lets the baseline (no params) coexist with the
    searched trials without collapsing the joint search space to nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            multivariate=True,
            group=True,
            seed=seed,
            n_startup_trials=n_startup_trials,
            constant_liar=True,  # several workers asking at once should not sample the same point
        )


def make_pruner(spec: JobSpec) -> optuna.pruners.HyperbandPruner:
    """Hyperband from one evaluation interval (at least 1/9 of the budget) to the full trial."""
    steps = spec.budget.steps_per_trial
    min_resource = max(spec.budget.eval_every, math.ceil(steps / 9))
    return optuna.pruners.HyperbandPruner(
        min_resource=min(min_resource, steps), max_resource=steps, reduction_factor=3
    )


def open_study(
    storage: str | optuna.storages.BaseStorage | None,
    study_name: str,
    spec: JobSpec,
    lr_range: dict[str, float] | None,
    *,
    create: bool,
) -> optuna.Study:
    """Create (or load) the job's study. Only the process whose create succeeded enqueues the
    first trials (the baseline, the sweep's suggestion at constant lr and, budget allowing,
    as the mean lr of a decaying schedule), so many processes may call this at once."""
    sampler = make_sampler(spec.seed, n_startup_trials=startup_trials(spec))
    pruner = make_pruner(spec)
    if not create:
        if storage is None:
            raise ValueError(
                "loading a study needs a storage; an in-memory study can only be created"
            )
        return optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        assert storage is not None  # only a shared storage can hold a study already
        return optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
    space = resolve_space(spec, lr_range)
    study.set_user_attr("spec", spec.model_dump(mode="json"))
    study.set_user_attr("lr_range", lr_range)
    study.set_user_attr("space", space.to_dict())
    study.enqueue_trial({}, user_attrs={"role": ROLE_BASELINE})
    if lr_range is not None:
        suggested = float(lr_range["suggested"])
        study.enqueue_trial(
            sweep_suggestion_params(space, suggested), user_attrs={"role": ROLE_SWEEP}
        )
        scheduled = schedule_suggestion_params(space, suggested)
        if scheduled is not None and spec.budget.trials >= 3:
            study.enqueue_trial(scheduled, user_attrs={"role": ROLE_SCHEDULE})
    return study


def finished_trials(study: optuna.Study) -> int:
    """Trials that count toward the budget (COMPLETE + PRUNED)."""
    return len(study.get_trials(deepcopy=False, states=BUDGET_STATES))


# ---------------------------------------------------------------- one trial


def config_from_trial(trial: optuna.Trial, space: ResolvedSpace, spec: JobSpec) -> OptimConfig:
    """Sample one configuration (see :mod:`tuner.space` for the parameterisation)."""
    optimizer = trial.suggest_categorical("optimizer", list(space.optimizers))
    lr = trial.suggest_float("lr", *space.lr, log=True)
    beta1 = trial.suggest_float("beta1", *space.beta1)
    one_minus_beta2 = trial.suggest_float("one_minus_beta2", *space.one_minus_beta2, log=True)
    eps = trial.suggest_float("eps", *space.eps, log=True)
    wd_times_lr = trial.suggest_float("wd_times_lr", *space.wd_times_lr, log=True)
    warmup_fraction = trial.suggest_float("warmup_fraction", *space.warmup_fraction)
    schedule = trial.suggest_categorical("schedule", list(space.schedules))
    return OptimConfig(
        optimizer=str(optimizer),
        lr=lr,
        beta1=beta1,
        beta2=1.0 - one_minus_beta2,
        eps=eps,
        weight_decay=wd_times_lr / lr,
        amsgrad=space.amsgrad,
        warmup_steps=round(warmup_fraction * spec.budget.steps_per_trial),
        schedule=str(schedule),
        floor=spec.lr_floor,
    )


def trial_config(
    trial: optuna.Trial, space: ResolvedSpace, spec: JobSpec
) -> tuple[str, OptimConfig]:
    """The trial's role and configuration; records both in the trial's user attrs."""
    role = str(trial.user_attrs.get("role", ROLE_SEARCH))
    cfg = OptimConfig.baseline() if role == ROLE_BASELINE else config_from_trial(trial, space, spec)
    trial.set_user_attr("role", role)
    trial.set_user_attr("config", cfg.to_dict())
    return role, cfg


def prunable(role: str) -> bool:
    """Only searched trials are pruned. The seeded ones (the baseline, the sweep's two
    suggestions) always run to the end: they are the job's reference points, and a
    population that trains them beside searched trials must not cut them where a job
    that trains them first, one at a time, would not."""
    return role == ROLE_SEARCH


def outcome_of(result: TrialResult) -> TrialOutcome:
    """Map a training result to an Optuna state: diverged trials are pruned, errors fail."""
    if result.state == "complete":
        return TrialOutcome(TrialState.COMPLETE, result.value)
    if result.state in ("pruned", "diverged"):
        return TrialOutcome(TrialState.PRUNED, result.value, result.reason)
    return TrialOutcome(TrialState.FAIL, None, result.reason)


MAX_CURVE_POINTS = 200  # a stored curve is thinned to this many points (the last one kept)


def thin_curve(
    curve: Sequence[tuple[int, float]], limit: int = MAX_CURVE_POINTS
) -> list[list[float]]:
    """At most ``limit`` evenly spaced points of a validation curve, always ending at its end."""
    stride = max(1, math.ceil(len(curve) / limit))
    points = list(curve[::stride])
    if curve and points[-1] != curve[-1]:
        points[-1] = curve[-1]
    return [[int(s), float(v)] for s, v in points]


def record_result(trial: optuna.Trial, result: TrialResult) -> None:
    """Store how the trial ended in its user attrs: outcome, curve, reason, diagnostics."""
    trial.set_user_attr("outcome", result.state)
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("curve", thin_curve(result.curve))
    if result.reason is not None:
        trial.set_user_attr("reason", result.reason)
    if result.diagnostics is not None:
        trial.set_user_attr("diagnostics", result.diagnostics)


def evaluate_trial(
    trial: optuna.Trial,
    workload: Workload,
    spec: JobSpec,
    space: ResolvedSpace,
    *,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> TrialOutcome:
    """Train one asked trial, reporting to the pruner; does not tell the study.

    Seeded trials are never pruned (see :func:`prunable`): the baseline's final loss is the
    number the gain is measured against.
    Raises :class:`tuner.train.TrialInterrupted` when ``should_stop()`` turns True.
    """
    role, cfg = trial_config(trial, space, spec)

    def report(step: int, value: float) -> bool:
        trial.report(value, step)
        return prunable(role) and trial.should_prune()

    result = run_trial(
        workload,
        cfg,
        total_steps=spec.budget.steps_per_trial,
        eval_every=spec.budget.eval_every,
        seed=spec.seed,
        device=device,
        grad_clip=spec.grad_clip,
        report=report,
        should_stop=should_stop,
    )
    record_result(trial, result)
    return outcome_of(result)


def evaluate_trials(
    trials: Sequence[optuna.Trial],
    workload: Workload,
    spec: JobSpec,
    space: ResolvedSpace,
    *,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> list[TrialOutcome]:
    """Evaluate several asked trials, one after the other.
    :func:`tuner.population.evaluate_population` trains them at once instead."""
    return [
        evaluate_trial(t, workload, spec, space, device=device, should_stop=should_stop)
        for t in trials
    ]


def tell(study: optuna.Study, trial: optuna.Trial | int, outcome: TrialOutcome) -> None:
    """Finish the trial in the study (a no-op if e.g. a stale-trial sweep already did)."""
    values = outcome.value if outcome.state == TrialState.COMPLETE else None
    study.tell(trial, values, state=outcome.state, skip_if_finished=True)


# ---------------------------------------------------------------- the local search


BatchEvaluator = Callable[..., list[TrialOutcome]]
Progress = Callable[[str, int, int, "float | None", str], None]


@dataclass
class LocalSearchResult:
    study: optuna.Study
    sweep: SweepResult | None
    space: ResolvedSpace
    recommendation: dict[str, Any]


def default_study_name(spec: JobSpec) -> str:
    """Deterministic (Hyperband's brackets hash the study name, so it must be)."""
    return f"tune-{spec.name or spec.workload}-seed{spec.seed}"


def _stored_sweep(study: optuna.Study, spec: JobSpec) -> SweepResult | None:
    stored = study.user_attrs.get("spec")
    if stored is not None and stored != spec.model_dump(mode="json"):
        raise StudyConflictError(
            f"study {study.study_name!r} already exists in this storage for a different job; "
            "delete it, change the job's name, or use another --storage"
        )
    data = study.user_attrs.get("sweep")
    return SweepResult.from_dict(data) if data else None


def _best_value(study: optuna.Study) -> float | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min((t.value for t in done if t.value is not None), default=None)


def run_local_search(
    spec: JobSpec,
    *,
    device: str | torch.device = "cpu",
    storage: str | optuna.storages.BaseStorage | None = None,
    progress: Progress | None = None,
    study_name: str | None = None,
    evaluate_batch: BatchEvaluator | None = None,
    workload: Workload | None = None,
) -> LocalSearchResult:
    """Sweep, then search until the budget is spent, in this process; resumes a stored study.

    ``workload`` defaults to the registry's ``spec.workload``; ``evaluate_batch`` (the
    population trainer's) replaces :func:`evaluate_trials` for ``spec.population`` > 1.
    """
    workload = workload if workload is not None else get_workload(spec.workload)
    name = study_name or default_study_name(spec)
    names = optuna.study.get_all_study_names(storage) if storage is not None else []
    sweep = None
    if name in names:
        study = open_study(storage, name, spec, None, create=False)
        sweep = _stored_sweep(study, spec)
        lr_range = study.user_attrs.get("lr_range")
    else:
        if spec.sweep.enabled:
            _notify(progress, "sweep", 0, spec.sweep.steps, None, "LR range test")
            sweep = run_lr_range_test(workload, seed=spec.seed, device=device, spec=spec.sweep)
        lr_range = sweep.lr_range if sweep is not None else None
        study = open_study(storage, name, spec, lr_range, create=True)
        if sweep is not None:
            study.set_user_attr("sweep", sweep.to_dict())
    space = resolve_space(spec, lr_range)
    evaluate = evaluate_batch or evaluate_trials
    _search_loop(study, workload, spec, space, evaluate, device, progress)
    rec = build_recommendation(
        study.get_trials(deepcopy=False),
        spec=spec,
        sweep=sweep.to_dict() if sweep else None,
        final=True,
    )
    _notify(
        progress, "done", finished_trials(study), spec.budget.trials, rec["expected_objective"], ""
    )
    return LocalSearchResult(study, sweep, space, rec)


def _search_loop(
    study: optuna.Study,
    workload: Workload,
    spec: JobSpec,
    space: ResolvedSpace,
    evaluate: BatchEvaluator,
    device: str | torch.device,
    progress: Progress | None,
) -> None:
    budget = spec.budget.trials
    while True:
        done = finished_trials(study)
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        if done >= budget or failed >= budget:
            if failed >= budget:
                log.error("stopping: %d trials failed", failed)
            return
        trials = [study.ask() for _ in range(min(spec.population, budget - done))]
        outcomes = evaluate(trials, workload, spec, space, device=device)
        for trial, outcome in zip(trials, outcomes, strict=True):
            tell(study, trial, outcome)
            role = trial.user_attrs.get("role", ROLE_SEARCH)
            detail = f"trial {trial.number} ({role}) {outcome.state.name.lower()}"
            if outcome.value is not None:
                detail += f" loss {outcome.value:.4g}"
            if outcome.reason and outcome.state != TrialState.COMPLETE:
                detail += f": {outcome.reason}"
            _notify(progress, "search", finished_trials(study), budget, _best_value(study), detail)


def _notify(
    progress: Progress | None, phase: str, done: int, total: int, best: float | None, msg: str
) -> None:
    if progress is not None:
        progress(phase, done, total, best, msg)
