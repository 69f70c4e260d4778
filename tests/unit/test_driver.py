"""The search driver: the budget count, the best trial so far, ask / train / tell."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tuner.driver import BudgetCount, SearchDriver, TrialOutcome, best_trial, best_value
from tuner.space import ResolvedSpace
from tuner.train import TrainSettings

SPACE = ResolvedSpace(lr=(1e-4, 1e-1), lr_ref=1e-3)
SETTINGS = TrainSettings(10, 5, seed=0)


def frozen(number: int, state: TrialState, value: float | None = None, **system: object):  # type: ignore[no-untyped-def]
    trial = create_trial(
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        system_attrs=dict(system),
    )
    trial.number = number
    return trial


def test_budget_counts_complete_and_pruned_and_not_retried_failures() -> None:
    trials = [
        frozen(0, TrialState.COMPLETE, 1.0),
        frozen(1, TrialState.PRUNED),
        frozen(2, TrialState.FAIL),  # its worker died: retried as trial 4
        frozen(3, TrialState.FAIL),  # failed on its own
        frozen(4, TrialState.WAITING, retry_history=[2]),
        frozen(5, TrialState.RUNNING),
    ]
    count = BudgetCount.of(trials, 5)
    assert (count.finished, count.failed, count.waiting, count.running) == (2, 1, 1, 1)
    assert count.claimed == 4 and count.owed == 2 and not count.done and not count.exhausted
    assert BudgetCount.of(trials[:2], 2).done and BudgetCount.of(trials[:2], 2).owed == 0
    assert BudgetCount.of([frozen(0, TrialState.FAIL)], 1).exhausted


def test_best_trial_is_the_lowest_finite_value_and_the_earliest_on_ties() -> None:
    trials = [
        frozen(0, TrialState.COMPLETE, 0.5),
        frozen(1, TrialState.COMPLETE, 0.2),
        frozen(2, TrialState.COMPLETE, 0.2),
        frozen(3, TrialState.COMPLETE, -math.inf),
        frozen(4, TrialState.PRUNED),
    ]
    best = best_trial(trials)
    assert best is not None and best.number == 1 and best_value(trials) == 0.2
    assert best_trial([frozen(0, TrialState.PRUNED)]) is None and best_value([]) is None


def test_the_loop_spends_the_budget_in_batches_and_tags_every_trial() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    asked: list[int] = []
    batches: list[int] = []
    progress: list[tuple[int, float | None, str]] = []

    def train(trials, workload, settings, space, should_stop=None):  # type: ignore[no-untyped-def]
        assert settings is SETTINGS and space is SPACE
        batches.append(len(trials))
        return [TrialOutcome(TrialState.COMPLETE, float(10 - t.number)) for t in trials]

    driver = SearchDriver(study, 5, tags={"device": "cpu"}, on_ask=lambda t: asked.append(t.number))
    count = driver.run(
        train,
        None,
        SETTINGS,
        SPACE,
        batch=2,  # type: ignore[arg-type]
        progress=lambda phase, done, total, best, msg: progress.append((done, best, msg)),
    )
    assert count.finished == 5 and batches == [2, 2, 1] and asked == [0, 1, 2, 3, 4]
    assert all(t.user_attrs["device"] == "cpu" for t in study.trials)
    assert [p[0] for p in progress] == [1, 2, 3, 4, 5] and progress[-1][1] == 6.0
    assert progress[0][2] == "trial 0 (search) complete loss 10"


def test_the_loop_gives_up_once_failures_reach_the_budget() -> None:
    study = optuna.create_study()

    def train(trials, workload, settings, space, should_stop=None):  # type: ignore[no-untyped-def]
        return [TrialOutcome(TrialState.FAIL, None, "boom") for _ in trials]

    count = SearchDriver(study, 3).run(train, None, SETTINGS, SPACE)  # type: ignore[arg-type]
    assert count.exhausted and len(study.trials) == 3
    assert all(t.state == TrialState.FAIL for t in study.trials)
