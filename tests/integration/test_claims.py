"""Worker claims on SQLite and PostgreSQL: sweeps under leases, the search lock, the budget.

Concurrency here is real (threads, each with its own engine and Optuna storage, like
separate worker processes); only training is left out: trials are told at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import select, update

from tuner import search
from tuner.db import claims, events, jobs, recommendations, sweeps
from tuner.db.engine import db_now, make_engine, make_session_factory, transaction
from tuner.db.models import Job, JobEvent
from tuner.driver import BudgetCount
from tuner.settings import Settings
from tuner.spec import parse_job
from tuner.train import TrainSettings
from workers.context import load_context, open_or_create_study
from workers.heartbeat import HeartbeatThread
from workers.runtime import Identity, Runtime, Timing
from workers.sweep import sweep_and_save
from workers.trials import BUSY, FINALISED, NOTHING, TrialRunner

LONG_LEASE = 60.0


@pytest.fixture
def sessions(migrated_url: str) -> Iterator[Any]:
    engine = make_engine(migrated_url)
    yield make_session_factory(engine)
    engine.dispose()


def _submit(sessions: Any, workload: str = "digits_mlp", trials: int = 4,
            budget: dict[str, Any] | None = None, **extra: Any) -> str:
    body = {"workload": workload, "budget": {"trials": trials, "steps_per_trial": 10,
                                             "eval_every": 10, **(budget or {})}, **extra}
    with transaction(sessions) as s:
        return jobs.create_job(s, spec=parse_job(body)).id


def _claim(sessions: Any, worker: str, lease: float = LONG_LEASE) -> Job | None:
    with transaction(sessions) as s:
        return claims.claim_sweep(s, worker, ["digits_mlp"], lease)


def _job(sessions: Any, job_id: str) -> Job:
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_concurrent_claimers_never_get_the_same_sweep(migrated_url: str, sessions: Any) -> None:
    submitted = {_submit(sessions) for _ in range(6)}
    claimed: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        engine = make_engine(migrated_url)
        own = make_session_factory(engine)
        try:
            while (job := _claim(own, name)) is not None:
                claimed.append((job.id, name))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(job_id for job_id, _ in claimed) == sorted(submitted)
    for job_id, worker in claimed:
        job = _job(sessions, job_id)
        assert (job.status, job.sweep_worker_id) == ("sweeping", worker)
        assert job.started_at is not None


def test_a_live_lease_is_not_taken_over(sessions: Any) -> None:
    job_id = _submit(sessions)
    assert _claim(sessions, "a") is not None
    assert _claim(sessions, "b") is None
    with transaction(sessions) as s:
        assert claims.renew_sweep_lease(s, job_id, "a", LONG_LEASE)
        assert not claims.renew_sweep_lease(s, job_id, "b", LONG_LEASE)


def test_an_expired_lease_is_taken_over(sessions: Any) -> None:
    job_id = _submit(sessions)
    first = _claim(sessions, "a", lease=0.05)
    assert first is not None and first.id == job_id
    time.sleep(0.3)
    second = _claim(sessions, "b")
    assert second is not None and second.id == job_id
    assert second.sweep_worker_id == "b"
    with transaction(sessions) as s:
        assert not claims.renew_sweep_lease(s, job_id, "a", LONG_LEASE)
        assert not claims.finish_sweep(s, job_id, "a")
        assert claims.finish_sweep(s, job_id, "b")
        kinds = list(s.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)))
    assert "sweep_takeover" in kinds
    job = _job(sessions, job_id)
    assert (job.status, job.sweep_lease_expires_at) == ("searching", None)


def _expire_sweep_lease(sessions: Any, job_id: str) -> None:
    """What a dead sweeper leaves behind: a lease that ran out a minute ago (database clock)."""
    with transaction(sessions) as s:
        s.execute(update(Job).where(Job.id == job_id)
                  .values(sweep_lease_expires_at=db_now(-60)))


def test_a_sweep_abandoned_too_often_fails_the_job(sessions: Any) -> None:
    """Each worker dies mid-sweep (its lease expires); after the limit the job fails, saying
    how often, by whom and what to check, and nobody claims the sweep again."""
    job_id = _submit(sessions)
    for attempt, worker in enumerate(("w1", "w2", "w3"), start=1):
        with transaction(sessions) as s:
            job = claims.claim_sweep(s, worker, ["digits_mlp"], LONG_LEASE, max_attempts=3)
        assert job is not None and job.id == job_id, f"attempt {attempt}"
        assert (job.sweep_worker_id, job.sweep_attempts) == (worker, attempt)
        _expire_sweep_lease(sessions, job_id)
    later = _submit(sessions)  # another job still gets its sweep claimed
    with transaction(sessions) as s:
        claimed = claims.claim_sweep(s, "w4", ["digits_mlp"], LONG_LEASE, max_attempts=3)
    assert claimed is not None and claimed.id == later
    job = _job(sessions, job_id)
    assert job.status == "failed" and job.sweep_lease_expires_at is None
    assert job.finished_at is not None
    assert job.error is not None
    assert "abandoned 3 times" in job.error and "ADAMTUNE_MAX_SWEEP_ATTEMPTS=3" in job.error
    assert "w1, w2, w3" in job.error and "dmesg" in job.error
    with transaction(sessions) as s:
        failed = [e for e in events.list_events(s, job_id) if e.kind == "failed"]
        assert [e.worker_id for e in failed] == ["w4"]
        # once failed, it is neither claimed nor failed again
        assert claims.claim_sweep(s, "w5", ["digits_mlp"], LONG_LEASE, max_attempts=3) is None
        assert sweeps.fail_abandoned_sweeps(s, 3, "w5") == []


def test_a_live_last_attempt_may_still_finish(sessions: Any) -> None:
    """The limit counts abandoned attempts: the last one, while its lease holds, can finish."""
    job_id = _submit(sessions)
    assert _claim(sessions, "w1") is not None
    _expire_sweep_lease(sessions, job_id)
    with transaction(sessions) as s:
        job = claims.claim_sweep(s, "w2", ["digits_mlp"], LONG_LEASE, max_attempts=2)
        assert job is not None and job.sweep_attempts == 2
        assert claims.claim_sweep(s, "w3", ["digits_mlp"], LONG_LEASE, max_attempts=2) is None
        assert claims.finish_sweep(s, job_id, "w2")
    assert _job(sessions, job_id).status == "searching"


def test_workers_take_the_sweep_attempt_limit_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Timing.from_settings(Settings()).max_sweep_attempts == 3
    monkeypatch.setenv("ADAMTUNE_MAX_SWEEP_ATTEMPTS", "5")
    assert Timing.from_settings(Settings()).max_sweep_attempts == 5


def test_claims_only_workloads_the_worker_advertises(sessions: Any) -> None:
    _submit(sessions, workload="regression_mlp")
    assert _claim(sessions, "a") is None
    with transaction(sessions) as s:
        job = claims.claim_sweep(s, "a", ["regression_mlp"], LONG_LEASE)
    assert job is not None and job.workload == "regression_mlp"


def test_a_cancelled_sweep_cannot_be_finished(sessions: Any) -> None:
    job_id = _submit(sessions)
    assert _claim(sessions, "a") is not None
    with transaction(sessions) as s:
        jobs.request_cancel(s, job_id)
    with transaction(sessions) as s:
        assert not claims.renew_sweep_lease(s, job_id, "a", LONG_LEASE)
        assert not claims.finish_sweep(s, job_id, "a")
        assert claims.job_status(s, job_id) == "cancelled"


def _searching(sessions: Any, **extra: Any) -> str:
    job_id = _submit(sessions, **extra)
    assert _claim(sessions, "sweeper") is not None
    with transaction(sessions) as s:
        assert claims.finish_sweep(s, job_id, "sweeper")
    return job_id


def test_search_lock_is_exclusive_and_expires(sessions: Any) -> None:
    job_id = _searching(sessions)
    with transaction(sessions) as s:
        grant = claims.acquire_search_lock(s, job_id, "a", LONG_LEASE)
        assert isinstance(grant, claims.LockGrant) and not grant.took_over
        assert claims.acquire_search_lock(s, job_id, "b", LONG_LEASE) == claims.LockRefused(
            job_id, searching=True
        )
        assert claims.release_search_lock(s, job_id, "a")
        assert claims.acquire_search_lock(s, job_id, "b", 0.05).held
    time.sleep(0.3)
    with transaction(sessions) as s:
        taken = claims.acquire_search_lock(s, job_id, "c", LONG_LEASE)
        assert isinstance(taken, claims.LockGrant) and taken.took_over_from == "b"
        assert not claims.release_search_lock(s, job_id, "b")
        assert claims.release_search_lock(s, job_id, "c")


def test_no_search_lock_once_the_job_is_cancelled(sessions: Any) -> None:
    job_id = _searching(sessions)
    with transaction(sessions) as s:
        jobs.request_cancel(s, job_id)
    with transaction(sessions) as s:
        refused = claims.acquire_search_lock(s, job_id, "a", LONG_LEASE)
        assert refused == claims.LockRefused(job_id, searching=False)


def test_finalise_happens_exactly_once(sessions: Any) -> None:
    job_id = _searching(sessions)
    progress = claims.Progress(4, 0.1, 0.5)
    results = []
    for n in range(2):
        with transaction(sessions) as s:
            results.append(claims.finalise(s, job_id, progress, {"final": True, "n": n}, f"w{n}"))
    assert results == [True, False]
    with transaction(sessions) as s:
        assert not claims.record_progress(s, job_id, claims.Progress(3, 0.2, 0.5), {"n": -1})
        rec = recommendations.get_recommendation(s, job_id)
        assert rec is not None and rec.final and rec.body["n"] == 0
    job = _job(sessions, job_id)
    assert (job.status, job.trials_completed, job.best_objective) == ("completed", 4, 0.1)
    assert job.finished_at is not None


# ------------------------------------------------------------------ the global budget

HEARTBEAT_S, GRACE_S = 1, 3


def _runtime(url: str, name: str) -> Runtime:
    settings = Settings(database_url=url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                        poll_interval=0.05)
    return Runtime.open(settings, Identity(worker_id=name, device="cpu"))


def _searching_study(url: str, sessions: Any, trials: int, **budget: Any) -> str:
    """A searching job (sweep disabled) whose study exists, as the sweeping worker leaves it."""
    job_id = _submit(sessions, trials=trials, budget=budget, sweep={"enabled": False})
    assert _claim(sessions, "sweeper") is not None
    job = _job(sessions, job_id)
    runtime = _runtime(url, "sweeper")
    open_or_create_study(runtime, job.study_name, parse_job(job.spec), None)
    runtime.close()
    with transaction(sessions) as s:
        assert claims.finish_sweep(s, job_id, "sweeper")
    return job_id


def _run_worker(url: str, job_id: str, name: str, outcome: dict[str, Any], die: bool) -> None:
    """A worker without training: hand out, tell a random loss, repeat until nothing is owed.

    Its heartbeat thread beats for the trial in hand, as a real worker's does. With ``die``
    it walks away from its first trial (heartbeats stop) like a process killed mid-trial.
    """
    runtime = _runtime(url, name)
    runner = TrialRunner(runtime, _NoCache(), threading.Event())  # type: ignore[arg-type]
    heartbeat = HeartbeatThread(runtime, runner.reap_stale)
    runner.heartbeat = heartbeat
    heartbeat.start()
    try:
        ctx = load_context(runtime, _job(runtime.sessions, job_id))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            asked = runner.hand_out(ctx, 1)
            if asked in (FINALISED, NOTHING) and _job(runtime.sessions, job_id).is_finished:
                return
            if isinstance(asked, str):
                time.sleep(0.05 if asked == BUSY else 0.2)
                continue
            trial = asked[0]
            heartbeat.watch(job_id, trial_ids=(trial._trial_id,))
            search.trial_config(trial, ctx.space, TrainSettings.from_spec(ctx.spec))
            if die:
                outcome["abandoned"] = trial.number
                return
            ctx.study.tell(trial, random.uniform(0.1, 1.0))
            heartbeat.watch(job_id)
            outcome.setdefault("told", []).append(trial.number)
            runner.after_trials(ctx)
    finally:
        heartbeat.stop()
        runtime.close()


class _NoCache:
    def peek(self, job_id: str) -> None:
        return None


def test_budget_is_exact_with_concurrent_workers_and_a_dead_one(
    migrated_url: str, sessions: Any
) -> None:
    total = 7
    job_id = _searching_study(migrated_url, sessions, trials=total)
    outcomes: dict[str, dict[str, Any]] = {f"w{i}": {} for i in range(4)}
    threads = [
        threading.Thread(target=_run_worker,
                         args=(migrated_url, job_id, name, outcomes[name], name == "w0"))
        for name in outcomes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    job = _job(sessions, job_id)
    assert job.status == "completed", job.error
    study = optuna.load_study(study_name=job.study_name, storage=migrated_url)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == total
    assert states.count(TrialState.FAIL) == 1  # the dead worker's trial, failed as stale
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    abandoned = outcomes["w0"]["abandoned"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == abandoned]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert BudgetCount.of(trials, total).finished == total
    with transaction(sessions) as s:
        rec = recommendations.get_recommendation(s, job_id)
        assert rec is not None and rec.final
        kinds = list(s.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)))
    assert kinds.count("completed") == 1
    assert job.trials_completed == total


def test_a_worker_that_lost_the_sweep_lease_stops_its_range_test(
    migrated_url: str, sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat notices the takeover; the LR range test stops at its next step and the
    old holder neither stores a sweep nor fails the job that the new holder now runs."""
    job_id = _submit(sessions)
    first = _claim(sessions, "a")
    assert first is not None
    _expire_sweep_lease(sessions, job_id)
    assert _claim(sessions, "b") is not None
    runtime = _runtime(migrated_url, "a")
    try:
        heartbeat = HeartbeatThread(runtime, lambda _job_id: None)
        heartbeat.watch(job_id, sweeping=True)
        heartbeat.beat()
        assert heartbeat.lease_lost.is_set()
        with caplog.at_level("WARNING", logger="workers.sweep"):
            assert sweep_and_save(runtime, heartbeat, first) is None
        assert "stopped its LR range test" in caplog.text  # not run to the end
    finally:
        runtime.close()
    job = _job(sessions, job_id)
    assert (job.status, job.sweep_worker_id, job.error) == ("sweeping", "b", None)
    with transaction(sessions) as s:
        assert sweeps.get_sweep(s, job_id) is None


