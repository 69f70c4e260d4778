"""Faults of workers, end to end: real ``adamtune api`` and ``adamtune worker`` processes.

Each test breaks something on purpose (``kill -9``, SIGTERM, a cancel, a faulty workload)
and checks what ``docs/operations.md`` promises: a dead worker's trial is re-run after the
grace period, the budget ends exact, a sweep is taken over, SIGTERM hands work back. The
liveness settings are short (heartbeat 1 s, grace 3 s, :mod:`tests.e2e.harness`); the
``slow_digits`` workload (:mod:`tests.e2e.faults_harness`) makes every step last at least
25 ms, so a trial or a sweep can be hit in its middle however busy the machine is.
Recovery that involves the database (trial heartbeats, sweep leases) runs on SQLite and
PostgreSQL; the others on SQLite.
"""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime
from typing import Any

import pytest
from optuna.trial import TrialState

from tests.e2e.faults_harness import (
    FINISHED_STATES,
    RAISING_MESSAGE,
    FaultService,
    Store,
    assert_exact_budget,
    faults_fixture,  # noqa: F401 - the faults fixture
    job_spec,
    retries_of,
    store_fixture,  # noqa: F401 - the store fixture
)
from tests.e2e.harness import GRACE_PERIOD_S, wait_until
from tuner.client import Client

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 150.0
EXIT_AT_ONCE = 128 + signal.SIGTERM
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def by_number(trials: list) -> dict:
    return {t.number: t for t in trials}


def test_kill9_mid_trial_is_rerun_by_another_worker(faults: FaultService, store: Store) -> None:
    """kill -9 in a trial: after the grace period another worker re-runs it, budget exact;
    GET /v1/jobs/{id}/trials says why the killed trial failed and which trial re-ran it."""
    trials_total, steps = 4, 60  # a trial lasts >= 1.5 s: the kill lands in its middle
    faults.start_api()
    faults.start_worker("worker-a")
    with faults.client() as client:
        job_id = client.submit(job_spec("slow_digits", trials_total, steps))["id"]
        victim = store.wait_running_trial(job_id, "worker-a", younger_than=0.5)
        assert faults.kill("worker-a") == -signal.SIGKILL
        faults.start_worker("worker-b")
        job = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)
        rec = client.recommendation(job_id)
        shown = {t["number"]: t for t in client.trials(job_id)}
        dead = wait_until(lambda: _worker_if(client, "worker-a", "lost"), 30, "worker-a lost")

    assert not dead["alive"]  # GET /v1/workers shows the crash
    assert job["status"] == "completed", job
    assert job["progress"]["trials_completed"] == trials_total
    assert rec["final"] is True
    trials = store.trials(job_id)
    killed = by_number(trials)[victim.number]
    assert killed.state == TrialState.FAIL
    (rerun,) = retries_of(trials, victim.number)
    assert rerun.state in FINISHED_STATES
    assert rerun.user_attrs["worker_id"] == "worker-b"
    assert rerun.params == killed.params
    assert shown[victim.number]["reason"] == (
        f"its worker worker-a stopped heartbeating; re-run as trial {rerun.number}"
    )
    assert "heartbeating" not in (shown[rerun.number]["reason"] or "")  # not inherited
    assert_exact_budget(trials, trials_total)


def _worker_if(client: Client, worker_id: str, status: str) -> dict[str, Any] | None:
    """The worker's row in GET /v1/workers if it has ``status``."""
    rows = client._json("GET", "/v1/workers")["data"]
    return next((w for w in rows if w["id"] == worker_id and w["status"] == status), None)


