"""The store's jobs, sweeps, recommendations and events, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tuner.db import events, jobs, recommendations, sweeps
from tuner.db.engine import StoreConflict, make_engine, make_session_factory, transaction
from tuner.db.types import db_now
from tuner.spec import JobSpec


@pytest.fixture
def store(migrated_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_url)
    yield make_session_factory(engine)
    engine.dispose()


def _spec(**overrides: object) -> JobSpec:
    body = {
        "workload": "digits_mlp",
        "name": "t",
        "budget": {"trials": 4, "steps_per_trial": 20, "eval_every": 10},
    }
    body.update(overrides)
    return JobSpec.model_validate(body)


def _new_job(store: sessionmaker[Session], tenant: str = "default", **overrides: object) -> str:
    with transaction(store) as s:
        return jobs.create_job(s, spec=_spec(**overrides), tenant=tenant).id


def test_create_and_get_round_trips_spec(store: sessionmaker[Session]) -> None:
    spec = _spec(search={"lr": {"low": 1e-5, "high": 1e-2}, "schedules": ["cosine"]})
    with transaction(store) as s:
        job = jobs.create_job(s, spec=spec, tenant="acme")
    assert job.status == "queued" and job.trials_total == 4 and job.trials_completed == 0
    assert job.created_at.tzinfo is not None and job.created_at.utcoffset().total_seconds() == 0
    assert job.study_name == f"adamtune-{job.id}"
    with transaction(store) as s:
        loaded = jobs.get_job(s, job.id, tenant="acme")
        assert loaded is not None
        assert JobSpec.model_validate(loaded.spec) == spec
        assert jobs.get_job(s, job.id, tenant="other") is None
        assert [e.kind for e in events.list_events(s, job.id)] == ["created"]


def test_created_at_uses_database_clock(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with transaction(store) as s:
        job = jobs.get_job(s, job_id)
        assert job is not None
        assert abs((job.created_at - datetime.now(UTC)).total_seconds()) < 60


def test_transition_is_compare_and_set(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with transaction(store) as s:
        assert jobs.transition(s, job_id, "queued", "sweeping", sweep_worker_id="w1")
    with transaction(store) as s:
        assert not jobs.transition(s, job_id, "queued", "sweeping", sweep_worker_id="w2")
        job = jobs.get_job(s, job_id)
        assert job is not None
        assert job.status == "sweeping" and job.sweep_worker_id == "w1"
        assert job.started_at is not None and job.finished_at is None


def test_concurrent_transitions_exactly_one_wins(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def contend(worker: str) -> None:
        barrier.wait()
        with transaction(store) as s:
            results.append(
                jobs.transition(s, job_id, ("queued",), "sweeping", sweep_worker_id=worker)
            )

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_transition_to_final_status_stamps_finished_and_lease(
    store: sessionmaker[Session],
) -> None:
    job_id = _new_job(store)
    with transaction(store) as s:
        assert jobs.transition(s, job_id, "queued", "sweeping", sweep_lease_expires_at=db_now(30))
    with transaction(store) as s:
        job = jobs.get_job(s, job_id)
        assert job is not None and job.sweep_lease_expires_at is not None
        assert job.sweep_lease_expires_at > job.created_at
        assert jobs.transition(s, job_id, "sweeping", "searching")
        assert jobs.transition(s, job_id, "searching", "completed", best_objective=0.5)
    with transaction(store) as s:
        job = jobs.get_job(s, job_id)
        assert job is not None
        assert job.status == "completed" and job.finished_at is not None
        assert job.best_objective == 0.5


def test_transition_refuses_unknown_status(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with transaction(store) as s, pytest.raises(ValueError, match="unknown job status 'done'"):
        jobs.transition(s, job_id, "queued", "done")


def test_request_cancel(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store, tenant="acme")
    with transaction(store) as s:
        assert jobs.request_cancel(s, job_id, tenant="other") is None
        job = jobs.request_cancel(s, job_id, tenant="acme")
        assert job is not None and job.status == "cancelled" and job.finished_at is not None
    with transaction(store) as s:
        assert [e.kind for e in events.list_events(s, job_id)] == ["created", "cancelled"]
    finished = _new_job(store)
    with transaction(store) as s:
        assert jobs.transition(s, finished, "queued", "failed", error="boom")
        job = jobs.request_cancel(s, finished)
        assert job is not None and job.status == "failed"


def test_list_jobs_filters_and_pages(store: sessionmaker[Session]) -> None:
    ids = [_new_job(store) for _ in range(5)]
    other = _new_job(store, workload="regression_mlp")
    _new_job(store, tenant="acme")
    with transaction(store) as s:
        jobs.transition(s, ids[0], "queued", "cancelled")
        page, total = jobs.list_jobs(s, tenant="default", limit=4, offset=0)
        assert total == 6 and len(page) == 4
        rest, _ = jobs.list_jobs(s, tenant="default", limit=4, offset=4)
        assert {j.id for j in page} | {j.id for j in rest} == set(ids) | {other}
        assert [j.id for j in jobs.list_jobs(s, tenant="default", status="cancelled")[0]] == [
            ids[0]
        ]
        by_workload, n = jobs.list_jobs(s, tenant="default", workload="regression_mlp")
        assert n == 1 and by_workload[0].id == other
        assert jobs.list_jobs(s)[1] == 7


def test_idempotency_key_is_unique_per_tenant(store: sessionmaker[Session]) -> None:
    with transaction(store) as s:
        job = jobs.create_job(s, spec=_spec(), idempotency_key="k1", request_hash="h")
        jobs.create_job(s, spec=_spec(), tenant="acme", idempotency_key="k1")
    with transaction(store) as s:
        found = jobs.get_job_by_idempotency_key(s, "default", "k1")
        assert found is not None and found.id == job.id
    with pytest.raises(StoreConflict, match="refused a write"), transaction(store) as s:
        jobs.create_job(s, spec=_spec(), idempotency_key="k1")


def test_sweep_json_round_trip_and_replace(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    data = {
        "lrs": [1e-7, 1e-3, 10.0],
        "losses": [2.3, 1.1, float("inf")],
        "nan": float("nan"),
        "smoothed": [2.3, 1.5, 9.0],
        "suggestions": {"steepest": 1e-3, "valley": 2e-3, "min_over_10": 5e-4},
        "lr_range": {"low": 1e-4, "suggested": 1e-3, "high": 1e-2},
        "stop_reason": "diverged",
    }
    with transaction(store) as s:
        assert sweeps.get_sweep(s, job_id) is None
        sweeps.save_sweep(s, job_id, data, "w1")
    with transaction(store) as s:
        sweep = sweeps.get_sweep(s, job_id)
        assert sweep is not None and sweep.worker_id == "w1"
        assert sweep.data["suggestions"] == data["suggestions"]
        assert math.isnan(float(sweep.data["nan"]))
        assert sweep.data["lrs"] == data["lrs"] and sweep.data["stop_reason"] == "diverged"
        # JSON has no infinity: stored as a string that float() reads back
        assert [float(x) for x in sweep.data["losses"]] == [2.3, 1.1, float("inf")]
        sweeps.save_sweep(s, job_id, {**data, "stop_reason": "end"}, "w2")
        again = sweeps.get_sweep(s, job_id)
        assert again is not None and again.worker_id == "w2" and again.data["stop_reason"] == "end"


def test_final_recommendation_is_never_overwritten(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with transaction(store) as s:
        assert recommendations.get_recommendation(s, job_id) is None
        assert recommendations.upsert_recommendation(s, job_id, {"lr": 1e-3}, final=False)
        assert recommendations.upsert_recommendation(s, job_id, {"lr": 2e-3}, final=False)
        rec = recommendations.get_recommendation(s, job_id)
        assert rec is not None and rec.body == {"lr": 2e-3} and not rec.final
        assert recommendations.upsert_recommendation(s, job_id, {"lr": 3e-3, "final": True}, True)
    with transaction(store) as s:
        assert not recommendations.upsert_recommendation(s, job_id, {"lr": 9.0}, final=False)
        assert not recommendations.upsert_recommendation(s, job_id, {"lr": 8.0}, final=True)
        rec = recommendations.get_recommendation(s, job_id)
        assert rec is not None and rec.final and rec.body == {"lr": 3e-3, "final": True}


def test_events_are_ordered_and_truncated(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with transaction(store) as s:
        events.add_event(s, job_id, "claimed", "sweep claimed", worker_id="w1")
        events.add_event(s, job_id, "failed", "x" * 10_000)
    with transaction(store) as s:
        listed = events.list_events(s, job_id)
        assert [e.kind for e in listed] == ["created", "claimed", "failed"]
        assert listed[1].worker_id == "w1" and len(listed[2].message) == events.MAX_MESSAGE_CHARS


def test_transaction_rolls_back_on_error(store: sessionmaker[Session]) -> None:
    job_id = _new_job(store)
    with pytest.raises(RuntimeError), transaction(store) as s:
        jobs.transition(s, job_id, "queued", "sweeping")
        raise RuntimeError("worker crashed mid-transaction")
    with transaction(store) as s:
        job = jobs.get_job(s, job_id)
        assert job is not None and job.status == "queued"


def test_create_job_once_returns_the_first_job(store: sessionmaker[Session]) -> None:
    with transaction(store) as s:
        first, created = jobs.create_job_once(
            s, spec=_spec(), tenant="default", idempotency_key="k"
        )
        assert created
    with transaction(store) as s:
        again, created = jobs.create_job_once(
            s, spec=_spec(), tenant="default", idempotency_key="k"
        )
        assert not created and again.id == first.id
        other, created = jobs.create_job_once(s, spec=_spec(), tenant="acme", idempotency_key="k")
        assert created and other.id != first.id
    with transaction(store) as s, pytest.raises(jobs.IdempotencyKeyReused, match="different body"):
        jobs.create_job_once(s, spec=_spec(seed=7), tenant="default", idempotency_key="k")


def test_racing_idempotent_creates_make_one_job(store: sessionmaker[Session]) -> None:
    barrier = threading.Barrier(3)
    ids: list[str] = []

    def submit() -> None:
        barrier.wait()
        with transaction(store) as s:
            ids.append(jobs.create_job_once(s, spec=_spec(), tenant="t", idempotency_key="k")[0].id)

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 3 and len(set(ids)) == 1
    with transaction(store) as s:
        assert jobs.list_jobs(s, tenant="t")[1] == 1
