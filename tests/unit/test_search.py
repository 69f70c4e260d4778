"""Search space, study creation (racing on SQLite/PostgreSQL too), trials, local search."""

from __future__ import annotations

import math
import threading

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState
from test_train import LinearWorkload

from tuner.batch import thin_curve, train_trial, train_trials
from tuner.driver import BudgetCount, SearchDriver, TrialOutcome
from tuner.local_search import run_local_search
from tuner.recommend import NoCompletedTrialsError
from tuner.search import (
    ROLE_BASELINE,
    ROLE_LADDER,
    ROLE_REFERENCE,
    ROLE_SCHEDULE,
    ROLE_SWEEP,
    SEEDED_ATTR,
    StudyConflictError,
    config_from_trial,
    make_pruner,
    open_study,
    seeded_trials,
)
from tuner.space import DEFAULT_LR, ResolvedSpace, resolve_space, schedule_suggestion_params
from tuner.spec import JobSpec
from tuner.train import TrainSettings
from tuner.workloads import Workload, get

LR_RANGE = {"low": 1e-3, "suggested": 4e-3, "high": 3e-2}
TINY = {
    "workload": "regression_mlp",
    "budget": {"trials": 5, "steps_per_trial": 30, "eval_every": 10},
    "sweep": {"steps": 20},
}


def job(**overrides: object) -> JobSpec:
    return JobSpec.model_validate({**TINY, **overrides})


def settings(spec: JobSpec) -> TrainSettings:
    return TrainSettings.from_spec(spec)


def train_and_tell(
    study: optuna.Study, workload: Workload, spec: JobSpec, space: ResolvedSpace
) -> TrialOutcome:
    """One ask / train / tell through the search driver."""
    driver = SearchDriver(study, spec.budget.trials)
    (trial,) = driver.ask(1)
    outcome = train_trial(trial, workload, settings(spec), space)
    driver.tell(trial, outcome)
    return outcome


def finished(study: optuna.Study) -> int:
    return BudgetCount.of(study.get_trials(deepcopy=False), 0).finished


# ---------------------------------------------------------------- space


def test_defaults_search_two_decades_either_side_of_the_sweeps_suggestion() -> None:
    space = resolve_space(job(), LR_RANGE)
    assert space.lr == pytest.approx((4e-5, 0.4)) and space.lr_ref == 4e-3
    assert space.optimizers == ("adam", "adamw") and space.schedules == (
        "constant",
        "linear",
        "cosine",
    )
    assert space.beta1 == (0.8, 0.99) and space.one_minus_beta2 == (1e-4, 1e-1)
    assert space.eps == (1e-10, 1e-6) and space.warmup_fraction == (0.0, 0.2)
    assert resolve_space(job(), LR_RANGE) == space  # deterministic: every worker builds the same


def test_without_sweep_the_lr_range_is_the_default() -> None:
    space = resolve_space(job(), None)
    assert space.lr == DEFAULT_LR and space.lr_ref == pytest.approx(
        math.sqrt(DEFAULT_LR[0] * DEFAULT_LR[1])
    )


def test_presets_narrow_the_space() -> None:
    t = resolve_space(job(preset="transformer"), LR_RANGE)
    assert (
        t.optimizers == ("adamw",)
        and t.one_minus_beta2 == (0.01, 0.05)
        and t.warmup_fraction[0] >= 0.02
    )
    assert resolve_space(job(preset="finetune"), LR_RANGE).lr == (1e-5, 1e-4)
    assert resolve_space(job(preset="gan"), LR_RANGE).beta1 == (0.0, 0.6)
    assert set(resolve_space(job(preset="vision"), LR_RANGE).schedules) <= {"cosine", "linear"}


def test_the_jobs_search_wins_over_the_preset() -> None:
    spec = job(
        preset="transformer",
        search={
            "optimizers": ["adam", "adamw"],
            "lr": {"low": 1e-4, "high": 1e-2},
            "amsgrad": True,
        },
    )
    space = resolve_space(spec, LR_RANGE)
    assert space.optimizers == ("adam", "adamw") and space.lr == (1e-4, 1e-2) and space.amsgrad
    assert space.one_minus_beta2 == (0.01, 0.05)  # the preset's, not named by the job
    assert space.lr_ref == 4e-3


