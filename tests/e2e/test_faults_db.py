"""Faults around the store, end to end: the API restarts, PostgreSQL drops connections.

Every job's state lives in the database, so an API restart must lose nothing, and a worker
whose connections are cut must reconnect and finish its work. Real ``adamtune api`` and
``adamtune worker`` processes, as in :mod:`tests.e2e.test_faults_workers`.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.faults_harness import (
    FaultService,
    Store,
    assert_exact_budget,
    faults_fixture,  # noqa: F401 - the faults fixture
    job_spec,
    store_fixture,  # noqa: F401 - the store fixture
    terminate_backends,
    with_application_name,
)
from tests.e2e.harness import wait_until
from tuner.client import CONNECTION_FAILED, ApiError, Client

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 150.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_api_restart_loses_nothing_and_polling_resumes(faults: FaultService, store: Store) -> None:
    """kill -9 the API mid-search: workers carry on, a new API serves the same jobs."""
    trials_total = 4
    faults.start_api()
    faults.start_worker("worker-a")
    faults.start_worker("worker-b")
    seen: dict[str, list[int]] = {}
    with faults.client() as client:
        ids = [client.submit(job_spec("slow_digits", trials_total, 40))["id"] for _ in range(2)]
        wait_until(lambda: _progress(client, ids[0], seen) >= 1, 120, "a finished trial")
        listed = {job["id"] for job in client.list()}
        done_then = _finished_in_store(store, ids)

        assert faults.kill("api") < 0
        with pytest.raises(ApiError) as down:
            client.get(ids[0])
        assert down.value.status == CONNECTION_FAILED
        wait_until(
            lambda: _finished_in_store(store, ids) > done_then,
            90,
            "the workers to finish a trial while the API is down",
        )
        faults.start_api_again()  # same port: the same client polls on

        assert {job["id"] for job in client.list()} == listed
        jobs = [
            client.wait(
                i, timeout=JOB_TIMEOUT_S, poll=0.5, on_progress=lambda job: _record(job, seen)
            )
            for i in ids
        ]
        recs = [client.recommendation(i) for i in ids]

    assert [job["status"] for job in jobs] == ["completed", "completed"], jobs
    assert all(rec["final"] for rec in recs)
    for job_id in ids:
        assert seen[job_id] == sorted(seen[job_id]), seen  # progress never went back
        assert seen[job_id][-1] == trials_total
        assert_exact_budget(store.trials(job_id), trials_total)


def _record(job: dict[str, Any], seen: dict[str, list[int]]) -> None:
    seen.setdefault(job["id"], []).append(job["progress"]["trials_completed"])


def _progress(client: Client, job_id: str, seen: dict[str, list[int]]) -> int:
    job = client.get(job_id)
    _record(job, seen)
    return int(job["progress"]["trials_completed"])


def _finished_in_store(store: Store, ids: list[str]) -> int:
    return sum(store.job(i).trials_completed for i in ids)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_worker_reconnects_after_postgres_drops_its_connections(
    faults: FaultService, store: Store
) -> None:
    """pg_terminate_backend on every worker connection, three times: the job still completes."""
    trials_total = 5
    app = "adamtune-fault-worker"
    faults.start_api()
    worker = faults.start_worker(
        "worker-a", env={"ADAMTUNE_DATABASE_URL": with_application_name(store.database_url, app)}
    )
    with faults.client() as client:
        job_id = client.submit(job_spec("slow_digits", trials_total, 40))["id"]
        wait_until(
            lambda: client.get(job_id)["progress"]["trials_completed"] >= 1, 120, "a finished trial"
        )
        terminated = 0
        for _ in range(3):
            terminated += terminate_backends(store.database_url, app)
            time.sleep(1.0)  # a heartbeat later: new connections, another trial
        job = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)
        rec = client.recommendation(job_id)

    assert terminated >= 3, terminated  # the worker's pooled connections were really cut
    assert job["status"] == "completed", job
    assert rec["final"] is True
    assert_exact_budget(store.trials(job_id), trials_total)
    assert worker.running  # the same process carried on: it reconnected, it did not restart
