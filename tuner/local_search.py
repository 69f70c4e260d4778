"""``adamtune tune``'s search: the LR range test, then the search loop, in this process.

The study is in memory, or in a ``--storage`` where a later run resumes it. The loop is the
worker's (:class:`tuner.driver.SearchDriver`): the same budget count, ask, tell and best so far.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from tuner import confirm
from tuner.batch import train_trials
from tuner.driver import BatchTrainer, ProgressCallback, SearchDriver
from tuner.lr_range import SweepResult, run_lr_range_test
from tuner.population import train_population
from tuner.population.sizing import population_for
from tuner.recommend import build_recommendation
from tuner.search import StudyConflictError, default_study_name, open_study
from tuner.space import ResolvedSpace, resolve_space
from tuner.spec import JobSpec
from tuner.train import TrainSettings
from tuner.workloads import Workload
from tuner.workloads import get as get_workload


@dataclass
class LocalSearchResult:
    study: optuna.Study
    sweep: SweepResult | None
    space: ResolvedSpace
    recommendation: dict[str, Any]


def default_trainer(population: int) -> BatchTrainer:
    """The population trainer for a population > 1, else one trial at a time."""
    return train_population if population > 1 else train_trials


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
    workload: Workload,
    storage: str | optuna.storages.BaseStorage | None,
    name: str,
    device: str | torch.device,
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
        sweep = run_lr_range_test(workload, seed=spec.seed, device=device, spec=spec.sweep)
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
) -> LocalSearchResult:
    """Sweep, then search until the budget is spent, in this process; resumes a stored study.

    ``workload`` defaults to the registry's ``spec.workload``, ``train`` to
    :func:`default_trainer` (batches of ``spec.population`` trials either way, measured on
    ``device`` for ``population: auto``).
    Raises :class:`tuner.recommend.NoCompletedTrialsError` when no trial completed.
    """
    workload = workload if workload is not None else get_workload(spec.workload)
    name = study_name or default_study_name(spec)
    study, sweep, lr_range = _open(spec, workload, storage, name, device, progress)
    space = resolve_space(spec, lr_range)
    settings = TrainSettings.from_spec(spec, device)
    population = population_for(spec, workload, settings)  # measured here for "auto"
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
        sweep=sweep.to_dict() if sweep else None,
        final=True,
    )
    if progress is not None:
        progress("done", count.finished, count.total, rec["expected_objective"], "")
    return LocalSearchResult(study, sweep, space, rec)