def test_config_from_trial_parameterisation() -> None:
    space = ResolvedSpace(lr=(1e-4, 1e-1), lr_ref=1e-3)
    params = {
        "optimizer": "adamw",
        "lr": 2e-3,
        "beta1": 0.9,
        "one_minus_beta2": 0.02,
        "eps": 1e-9,
        "wd_times_lr": 1e-4,
        "warmup_fraction": 0.1,
        "schedule": "cosine",
    }
    cfg = config_from_trial(FixedTrial(params), space, settings(job(lr_floor=0.1)))
    assert cfg.optimizer == "adamw" and cfg.lr == 2e-3 and cfg.beta2 == pytest.approx(0.98)
    assert cfg.weight_decay == pytest.approx(0.05)  # wd_times_lr / lr
    assert cfg.warmup_steps == 3 and cfg.schedule == "cosine" and cfg.floor == 0.1


def test_pruner_spans_the_trial() -> None:
    pruner = make_pruner(job(budget={"trials": 5, "steps_per_trial": 900, "eval_every": 50}))
    assert pruner._min_resource == 100 and pruner._max_resource == 900


# ---------------------------------------------------------------- study and trials


def test_open_study_enqueues_baseline_then_sweep_then_schedule_suggestion() -> None:
    spec = job()
    study = open_study(None, "s", spec, LR_RANGE, create=True)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert (
        study.user_attrs["lr_range"] == LR_RANGE
        and study.user_attrs["spec"]["workload"] == "regression_mlp"
    )
    first, second, third = study.ask(), study.ask(), study.ask()
    assert first.user_attrs["role"] == ROLE_BASELINE and first.params == {}
    assert second.user_attrs["role"] == ROLE_SWEEP
    space = resolve_space(spec, LR_RANGE)
    cfg = config_from_trial(second, space, settings(spec))
    assert cfg.lr == 4e-3 and cfg.optimizer == "adam" and cfg.schedule == "constant"
    assert cfg.warmup_steps == 0
    # The sweep's lr as the mean of a decaying schedule: twice as high a peak, a short warmup.
    assert third.user_attrs["role"] == ROLE_SCHEDULE
    cfg = config_from_trial(third, space, settings(spec))
    assert cfg.lr == pytest.approx(8e-3) and cfg.schedule == "cosine" and cfg.optimizer == "adam"
    assert cfg.warmup_steps == round(0.05 * spec.budget.steps_per_trial)


def test_schedule_suggestion_stays_inside_the_space_and_needs_a_decaying_schedule() -> None:
    narrow = job(search={"lr": {"low": 1e-3, "high": 5e-3}, "schedules": ["linear", "constant"],
                         "warmup_fraction": {"low": 0.1, "high": 0.2}})
    params = schedule_suggestion_params(resolve_space(narrow, LR_RANGE), 4e-3)
    assert params is not None
    assert params["lr"] == 5e-3 and params["schedule"] == "linear"
    assert params["warmup_fraction"] == 0.1
    constant_only = resolve_space(job(search={"schedules": ["constant"]}), LR_RANGE)
    assert schedule_suggestion_params(constant_only, 4e-3) is None
    # A budget of two trials holds only the baseline and the sweep's suggestion.
    two = job(budget={"trials": 2, "steps_per_trial": 30, "eval_every": 10})
    small = open_study(None, "s2", two, LR_RANGE, create=True)
    assert [t.user_attrs["role"] for t in small.get_trials(deepcopy=False)] == [
        ROLE_BASELINE, ROLE_SWEEP
    ]


