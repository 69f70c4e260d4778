"""The search driver: the budget count, the best trial so far, ask / train / tell."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from pydantic import ValidationError

from tuner import batch, confirm
from tuner.driver import BudgetCount, SearchDriver, TrialOutcome, best_trial, best_value
from tuner.space import ResolvedSpace
from tuner.spec import JobSpec
from tuner.train import TrainSettings, TrialResult

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


# ---------------------------------------------------------------- confirmation on new seeds

PLAN = confirm.ConfirmPlan(seeds=(11, 12), top=2, references=())


def seeded_study() -> optuna.Study:
    """A study whose first trial is the baseline; the rest are sampled (x in [0, 1])."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({}, user_attrs={"role": "baseline"})
    return study


def loss_by_x(trials, workload, settings, space, should_stop=None):  # type: ignore[no-untyped-def]
    """Loss x on the job's seed; a confirmation adds its seed / 100 (the baseline: 0.9)."""
    out = []
    for t in trials:
        x = 0.9 if t.user_attrs.get("of_role", t.user_attrs.get("role")) == "baseline" else (
            t.suggest_float("x", 0.0, 1.0))
        out.append(TrialOutcome(TrialState.COMPLETE, x + int(t.user_attrs.get("seed", 0)) / 100))
    return out


def test_confirmations_fill_the_end_of_the_budget_once_on_new_seeds() -> None:
    study = seeded_study()
    count = SearchDriver(study, 12, plan=PLAN).run(loss_by_x, None, SETTINGS, SPACE)  # type: ignore[arg-type]
    assert count.finished == 12 and len(study.trials) == 12  # the budget, exactly
    searched = [t for t in study.trials if t.user_attrs.get("role") != "confirm"]
    confirms = [t for t in study.trials if t.user_attrs.get("role") == "confirm"]
    assert len(searched) == 12 - PLAN.trials == 6 and len(confirms) == PLAN.trials == 6
    assert all(t.number > s.number for t in confirms for s in searched)  # after the search
    top = sorted((t for t in searched if t.params), key=lambda t: t.value)[:2]
    baseline = study.trials[0]
    expected = {(n, s) for n in (top[0].number, top[1].number, baseline.number) for s in (11, 12)}
    assert {(t.user_attrs["of_trial"], t.user_attrs["seed"]) for t in confirms} == expected
    for t in confirms:  # a confirmation repeats its original's parameters
        assert t.params == study.trials[t.user_attrs["of_trial"]].params
    assert study.user_attrs[confirm.ENQUEUED_ATTR]["seeds"] == [11, 12]


def test_confirmations_wait_for_running_search_trials_and_are_enqueued_once() -> None:
    study = seeded_study()
    small = confirm.ConfirmPlan(seeds=(11,), top=1, references=())  # 2 confirmation trials
    driver, other = SearchDriver(study, 6, plan=small), SearchDriver(study, 6, plan=small)
    asked = driver.ask(driver.owed(*driver.count()))
    assert len(asked) == 4
    last = asked.pop()
    for t in asked:
        driver.tell(t, loss_by_x([t], None, SETTINGS, SPACE)[0])
    assert other.owed(*other.count()) == 0  # one search trial still runs: nothing to hand out
    assert not confirm.enqueued(study)
    driver.tell(last, loss_by_x([last], None, SETTINGS, SPACE)[0])
    assert other.owed(*other.count()) == 2 and confirm.enqueued(study)
    assert driver.owed(*driver.count()) == 2  # the same two, not enqueued again
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 2


def test_an_enqueue_cut_short_is_finished_without_repeating_a_confirmation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection lost after two of the six confirmations were enqueued (the marker not
    yet written): the next lock holder enqueues the other four, and the budget holds."""
    study = seeded_study()
    driver = SearchDriver(study, 12, plan=PLAN)
    asked = driver.ask(driver.owed(*driver.count()))
    assert len(asked) == 12 - PLAN.trials
    for t in asked:
        driver.tell(t, loss_by_x([t], None, SETTINGS, SPACE)[0])
    enqueue, calls = study.enqueue_trial, []

    def cut_after_two(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) > 2:
            raise ConnectionError("server closed the connection unexpectedly")
        enqueue(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(study, "enqueue_trial", cut_after_two)
    with pytest.raises(ConnectionError):
        driver.owed(*driver.count())
    monkeypatch.setattr(study, "enqueue_trial", enqueue)
    assert not confirm.enqueued(study) and len(study.trials) == 12 - PLAN.trials + 2

    count = SearchDriver(study, 12, plan=PLAN).run(loss_by_x, None, SETTINGS, SPACE)  # type: ignore[arg-type]
    assert count.finished == 12 == len(study.trials)  # not 14: nothing confirmed twice
    pairs = [(t.user_attrs["of_trial"], t.user_attrs["seed"]) for t in study.trials
             if t.user_attrs.get("role") == "confirm"]
    assert len(pairs) == len(set(pairs)) == PLAN.trials


def test_without_a_complete_configuration_the_rest_of_the_budget_is_searched() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def diverge(trials, workload, settings, space, should_stop=None):  # type: ignore[no-untyped-def]
        return [TrialOutcome(TrialState.PRUNED, None, "diverged") for _ in trials]

    count = SearchDriver(study, 8, plan=PLAN).run(diverge, None, SETTINGS, SPACE)  # type: ignore[arg-type]
    assert count.finished == 8 and confirm.enqueued(study)
    assert not any(t.user_attrs.get("role") == "confirm" for t in study.trials)


def test_the_plan_follows_the_budget() -> None:
    def spec(**budget: object) -> JobSpec:
        return JobSpec.model_validate({"workload": "digits_mlp", "seed": 3, "budget": budget})

    five = spec(trials=5)
    assert confirm.plan_for(five).trials == 0 and confirm.references_of(five) == ()
    thirty = confirm.plan_for(spec(trials=30))
    assert thirty.seeds == confirm.confirm_seeds(3, 2) and 3 not in thirty.seeds
    assert thirty.trials == 2 * (2 + 1) and thirty.references == ()  # refs: 4 > 10% of 30
    sixty = confirm.plan_for(spec(trials=60))
    assert sixty.references == ("schedulefree", "prodigy") and sixty.trials == 2 * 5
    assert confirm.search_budget(spec(trials=30)) == 24
    assert confirm.plan_for(spec(trials=8, confirm_seeds=1, confirm_top=1)).trials == 2
    with pytest.raises(ValidationError, match="leave fewer than 3"):
        spec(trials=8, confirm_seeds=2, confirm_top=2)


def test_a_confirmation_trains_on_its_own_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TrainSettings] = []

    def fake_run_trial(workload, cfg, settings, *, report=None, should_stop=None):  # type: ignore[no-untyped-def]
        seen.append(settings)
        return TrialResult("complete", 1.0, None, settings.total_steps, [(10, 1.0)])

    monkeypatch.setattr(batch, "run_trial", fake_run_trial)
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={"role": "confirm", "seed": 7919, "of_trial": 0,
                                        "of_role": "baseline"})
    study.enqueue_trial({}, user_attrs={"role": "reference", "reference": "prodigy"})
    first, second = study.ask(), study.ask()
    batch.train_trials([first, second], None, SETTINGS, SPACE)  # type: ignore[arg-type]
    assert seen[0].seed == 7919 and SETTINGS.seed == 0
    assert first.user_attrs["config"]["lr"] == 1e-3  # the baseline's configuration, repeated
    assert seen[1].seed == 0 and not seen[1].collect_diagnostics
    assert second.user_attrs["config"]["optimizer"] == "prodigy"
