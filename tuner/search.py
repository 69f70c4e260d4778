"""The Optuna study of a job: sampler, pruner, the seeded first trials, sampled configurations.

Workers share a study through Optuna's RDB storage and drive it with ask/tell; ``adamtune
tune`` drives an in-memory (or ``--storage``) study. Both go through one loop,
:class:`tuner.driver.SearchDriver` (the budget, ask, tell, best so far); the trials it asks are
trained by a batch trainer (:func:`tuner.batch.train_trials`, one at a time, or
:func:`tuner.population.train_population`, K at once).

Every search trial of a job uses the job's seed for the model and the data order: trials
differ only by their hyperparameters (common random numbers), which makes comparisons far less
noisy. Confirmation trials (:mod:`tuner.confirm`) re-run the best ones on other seeds.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import replace
from typing import Any

import optuna

from tuner.confirm import (
    ROLE_BASELINE,
    ROLE_CONFIRM,
    ROLE_LADDER,
    ROLE_REFERENCE,
    ROLE_SCHEDULE,
    ROLE_SEARCH,
    ROLE_SWEEP,
    references_of,
    role_of,
)
from tuner.optim import OptimConfig
from tuner.space import (
    ResolvedSpace,
    ladder_params,
    resolve_space,
    schedule_suggestion_params,
    sweep_suggestion_params,
)
from tuner.spec import JobSpec
from tuner.train import TrainSettings

log = logging.getLogger(__name__)

__all__ = [  # the roles, re-exported where the trials are made
    "ROLE_BASELINE", "ROLE_CONFIRM", "ROLE_LADDER", "ROLE_REFERENCE", "ROLE_SCHEDULE",
    "ROLE_SEARCH", "ROLE_SWEEP",
]


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
    resume: bool = False,
) -> optuna.Study:
    """Create (or load) the job's study. Only the process whose create succeeded enqueues the
    first trials (the baseline, the sweep's suggestion at constant lr and, budget allowing,
    as the mean lr of a decaying schedule), so many processes may call this at once.

    The setup (the study's attributes, then the first trials, then ``seeded`` last) is a
    series of writes. ``resume=True`` is for a caller that alone may set the study up (a
    worker holding the job's sweep lease): if it finds the study without ``seeded``, the
    setup was cut short (its creator died, or lost the database half way), and it finishes
    it, enqueuing only the first trials that are not there yet (nothing else asks a trial
    before the job leaves ``sweeping``, so the count says how far the setup got).
    """
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
        study = optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
        if not resume or SEEDED_ATTR in study.user_attrs:
            return study
        log.warning("study %s: its setup was cut short; finishing it", study_name)
    space = resolve_space(spec, lr_range)
    study.set_user_attr("spec", spec.model_dump(mode="json"))
    study.set_user_attr("lr_range", lr_range)
    study.set_user_attr("space", space.to_dict())
    seeded = seeded_trials(spec, space, lr_range)
    for params, attrs in seeded[len(study.get_trials(deepcopy=False)):]:
        study.enqueue_trial(params, user_attrs=attrs)
    study.set_user_attr(SEEDED_ATTR, len(seeded))
    return study


SEEDED_ATTR = "seeded"  # study user attr: how many first trials; written last in the setup


LADDER_FROM_TRIALS = 5  # the lr ladder is seeded from this budget up


def seeded_trials(
    spec: JobSpec, space: ResolvedSpace, lr_range: dict[str, float] | None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The first trials, as (params, user attrs), in order: the untuned baseline; the sweep's
    suggestion at constant lr; budget allowing, the same as the mean lr of a decaying schedule
    and the lr ladder around it; then the tuning-free references."""
    out: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {"role": ROLE_BASELINE})]
    if lr_range is not None:
        suggested = float(lr_range["suggested"])
        out.append((sweep_suggestion_params(space, suggested), {"role": ROLE_SWEEP}))
        scheduled = schedule_suggestion_params(space, suggested)
        if scheduled is not None and spec.budget.trials >= 3:
            out.append((scheduled, {"role": ROLE_SCHEDULE}))
        if spec.budget.trials >= LADDER_FROM_TRIALS:
            out += [(p, {"role": ROLE_LADDER}) for p in ladder_params(space, suggested)]
    out += [({}, {"role": ROLE_REFERENCE, "reference": name}) for name in references_of(spec)]
    return out


def default_study_name(spec: JobSpec) -> str:
    """Deterministic (Hyperband's brackets hash the study name, so it must be)."""
    return f"tune-{spec.name or spec.target}-seed{spec.seed}"


# ---------------------------------------------------------------- one trial's configuration


def config_from_trial(
    trial: optuna.Trial, space: ResolvedSpace, settings: TrainSettings
) -> OptimConfig:
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
        warmup_steps=round(warmup_fraction * settings.total_steps),
        schedule=str(schedule),
        floor=settings.lr_floor,
    )


def trial_config(
    trial: optuna.Trial, space: ResolvedSpace, settings: TrainSettings
) -> tuple[str, OptimConfig]:
    """The trial's role and configuration; records both in the trial's user attrs. A
    confirmation trial repeats its original's configuration (``of_role``)."""
    role = role_of(trial)
    kind = str(trial.user_attrs.get("of_role", role)) if role == ROLE_CONFIRM else role
    if kind == ROLE_BASELINE:
        cfg = OptimConfig.baseline()
    elif kind == ROLE_REFERENCE:
        cfg = OptimConfig.reference(str(trial.user_attrs["reference"]))
    else:
        cfg = config_from_trial(trial, space, settings)
    trial.set_user_attr("role", role)
    trial.set_user_attr("config", cfg.to_dict())
    return role, cfg


def trial_settings(trial: optuna.Trial, settings: TrainSettings) -> TrainSettings:
    """The job's settings, with the trial's own seed (a confirmation) and without Adam's
    effective-step diagnostics for a reference (its optimizer state is not Adam's)."""
    seed = trial.user_attrs.get("seed")
    if seed is not None and int(seed) != settings.seed:
        settings = replace(settings, seed=int(seed))
    if ROLE_REFERENCE in (role_of(trial), trial.user_attrs.get("of_role")):
        settings = replace(settings, collect_diagnostics=False)
    return settings


def vmappable(trial: optuna.Trial, settings: TrainSettings) -> bool:
    """Whether the trial can train in a population on the job's seed: not a reference
    (Schedule-Free and Prodigy have no vectorised form) nor a trial on a seed of its own."""
    reference = ROLE_REFERENCE in (role_of(trial), trial.user_attrs.get("of_role"))
    return not reference and trial_settings(trial, settings).seed == settings.seed


def prunable(role: str) -> bool:
    """Only searched trials are pruned. The seeded ones (the baseline, the references, the
    sweep's suggestions and ladder) and the confirmations always run to the end: they are the
    job's reference points, and a population that trains them beside searched trials must not
    cut them where a job that trains them first, one at a time, would not."""
    return role == ROLE_SEARCH
