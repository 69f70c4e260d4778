"""The global budget with concurrent workers on SQLite and PostgreSQL: exact with a dead worker,
a lost sweep lease stops the range test, confirmations enqueued once.

Concurrency here is real (threads, each with its own engine and Optuna storage, like
separate worker processes); only training is left out: trials are told at once.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import select

from tests.integration.claims_helpers import _claim, _expire_sweep_lease, _job, _submit
from tuner import search
from tuner.db import claims, recommendations, sweeps
from tuner.db.engine import transaction
from tuner.db.models import JobEvent
from tuner.driver import BudgetCount
from tuner.settings import Settings
from tuner.spec import parse_job
from tuner.train import TrainSettings
from workers.context import load_context, open_or_create_study
from workers.heartbeat import HeartbeatThread
from workers.runtime import Identity, Runtime
from workers.sweep import sweep_and_save
from workers.trials import BUSY, FINALISED, NOTHING, TrialRunner

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


def _run_workers(migrated_url: str, job_id: str, n: int, dead: str | None = None) -> (
    dict[str, dict[str, Any]]
):
    """``n`` workers in threads on the same job until none has work; ``dead`` dies mid-trial."""
    outcomes: dict[str, dict[str, Any]] = {f"w{i}": {} for i in range(n)}
    threads = [
        threading.Thread(target=_run_worker,
                         args=(migrated_url, job_id, name, outcomes[name], name == dead))
        for name in outcomes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_budget_is_exact_with_concurrent_workers_and_a_dead_one(
    migrated_url: str, sessions: Any
) -> None:
    total = 7
    job_id = _searching_study(migrated_url, sessions, trials=total)
    outcomes = _run_workers(migrated_url, job_id, 4, dead="w0")

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
    _run_workers(migrated_url, job_id, 3)

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


def test_a_trial_asked_but_never_heartbeated_is_rerun_and_the_job_completes(
    migrated_url: str, sessions: Any
) -> None:
    """An ask that fails half way (the trial created, the connection lost before its first
    heartbeat; the worker carries on) leaves a RUNNING trial without a heartbeat row, which
    Optuna's stale check never sees. The search lock is free, not taken over: the worker
    that left it must still fail and re-run it, or the job waits for it forever."""
    total = 3
    job_id = _searching_study(migrated_url, sessions, trials=total)
    study = optuna.load_study(study_name=_job(sessions, job_id).study_name, storage=migrated_url)
    orphan = study.ask()  # what the half-done ask left: no heartbeat, no worker id
    _run_workers(migrated_url, job_id, 1)

    job = _job(sessions, job_id)
    assert job.status == "completed", job.error
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states[orphan.number] == TrialState.FAIL
    assert states.count(TrialState.COMPLETE) == total
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert any(t.system_attrs.get("failed_trial") == orphan.number for t in trials)