def test_confirmations_are_enqueued_once_by_concurrent_workers_and_fill_the_budget(
    migrated_url: str, sessions: Any
) -> None:
    total = 9  # 6 searched (the baseline among them), then 3 confirmations
    job_id = _searching_study(migrated_url, sessions, trials=total, confirm_seeds=1,
                              confirm_top=2)
    outcomes: dict[str, dict[str, Any]] = {f"w{i}": {} for i in range(3)}
    threads = [
        threading.Thread(target=_run_worker,
                         args=(migrated_url, job_id, name, outcomes[name], False))
        for name in outcomes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    job = _job(sessions, job_id)
    assert job.status == "completed", job.error
    study = optuna.load_study(study_name=job.study_name, storage=migrated_url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials].count(TrialState.COMPLETE) == total == len(trials)
    confirms = [t for t in trials if t.user_attrs.get("role") == "confirm"]
    searched = [t for t in trials if t.user_attrs.get("role") != "confirm"]
    assert len(confirms) == 3 and len(searched) == 6
    assert max(t.number for t in searched) < min(t.number for t in confirms)
    (seed,) = study.user_attrs["confirmations"]["seeds"]
    assert seed != 0 and {t.user_attrs["seed"] for t in confirms} == {seed}
    of = sorted(t.user_attrs["of_role"] for t in confirms)
    assert of.count("baseline") == 1 and len(set(t.user_attrs["of_trial"] for t in confirms)) == 3
    with transaction(sessions) as s:
        rec = recommendations.get_recommendation(s, job_id)
    assert rec is not None and rec.final and rec.body["objective_seeds"] == [seed]
    assert not rec.body["objective_selected_on_seed"] and rec.body["baseline_seeds"] == [seed]