def test_kill9_during_sweep_another_worker_takes_it_over(
    faults: FaultService, store: Store
) -> None:
    """kill -9 the sweep's lease holder: its lease expires, another worker sweeps again."""
    trials_total = 3
    # 200 steps up to lr 0.01 (no early stop at divergence): the sweep lasts >= 5 s.
    spec = job_spec("slow_digits", trials_total, 20, sweep={"steps": 200, "lr_max": 0.01})
    faults.start_api()
    faults.start_worker("worker-a")
    with faults.client() as client:
        job_id = client.submit(spec)["id"]
        wait_until(
            lambda: _sweeping_on(store, job_id, "worker-a"), 90, "worker-a to hold the sweep"
        )
        assert faults.kill("worker-a") == -signal.SIGKILL
        assert store.sweep_worker(job_id) is None  # killed before it could store its sweep
        faults.start_worker("worker-b")
        job = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)
        rec = client.recommendation(job_id)

    assert job["status"] == "completed", job
    assert rec["final"] is True and rec["lr_range"]["suggested"] is not None
    takeovers = [e for e in store.events(job_id) if e.kind == "sweep_takeover"]
    assert len(takeovers) == 1, [(e.kind, e.message) for e in store.events(job_id)]
    assert takeovers[0].worker_id == "worker-b" and "worker-a" in takeovers[0].message
    assert store.sweep_worker(job_id) == "worker-b"
    assert_exact_budget(store.trials(job_id), trials_total)


def _sweeping_on(store: Store, job_id: str, worker: str) -> bool:
    job = store.job(job_id)
    return job.status == "sweeping" and job.sweep_worker_id == worker


@sqlite_only
def test_sigterm_hands_back_and_a_second_sigterm_exits_at_once(
    faults: FaultService, store: Store
) -> None:
    """One SIGTERM: the trial is handed back, exit 0. Two: exit at once (mid-sweep here)."""
    trials_total, steps = 4, 80
    spec = job_spec("slow_digits", trials_total, steps, sweep={"steps": 120, "lr_max": 0.01})
    faults.start_api()
    faults.start_worker("worker-a")
    with faults.client() as client:
        job_id = client.submit(spec)["id"]
        # A sweep in hand is finished after one SIGTERM (seconds here); a second one exits now.
        wait_until(lambda: _sweeping_on(store, job_id, "worker-a"), 90, "worker-a's sweep")
        faults.signal("worker-a", signal.SIGTERM)
        faults.wait_for_log("worker-a", "SIGTERM received", timeout=30)
        faults.signal("worker-a", signal.SIGTERM)
        assert faults.wait_exit("worker-a", timeout=30) == EXIT_AT_ONCE
        assert "exiting at once" in faults.log("worker-a")
        assert store.sweep_worker(job_id) is None  # it did not wait for the sweep

        faults.start_worker("worker-b")  # takes the sweep over once the lease expires
        handed = store.wait_running_trial(job_id, "worker-b", younger_than=1.0)
        faults.signal("worker-b", signal.SIGTERM)
        assert faults.wait_exit("worker-b", timeout=60) == 0
        assert "worker worker-b stopped" in faults.log("worker-b")
        trial = by_number(store.trials(job_id))[handed.number]
        assert trial.state == TrialState.FAIL
        match = re.fullmatch(
            r"handed back at step (\d+): its worker was stopping", trial.user_attrs["reason"]
        )
        assert match is not None and int(match.group(1)) < steps, trial.user_attrs["reason"]
        (retry,) = retries_of(store.trials(job_id), handed.number)
        assert retry.state == TrialState.WAITING and retry.params == trial.params

        faults.start_worker("worker-c")
        job = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)

    assert job["status"] == "completed", job
    trials = store.trials(job_id)
    (rerun,) = retries_of(trials, handed.number)
    assert rerun.state in FINISHED_STATES and rerun.user_attrs["worker_id"] == "worker-c"
    assert_exact_budget(trials, trials_total)


