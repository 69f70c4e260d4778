"""Worker claims on SQLite and PostgreSQL: sweeps under leases, the search lock, the budget.

Concurrency here is real (threads, each with its own engine and Optuna storage, like
separate worker processes); only training is left out: trials are told at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.claims_helpers import (
    LONG_LEASE,
    _claim,
    _expire_sweep_lease,
    _job,
    _submit,
)
from tuner.db import claims, events, jobs, recommendations, sweeps
from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.db.models import JobEvent
from tuner.settings import Settings
from workers.runtime import Timing


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
