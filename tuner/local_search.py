"""``adamtune tune``'s search: the LR range test, then the search loop, in this process.

The study is in memory, or in a ``--storage`` where a later run resumes it. The loop is the
worker's (:class:`tuner.driver.SearchDriver`): the same budget count, ask, tell and best so far.
A program job (the user's own script) has no workload: the caller passes the range test
(a :data:`SweepFn`) and the batch trainer that run the script, which ``adamtune tune``
builds from the worker's program runner (``adamtune/cli/tune_program.py``); this module
never imports ``workers``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from tuner import confirm
from tuner.batch import train_trials
from tuner.driver import BatchTrainer, ProgressCallback, SearchDriver
from tuner.lr_range import SweepResult, run_lr_range_test
from tuner.population import train_population
from tuner.population.sizing import PROGRAM_POPULATION, population_for
from tuner.recommend import build_recommendation
from tuner.search import StudyConflictError, default_study_name, open_study
from tuner.space import ResolvedSpace, resolve_space
from tuner.spec import JobSpec
from tuner.train import TrainSettings
from tuner.workloads import Workload
from tuner.workloads import get as get_workload

SweepFn = Callable[[JobSpec], SweepResult]
"""``spec -> its LR range test``: the in-process test of a workload, or a program's run."""


@dataclass
class LocalSearchResult:
    study: optuna.Study
    sweep: SweepResult | None
    space: ResolvedSpace
    recommendation: dict[str, Any]


def default_trainer(population: int) -> BatchTrainer:
    """The population trainer for a population > 1, else one trial at a time."""
    return train_population if population > 1 else train_trials


def _in_process_sweep(workload: Workload, device: str | torch.device) -> SweepFn:
    def sweep(spec: JobSpec) -> SweepResult:
        return run_lr_range_test(workload, seed=spec.seed, device=device, spec=spec.sweep)

    return sweep


def _stored_sweep(study: optuna.Study, spec: JobSpec) -> SweepResult | None:
    stored = study.user_attrs.get("spec")
    if stored is not None and stored != spec.model_dump(mode="json"):
        raise StudyConflictError(
            f"study {study.study_name!r} already exists in this storage for a different job; "
            "delete it, change the job's name, or use another --storage"
        )
    data = study.user_attrs.get("sweep")
    return SweepResult.from_dict(data) if data else None


def _open(
    spec: JobSpec,
    sweep_fn: SweepFn,
    storage: str | optuna.storages.BaseStorage | None,
    name: str,
    progress: ProgressCallback | None,
) -> tuple[optuna.Study, SweepResult | None, dict[str, float] | None]:
    """Load the stored study (and its sweep), or run the sweep and create the study."""
    if storage is not None and name in optuna.study.get_all_study_names(storage):
        study = open_study(storage, name, spec, None, create=False)
        return study, _stored_sweep(study, spec), study.user_attrs.get("lr_range")
    sweep = None
    if spec.sweep.enabled:
        if progress is not None:
            progress("sweep", 0, spec.sweep.steps, None, "LR range test")
        sweep = sweep_fn(spec)
    lr_range = sweep.lr_range if sweep is not None else None
    study = open_study(storage, name, spec, lr_range, create=True)
    if sweep is not None:
        study.set_user_attr("sweep", sweep.to_dict())
    return study, sweep, lr_range


def run_local_search(
    spec: JobSpec,
    *,
    device: str | torch.device = "cpu",
    storage: str | optuna.storages.BaseStorage | None = None,
    progress: ProgressCallback | None = None,
    study_name: str | None = None,
    train: BatchTrainer | None = None,
    workload: Workload | None = None,
    sweep: SweepFn | None = None,
) -> LocalSearchResult:
    """Sweep, then search until the budget is spent, in this process; resumes a stored study.

    A workload job: ``workload`` defaults to the registry's ``spec.workload``, ``sweep`` to
    the in-process range test on ``device``, ``train`` to :func:`default_trainer` (batches of
    ``spec.population`` trials either way, measured on ``device`` for ``population: auto``).
    A program job needs ``sweep`` and ``train`` (they run the script) and trains one trial
    at a time; the trainer is called with ``workload=None``.
    Raises :class:`tuner.recommend.NoCompletedTrialsError` when no trial completed.
    """
    if spec.program is not None:
        if sweep is None or train is None:
            raise ValueError(f"program job {spec.program!r}: pass the sweep and train that run it")
        workload = None
    else:
        workload = workload if workload is not None else get_workload(spec.workload or "")
        sweep = sweep or _in_process_sweep(workload, device)
    name = study_name or default_study_name(spec)
    study, sweep_result, lr_range = _open(spec, sweep, storage, name, progress)
    space = resolve_space(spec, lr_range)
    settings = TrainSettings.from_spec(spec, device)
    population = (  # measured here for "auto"
        PROGRAM_POPULATION if workload is None else population_for(spec, workload, settings)
    )
    driver = SearchDriver(
        study, spec.budget.trials, log_level=logging.DEBUG, plan=confirm.plan_for(spec),
        tags=population.trial_attrs(settings),
    )
    count = driver.run(
        train or default_trainer(population.size),
        workload,
        settings,
        space,
        batch=population.size,
        progress=progress,
    )
    rec = build_recommendation(
        study.get_trials(deepcopy=False),
        spec=spec,
        sweep=sweep_result.to_dict() if sweep_result else None,
        final=True,
    )
    if progress is not None:
        progress("done", count.finished, count.total, rec["expected_objective"], "")
    return LocalSearchResult(study, sweep_result, space, rec)
