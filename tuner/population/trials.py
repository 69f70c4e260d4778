"""Asked Optuna trials, trained together: the population batch trainer.

``train_population`` has the signature of :func:`tuner.batch.train_trials` and does
what it does — each trial gets its role and configuration, reports every evaluation to the
pruner once its warmup is over, and has its outcome, curve, reason and diagnostics recorded —
but trains the trials as one vmapped population. The caller asks the trials (the study's TPE
sampler is a constant liar, so K trials asked at once differ) and tells their outcomes.

A workload that cannot be vmapped (``vmappable = False``, or a model that fails the probe of
:func:`tuner.population.can_vmap`: dropout, random ops, ``.item()`` or data-dependent branches
in ``forward``) falls back to one trial at a time, with one warning per workload and process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import optuna

from tuner import search
from tuner.batch import record_result, train_trials
from tuner.driver import TrialOutcome
from tuner.population.stacked import can_vmap
from tuner.population.trainer import run_population
from tuner.space import ResolvedSpace
from tuner.train import StopFn, TrainSettings
from tuner.workloads.base import Workload

log = logging.getLogger(__name__)

_VMAP_PROBES: dict[str, tuple[bool, str]] = {}  # workload name -> can_vmap's answer


def population_support(workload: Workload) -> tuple[bool, str]:
    """``can_vmap(workload)``, probed once per workload name and process; warns on a no."""
    known = _VMAP_PROBES.get(workload.name)
    if known is None:
        known = _VMAP_PROBES[workload.name] = can_vmap(workload)
        if not known[0]:
            log.warning(
                "population training is not possible for workload %r (%s); "
                "its trials run one at a time",
                workload.name,
                known[1],
            )
    return known


def train_population(
    trials: Sequence[optuna.Trial],
    workload: Workload,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None = None,
) -> list[TrialOutcome]:
    """Train the asked trials as one population; one outcome per trial, in order.

    Seeded trials are never pruned, as in the sequential path. Raises
    :class:`tuner.train.TrialInterrupted` when ``should_stop()`` turns True; the caller hands
    every trial back.
    """
    if len(trials) < 2 or not population_support(workload)[0]:
        return train_trials(trials, workload, settings, space, should_stop)
    if not all(search.vmappable(t, settings) for t in trials):  # references, other seeds
        return _mixed(trials, workload, settings, space, should_stop)
    roles, configs = zip(*(search.trial_config(t, space, settings) for t in trials), strict=True)
    for trial in trials:
        trial.set_user_attr("population", len(trials))

    def report(step: int, values: list[float | None]) -> list[bool]:
        prune = []
        for trial, role, value in zip(trials, roles, values, strict=True):
            if value is None:
                prune.append(False)
                continue
            trial.report(value, step)
            prune.append(search.prunable(role) and trial.should_prune())
        return prune

    members = run_population(
        workload, list(configs), settings, report=report, should_stop=should_stop
    )
    return [record_result(t, m) for t, m in zip(trials, members, strict=True)]


def _mixed(
    trials: Sequence[optuna.Trial],
    workload: Workload,
    settings: TrainSettings,
    space: ResolvedSpace,
    should_stop: StopFn | None,
) -> list[TrialOutcome]:
    """The vmappable trials as one population, the others (a reference, a confirmation on a
    seed of its own) one at a time; outcomes in the trials' order."""
    together = [t for t in trials if search.vmappable(t, settings)]
    outcomes = dict(
        zip(
            (t.number for t in together),
            train_population(together, workload, settings, space, should_stop),
            strict=True,
        )
    )
    for t in trials:
        if t.number not in outcomes:
            outcomes[t.number] = train_trials([t], workload, settings, space, should_stop)[0]
    return [outcomes[t.number] for t in trials]
