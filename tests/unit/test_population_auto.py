"""``population: auto``: the choice over measured timings, the measurement, and a run on CPU."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import torch

from tuner.local_search import run_local_search
from tuner.population import sizing
from tuner.population.sizing import (
    PopulationChoice,
    SizeTiming,
    choose_population,
    member_bytes,
    memory_limit,
    next_size,
    population_for,
    size_population,
)
from tuner.spec import JobSpec
from tuner.train import TrainSettings
from tuner.workloads import get

SETTINGS = TrainSettings(20, 10, seed=0)


def timings(seconds: dict[int, float], peaks: dict[int, int] | None = None) -> list[SizeTiming]:
    return [SizeTiming(k, s, (peaks or {}).get(k)) for k, s in seconds.items()]


def test_doubling_stops_where_throughput_gains_less_than_ten_percent() -> None:
    # member steps/s: 100, 190, 360, 380 (+5.6%): K=8 was the last doubling worth it
    measured = timings({1: 0.01, 2: 2 / 190, 4: 4 / 360, 8: 8 / 380})
    choice = choose_population(measured, limit=1024, memory_cap=None)
    assert choice.size == 4
    assert "K=8 gained +6% throughput over K=4 (less than 10%)" in choice.reason
    assert next_size(choice, 1024, None) is None  # settled: nothing more to measure


def test_a_size_that_loses_throughput_is_not_chosen() -> None:
    choice = choose_population(timings({1: 0.01, 2: 0.03}), limit=64, memory_cap=None)
    assert choice.size == 1 and "K=2 gained -33%" in choice.reason


def test_still_gaining_asks_for_the_next_doubling() -> None:
    choice = choose_population(timings({1: 0.01, 2: 0.01}), limit=64, memory_cap=None)
    assert choice.size == 2 and "still gaining" in choice.reason
    assert next_size(choice, 64, None) == 4
    assert next_size(choice, 3, None) is None  # over the limit
    assert next_size(choice, 64, 3) is None  # does not fit


def test_memory_caps_a_size_that_would_still_gain() -> None:
    measured = timings({1: 0.01, 2: 0.01, 4: 0.01, 8: 0.01})
    choice = choose_population(measured, limit=1024, memory_cap=5)
    assert choice.size == 4
    assert "K=8 does not fit: 5 fit in 50% of free memory" in choice.reason


def test_the_limit_caps_the_choice() -> None:
    choice = choose_population(timings({1: 0.01, 2: 0.01, 4: 0.01}), limit=4, memory_cap=None)
    assert choice.size == 4 and "K=8 is over the limit of 4" in choice.reason


def test_nothing_measured_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one size"):
        choose_population([], limit=8, memory_cap=None)


def test_member_memory_is_the_steepest_growth_between_sizes() -> None:
    measured = timings({1: 1.0, 2: 1.0, 4: 1.0}, {1: 1000, 2: 1300, 4: 2100})
    assert member_bytes(measured) == 400  # (2100 - 1300) / 2
    assert member_bytes(timings({1: 1.0}, {1: 900})) == 900
    assert member_bytes(timings({1: 1.0})) is None
    assert memory_limit(10_000, 400, 0.5) == 12
    assert memory_limit(100, 400, 0.5) == 1  # one member always runs
    assert memory_limit(None, 400, 0.5) is None


def test_a_fixed_population_is_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sizing, "time_population", pytest.fail)
    choice = population_for(
        JobSpec(workload="regression_mlp", population=3), get("regression_mlp"), SETTINGS
    )
    assert choice == PopulationChoice(3, "set by the job")
    assert choice.trial_attrs(SETTINGS) == {"precision": "fp32"}


def test_cpu_sizing_doubles_until_the_gain_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = {1: 0.010, 2: 0.011, 4: 0.013, 8: 0.025, 16: 0.05}  # K=8: +4%
    measured: list[int] = []

    def fake(workload: object, settings: TrainSettings, size: int) -> SizeTiming:
        measured.append(size)
        return SizeTiming(size, seconds[size])

    monkeypatch.setattr(sizing, "time_population", fake)
    choice = size_population(get("regression_mlp"), SETTINGS, limit=1024)
    assert measured == [1, 2, 4, 8] and choice.size == 4
    assert choice.reason.startswith(
        f"population auto on cpu (cpu, {torch.get_num_threads()} thread"
    )
    assert "): K=4; K=8 gained +4% throughput over K=4" in choice.reason
    assert choice.trial_attrs(SETTINGS)["population_reason"] == choice.reason


def test_cpu_sizing_is_capped_by_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        sizing, "time_population", lambda w, s, size: SizeTiming(size, 0.01)
    )  # every doubling doubles throughput
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    choice = size_population(get("regression_mlp"), SETTINGS, limit=1024)
    assert choice.size == sizing.MEMBERS_PER_THREAD
    assert f"over the limit of {sizing.MEMBERS_PER_THREAD}" in choice.reason


def test_a_workload_that_cannot_vmap_gets_one_member() -> None:
    class Dropout:
        name, vmappable = "no_vmap", False

    choice = size_population(Dropout(), SETTINGS)  # type: ignore[arg-type]
    assert choice.size == 1 and "cannot be trained as a population" in choice.reason


def test_measuring_on_this_cpu_times_real_steps() -> None:
    timing = sizing.time_population(get("regression_mlp"), SETTINGS, 2)
    assert timing.size == 2 and timing.seconds_per_step > 0 and timing.peak_bytes is None


def test_tune_with_population_auto_picks_a_size_and_records_why() -> None:
    spec = JobSpec.model_validate(
        {
            "workload": "regression_mlp",
            "population": "auto",
            "budget": {"trials": 4, "steps_per_trial": 20, "eval_every": 10},
            "sweep": {"enabled": False},
        }
    )
    result = run_local_search(spec)
    trials = result.study.trials
    assert len(trials) == 4
    reasons = {t.user_attrs["population_reason"] for t in trials}
    assert len(reasons) == 1
    [reason] = reasons
    assert reason.startswith("population auto on cpu") and "member steps/s" in reason
    assert all(t.user_attrs["precision"] == "fp32" for t in trials)
    assert result.recommendation["precision"] == "fp32"


def test_a_worker_measures_once_per_job_and_records_why_as_an_event(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuner.db import events, jobs
    from tuner.db.engine import transaction
    from tuner.settings import Settings
    from workers.runtime import Identity, Runtime
    from workers.trials import TrialRunner

    measured: list[int] = []

    def fake(workload: object, settings: TrainSettings, size: int) -> SizeTiming:
        measured.append(size)
        return SizeTiming(size, {1: 0.01, 2: 0.01, 4: 0.04}[size])  # K=4 gains nothing

    monkeypatch.setattr(sizing, "time_population", fake)
    runtime = Runtime.open(Settings(database_url=migrated_url), Identity("w1", "cpu"))
    try:
        spec = JobSpec(workload="regression_mlp", population="auto")
        with transaction(runtime.sessions) as s:
            job_id = jobs.create_job(s, spec=spec).id
        ctx = SimpleNamespace(
            job_id=job_id,
            spec=spec,
            workload=get("regression_mlp"),
            study=None,
            total=24,
            program=None,
        )
        runner = TrialRunner(runtime, None, threading.Event())  # type: ignore[arg-type]
        assert runner.batch_size(ctx) == runner.batch_size(ctx) == 2  # type: ignore[arg-type]
        assert measured == [1, 2, 4]  # once per job, not per batch
        tags = runner.driver(ctx).tags  # type: ignore[arg-type]
        assert tags["population_reason"].startswith("population auto on cpu")
        assert tags["precision"] == "fp32" and tags["worker_id"] == "w1"
        with transaction(runtime.sessions) as s:
            recorded = [e for e in events.list_events(s, job_id) if e.kind == "population"]
        assert [(e.message, e.worker_id) for e in recorded] == [(tags["population_reason"], "w1")]
    finally:
        runtime.close()


@pytest.mark.parametrize("value", [0, 2000, "big", 2.5])
def test_a_bad_population_says_both_forms_in_one_message(value: object) -> None:
    from tuner.spec import JobFileError, parse_job

    with pytest.raises(JobFileError) as err:
        parse_job({"workload": "regression_mlp", "population": value})
    assert str(err.value) == (
        "population: must be a whole number from 1 to 1024 (trials trained at once) or 'auto' "
        f"(the worker sizes it to its device); got {value!r}"
    )


def test_population_and_precision_defaults_keep_todays_behaviour() -> None:
    spec = JobSpec(workload="regression_mlp")
    assert (spec.population, spec.precision) == (1, "auto")
    assert JobSpec(workload="regression_mlp", population="auto").population == "auto"
