"""The search with population training: same outcomes as one at a time, distinct asks, fallback."""

from __future__ import annotations

import logging
import math

import optuna
import pytest
from optuna.trial import TrialState
from test_train import LinearWorkload

from tuner.batch import train_trials
from tuner.driver import BudgetCount, SearchDriver
from tuner.local_search import run_local_search
from tuner.population import train_population
from tuner.population import trials as population_trials
from tuner.search import ROLE_BASELINE, make_sampler
from tuner.space import resolve_space
from tuner.spec import JobSpec
from tuner.train import TrainSettings
from tuner.workloads import get

LR_RANGE = {"low": 1e-3, "suggested": 4e-3, "high": 3e-2}
TINY = {
    "workload": "regression_mlp",
    "budget": {"trials": 6, "steps_per_trial": 30, "eval_every": 10},
    "sweep": {"enabled": False},
}
PARAMS = [
    {"optimizer": "adamw", "lr": 3e-3, "beta1": 0.85, "one_minus_beta2": 1e-2, "eps": 1e-8,
     "wd_times_lr": 1e-4, "warmup_fraction": 0.2, "schedule": "cosine"},
    {"optimizer": "adam", "lr": 1e-2, "beta1": 0.9, "one_minus_beta2": 1e-3, "eps": 1e-6,
     "wd_times_lr": 1e-6, "warmup_fraction": 0.0, "schedule": "linear"},
    {"optimizer": "adam", "lr": 8.0, "beta1": 0.9, "one_minus_beta2": 1e-3, "eps": 1e-8,
     "wd_times_lr": 1e-6, "warmup_fraction": 0.0, "schedule": "constant"},
]


def job(**overrides: object) -> JobSpec:
    return JobSpec.model_validate({**TINY, **overrides})


def finished(study: optuna.Study) -> int:
    return BudgetCount.of(study.get_trials(deepcopy=False), 0).finished


def evaluated_study(train, spec: JobSpec, workload=None):  # type: ignore[no-untyped-def]
    """A study with the baseline and PARAMS enqueued, asked at once and told."""
    space = resolve_space(spec, {"low": 1e-4, "suggested": 1e-3, "high": 10.0})
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({}, user_attrs={"role": ROLE_BASELINE})
    for params in PARAMS:
        study.enqueue_trial(params)
    driver = SearchDriver(study, spec.budget.trials)
    trials = driver.ask(1 + len(PARAMS))
    outcomes = train(trials, workload or get(spec.workload), TrainSettings.from_spec(spec), space)
    for trial, outcome in zip(trials, outcomes, strict=True):
        driver.tell(trial, outcome)
    return study


def test_a_population_reaches_the_outcomes_of_one_trial_at_a_time() -> None:
    spec = job()
    together = evaluated_study(train_population, spec).trials
    apart = evaluated_study(train_trials, spec).trials
    for a, b in zip(together, apart, strict=True):
        assert a.state == b.state
        assert a.user_attrs["config"] == b.user_attrs["config"]
        assert a.user_attrs["outcome"] == b.user_attrs["outcome"]
        assert a.user_attrs["steps"] == b.user_attrs["steps"]
        if b.value is not None:
            assert a.value == pytest.approx(b.value, rel=1e-4)
        for step, value in b.intermediate_values.items():
            assert a.intermediate_values[step] == pytest.approx(value, rel=1e-4)
    assert all(t.user_attrs["population"] == 4 for t in together)
    assert "population" not in apart[0].user_attrs
    diverged = together[3]
    assert diverged.state == TrialState.PRUNED and diverged.user_attrs["outcome"] == "diverged"
    assert diverged.user_attrs["reason"]
    assert together[0].user_attrs["role"] == ROLE_BASELINE and together[0].params == {}


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_members_are_pruned_through_the_study_but_never_the_baseline() -> None:
    spec = job(search={"warmup_fraction": {"low": 0.3, "high": 0.4}})
    space = resolve_space(spec, LR_RANGE)
    study = optuna.create_study(pruner=PruneEverything(), sampler=make_sampler(0))
    study.enqueue_trial({}, user_attrs={"role": ROLE_BASELINE})
    driver = SearchDriver(study, spec.budget.trials)
    trials = driver.ask(3)
    outcomes = train_population(
        trials, get("regression_mlp"), TrainSettings.from_spec(spec), space
    )
    for trial, outcome in zip(trials, outcomes, strict=True):
        driver.tell(trial, outcome)
    baseline, *searched = study.trials
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["steps"] == 30
    for trial in searched:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["steps"] < 30
        warmup = trial.user_attrs["config"]["warmup_steps"]
        assert min(trial.intermediate_values) >= warmup


def test_a_local_search_with_a_population_spends_the_budget_on_distinct_trials() -> None:
    spec = job(population=4)
    result = run_local_search(spec)  # the population trainer: spec.population > 1
    study = result.study
    assert finished(study) == spec.budget.trials
    assert [t.user_attrs["population"] for t in study.trials] == [4] * 4 + [2] * 2
    searched = [tuple(sorted(t.params.items())) for t in study.trials if t.params]
    assert len(set(searched)) == len(searched)  # the constant liar keeps asked trials apart
    assert math.isfinite(result.recommendation["expected_objective"])


class NotVmappable(LinearWorkload):
    name = "linear_not_vmappable"
    vmappable = False


def test_a_workload_that_cannot_be_vmapped_runs_one_at_a_time_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    population_trials._VMAP_PROBES.pop(NotVmappable.name, None)
    spec = job(search={"lr": {"low": 1e-3, "high": 1e-2}})
    with caplog.at_level(logging.WARNING, logger="tuner.population.trials"):
        study = evaluated_study(train_population, spec, NotVmappable())
        evaluated_study(train_population, spec, NotVmappable())
    warnings = [r.message for r in caplog.records if "one at a time" in r.getMessage()]
    assert len(warnings) == 1 and "linear_not_vmappable" in caplog.text
    assert all("population" not in t.user_attrs for t in study.trials)
    assert finished(study) == 4
