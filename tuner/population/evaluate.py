"""Asked Optuna trials, trained together: the search's population evaluator.

``evaluate_population`` has the signature of :func:`tuner.search.evaluate_trials` and does
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
from collections.abc import Callable, Sequence

import optuna
import torch

from tuner import search
from tuner.population.stacked import can_vmap
from tuner.population.trainer import PopulationMemberResult, train_population
from tuner.space import ResolvedSpace
from tuner.spec import JobSpec
from tuner.train import TrialResult
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


def _as_trial_result(member: PopulationMemberResult) -> TrialResult:
    return TrialResult(
        member.state, member.value, member.reason, member.steps, member.curve, member.diagnostics
    )


def evaluate_population(
    trials: Sequence[optuna.Trial],
    workload: Workload,
    spec: JobSpec,
    space: ResolvedSpace,
    *,
    device: str | torch.device = "cpu",
    should_stop: Callable[[], bool] | None = None,
) -> list[search.TrialOutcome]:
    """Train the asked trials as one population; one outcome per trial, in order.

    The baseline trial is never pruned, as in the sequential path. Raises
    :class:`tuner.population.PopulationInterrupted` when ``should_stop()`` turns True; the
    caller hands every trial back.
    """
    if len(trials) < 2 or not population_support(workload)[0]:
        return search.evaluate_trials(
            trials, workload, spec, space, device=device, should_stop=should_stop
        )
    roles, configs = zip(*(search.trial_config(t, space, spec) for t in trials), strict=True)
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

    members = train_population(
        workload,
        list(configs),
        total_steps=spec.budget.steps_per_trial,
        eval_every=spec.budget.eval_every,
        seed=spec.seed,
        device=device,
        grad_clip=spec.grad_clip,
        report=report,
        should_stop=should_stop,
    )
    outcomes = []
    for trial, member in zip(trials, members, strict=True):
        result = _as_trial_result(member)
        search.record_result(trial, result)
        outcomes.append(search.outcome_of(result))
    return outcomes