def test_racing_creators_enqueue_the_first_trials_once(db_url: str) -> None:
    optuna.storages.RDBStorage(db_url)  # Optuna's tables exist before the race
    spec = job()
    errors: list[BaseException] = []

    def create() -> None:
        try:
            open_study(db_url, "race", spec, LR_RANGE, create=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    trials = optuna.load_study(study_name="race", storage=db_url).trials
    assert sorted(t.user_attrs["role"] for t in trials) == sorted(
        [ROLE_BASELINE, ROLE_SWEEP, ROLE_SCHEDULE, ROLE_LADDER, ROLE_LADDER]
    )


class PruneEverything(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_baseline_is_never_pruned_and_search_trials_not_before_warmup() -> None:
    spec = job(search={"warmup_fraction": {"low": 0.5, "high": 0.6}})
    space = resolve_space(spec, LR_RANGE)
    study = optuna.create_study(pruner=PruneEverything())
    study.enqueue_trial({}, user_attrs={"role": ROLE_BASELINE})
    w = get("regression_mlp")
    for _ in range(2):
        train_and_tell(study, w, spec, space)
    baseline, searched = study.trials
    assert baseline.state == TrialState.COMPLETE and baseline.user_attrs["config"]["lr"] == 1e-3
    assert searched.state == TrialState.PRUNED
    assert min(searched.intermediate_values) >= searched.user_attrs["config"]["warmup_steps"]
    assert "curve" in baseline.user_attrs and "diagnostics" in baseline.user_attrs


def test_seeded_trials_run_to_the_end_and_only_searched_trials_are_pruned() -> None:
    spec = job()
    study = open_study(None, "seeded", spec, LR_RANGE, create=True)
    study.pruner = PruneEverything()
    space = resolve_space(spec, LR_RANGE)
    w = get("regression_mlp")
    for _ in range(6):
        train_and_tell(study, w, spec, space)
    roles = [(t.user_attrs["role"], t.state) for t in study.trials]
    assert roles == [
        (ROLE_BASELINE, TrialState.COMPLETE),
        (ROLE_SWEEP, TrialState.COMPLETE),
        (ROLE_SCHEDULE, TrialState.COMPLETE),
        (ROLE_LADDER, TrialState.COMPLETE),
        (ROLE_LADDER, TrialState.COMPLETE),
        ("search", TrialState.PRUNED),
    ]


def test_diverged_trials_are_pruned_and_failures_fail_with_reasons() -> None:
    spec = job(
        search={"lr": {"low": 1e-3, "high": 1e-2}, "warmup_fraction": {"low": 0.0, "high": 0.01}}
    )
    space = resolve_space(spec, None)
    study = optuna.create_study()
    outcome = train_and_tell(study, LinearWorkload(poison_at=3), spec, space)
    train_and_tell(study, LinearWorkload(broken=True), spec, space)
    diverged, failed = study.trials
    assert outcome.state == TrialState.PRUNED and outcome.reason
    assert diverged.state == TrialState.PRUNED and "non-finite" in diverged.user_attrs["reason"]
    assert diverged.user_attrs["outcome"] == "diverged"
    assert (
        failed.state == TrialState.FAIL and "model factory exploded" in failed.user_attrs["reason"]
    )
    assert finished(study) == 1


# ---------------------------------------------------------------- local search


def test_local_search_spends_the_budget_and_is_reproducible() -> None:
    spec = job()
    first = run_local_search(spec)
    assert finished(first.study) == spec.budget.trials
    assert (
        first.sweep is not None
        and first.study.user_attrs["sweep"]["lr_range"] == first.sweep.lr_range
    )
    roles = [t.user_attrs["role"] for t in first.study.trials[:3]]
    assert roles == [ROLE_BASELINE, ROLE_SWEEP, ROLE_SCHEDULE]
    second = run_local_search(spec)
    assert second.recommendation == first.recommendation
    assert [t.params for t in second.study.trials] == [t.params for t in first.study.trials]


def test_local_search_resumes_a_stored_study_and_refuses_another_job(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = job(budget={"trials": 3, "steps_per_trial": 20, "eval_every": 10})
    run_local_search(spec, storage=url)
    again = run_local_search(spec, storage=url)  # budget already spent: nothing new runs
    assert len(again.study.trials) == 3 and again.sweep is not None
    other = job(budget={"trials": 4, "steps_per_trial": 20, "eval_every": 10})
    with pytest.raises(StudyConflictError, match="different job"):
        run_local_search(other, storage=url)


def test_population_seam_gets_batches_of_trials() -> None:
    sizes: list[int] = []

    def batch(trials, workload, settings, space, should_stop=None):  # type: ignore[no-untyped-def]
        sizes.append(len(trials))
        return train_trials(trials, workload, settings, space, should_stop)

    spec = job(population=2, sweep={"enabled": False})
    run_local_search(spec, train=batch)
    assert sizes == [2, 2, 1]


def test_a_workload_that_always_fails_stops_the_search() -> None:
    spec = job(
        sweep={"enabled": False}, budget={"trials": 3, "steps_per_trial": 10, "eval_every": 5}
    )
    progress: list[tuple[str, str]] = []
    with pytest.raises(NoCompletedTrialsError):
        run_local_search(
            spec,
            workload=LinearWorkload(broken=True),
            progress=lambda phase, done, total, best, msg: progress.append((phase, msg)),
        )
    assert len(progress) == 3 and all("fail" in msg for _, msg in progress)


def test_stored_curves_are_thinned_but_keep_their_end() -> None:
    curve = [(i, 1.0 / i) for i in range(1, 1001)]
    thinned = thin_curve(curve, limit=200)
    assert len(thinned) == 200 and thinned[0] == [1, 1.0] and thinned[-1] == [1000, 1.0 / 1000]
    assert thin_curve(curve[:5]) == [[s, v] for s, v in curve[:5]]


# ---------------------------------------------------------------- tuning-free references


def test_references_build_their_own_optimizers_and_schedule_free_evaluates_averaged() -> None:
    import schedulefree
    import torch
    from prodigyopt import Prodigy

    from tuner.optim import OptimConfig, build_optimizer, evaluation_weights

    model = torch.nn.Linear(3, 1)
    sf = build_optimizer(model, OptimConfig.reference("schedulefree"))
    assert isinstance(sf, schedulefree.AdamWScheduleFree) and sf.param_groups[0]["lr"] == 0.0025
    for _ in range(3):
        sf.zero_grad()
        model(torch.ones(4, 3)).pow(2).mean().backward()
        sf.step()
    trained = model.weight.detach().clone()
    with evaluation_weights(sf):
        averaged = model.weight.detach().clone()
    assert not torch.equal(trained, averaged)  # eval() moved to the averaged weights ...
    assert torch.equal(model.weight.detach(), trained)  # ... and train() moved back
    prodigy = OptimConfig.reference("prodigy")
    assert isinstance(build_optimizer(model, prodigy), Prodigy) and prodigy.schedule == "cosine"
    with pytest.raises(ValueError, match="'schedulefree' or 'prodigy'"):
        OptimConfig.reference("lion")


def test_references_are_seeded_by_default_from_15_trials_and_can_be_turned_off() -> None:
    spec = job(budget={"trials": 20, "steps_per_trial": 30, "eval_every": 10})
    space = resolve_space(spec, LR_RANGE)
    refs = [a.get("reference") for _, a in seeded_trials(spec, space, LR_RANGE)
            if a["role"] == ROLE_REFERENCE]
    assert refs == ["schedulefree", "prodigy"]
    off = job(budget={"trials": 20, "steps_per_trial": 30, "eval_every": 10}, references=[])
    assert all(a["role"] != ROLE_REFERENCE for _, a in seeded_trials(off, space, LR_RANGE))
    assert not any(a["role"] == ROLE_REFERENCE for _, a in seeded_trials(job(), space, LR_RANGE))


def test_a_setup_cut_short_is_finished_once_by_a_resuming_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection lost after the second first trial was enqueued: a plain load leaves the
    study short of its seeded trials; a resuming caller (the sweep's lease holder) finishes
    the setup, enqueuing each missing trial once, and a second resume changes nothing."""
    storage = optuna.storages.InMemoryStorage()
    spec = job()
    enqueue, calls = optuna.Study.enqueue_trial, []

    def cut_after_two(self: optuna.Study, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) > 2:
            raise ConnectionError("server closed the connection unexpectedly")
        enqueue(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.Study, "enqueue_trial", cut_after_two)
    with pytest.raises(ConnectionError):
        open_study(storage, "cut", spec, LR_RANGE, create=True)
    monkeypatch.setattr(optuna.Study, "enqueue_trial", enqueue)

    plain = open_study(storage, "cut", spec, LR_RANGE, create=True)
    assert len(plain.trials) == 2 and SEEDED_ATTR not in plain.user_attrs  # not finished
    for _ in range(2):
        study = open_study(storage, "cut", spec, LR_RANGE, create=True, resume=True)
    roles = [t.user_attrs["role"] for t in study.trials]
    assert roles == [ROLE_BASELINE, ROLE_SWEEP, ROLE_SCHEDULE, ROLE_LADDER, ROLE_LADDER]
    assert study.user_attrs[SEEDED_ATTR] == 5 and study.user_attrs["lr_range"] == LR_RANGE