@sqlite_only
def test_cancel_stops_running_trials_and_starts_no_new_ones(
    faults: FaultService, store: Store
) -> None:
    """Cancel: both workers' running trials stop before their last step (failed, saying
    why); no trial starts afterwards; the workers live on."""
    steps = 400  # a trial lasts >= 10 s: one that ignored the cancel would finish its steps
    faults.start_api()
    faults.start_worker("worker-a")
    faults.start_worker("worker-b")
    with faults.client() as client:
        job_id = client.submit(job_spec("slow_digits", 6, steps))["id"]
        running = wait_until(
            lambda: _running_on_both(store, job_id), 120, "a running trial on each worker"
        )
        assert client.cancel(job_id)["status"] == "cancelled"
        cancelled_at = datetime.now()  # Optuna stamps trials with this host's local clock
        wait_until(lambda: not _running(store, job_id), 60, "the running trials to end")
        stopped = by_number(store.trials(job_id))
        faults.wait_for_log("worker-a", f"job {job_id} is cancelled", timeout=10)
        time.sleep(GRACE_PERIOD_S)  # 3 heartbeats, ~15 polls: time for a wrong trial to start
        after = store.trials(job_id)
        job = client.get(job_id)

    assert job["status"] == "cancelled"
    for number in running:
        trial = stopped[number]
        reason = trial.user_attrs.get("reason", "")
        match = re.fullmatch(r"stopped at step (\d+): the job was cancelled", reason)
        assert trial.state == TrialState.FAIL and match is not None, (trial.state, reason)
        assert int(match.group(1)) < steps  # stopped in its middle, not run to its end
    assert len(after) == len(stopped)
    assert all(t.datetime_start is None or t.datetime_start < cancelled_at for t in after)
    assert faults.alive("worker-a") and faults.alive("worker-b")


def _running(store: Store, job_id: str) -> list[int]:
    return [t.number for t in store.trials(job_id) if t.state == TrialState.RUNNING]


def _running_on_both(store: Store, job_id: str) -> list[int] | None:
    running = [t for t in store.trials(job_id) if t.state == TrialState.RUNNING]
    workers = {t.user_attrs.get("worker_id") for t in running}
    return [t.number for t in running] if {"worker-a", "worker-b"} <= workers else None


@sqlite_only
def test_raising_and_diverging_workloads_cost_trials_not_the_worker(faults: FaultService) -> None:
    """A workload that raises fails its trials, NaN and blow-ups prune them, each with its
    reason in GET /v1/jobs/{id}/trials; the one worker runs every job and stays up."""
    no_sweep = {"steps": 20, "enabled": False}
    specs = {
        "raising": job_spec("raising_digits", 2, 20, sweep=no_sweep),
        "nan": job_spec("nan_digits", 2, 20, sweep=no_sweep),
        "blow_up": job_spec(
            "digits_mlp", 3, 40, sweep=no_sweep, search={"lr": {"low": 1e3, "high": 1e4}}
        ),
    }
    faults.start_api()
    faults.start_worker("worker-a")
    with faults.client() as client:
        ids = {name: client.submit(spec)["id"] for name, spec in specs.items()}
        jobs = {name: client.wait(i, timeout=JOB_TIMEOUT_S, poll=0.5) for name, i in ids.items()}
        trials = {name: client.trials(i) for name, i in ids.items()}

    raised = trials["raising"]
    assert jobs["raising"]["status"] == "failed", jobs["raising"]
    assert RAISING_MESSAGE in jobs["raising"]["error"]
    assert raised and all(t["state"] == "fail" for t in raised), raised
    assert all(RAISING_MESSAGE in (t["reason"] or "") for t in raised), raised

    nan = trials["nan"]  # every trial diverged: pruned, and no trial to recommend
    assert nan and all(t["state"] == "pruned" for t in nan), nan
    assert all(re.match(r"non-finite training loss \(nan\)", t["reason"] or "") for t in nan), nan
    assert jobs["nan"]["status"] == "failed" and "no trial completed" in jobs["nan"]["error"]

    blown = trials["blow_up"]
    assert jobs["blow_up"]["status"] == "completed", jobs["blow_up"]
    searched = [t for t in blown if t["role"] == "search"]
    assert searched and all(t["state"] == "pruned" for t in searched), blown
    assert all(re.search(r"non-finite|exceeded", t["reason"] or "") for t in searched), searched
    assert [t["state"] for t in blown if t["role"] == "baseline"] == ["complete"]

    ran = {t["worker_id"] for rows in trials.values() for t in rows}
    assert ran == {"worker-a"} and faults.alive("worker-a")  # one worker did it all, and lives
