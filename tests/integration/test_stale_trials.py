"""A trial whose worker died is failed with a reason and re-run, on SQLite and PostgreSQL.

The worker's storage (``workers.runtime.open_optuna_storage``) fails stale trials through
Optuna's heartbeat check and re-enqueues them with :class:`workers.runtime.RetryStaleTrial`.
A dead worker is simulated by moving the trial's last heartbeat far into the past.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import DateTime, column, table, update

from tuner.db import trials as trial_store
from tuner.db.optuna_store import rdb_storage
from workers.runtime import MAX_STALE_RETRIES, Timing, open_optuna_storage, quiet_optuna_warnings

_heartbeats = table("trial_heartbeats", column("trial_id"), column("heartbeat", DateTime))
LONG_AGO = datetime(2000, 1, 1)


@pytest.fixture
def study(db_url: str) -> Iterator[optuna.Study]:
    quiet_optuna_warnings()
    storage = open_optuna_storage(db_url, Timing(heartbeat_interval=1, grace_period=2,
                                                 poll_interval=0.1))
    yield optuna.create_study(study_name="stale", storage=storage)
    storage.remove_session()
    storage.engine.dispose()


def _start(study: optuna.Study, worker: str) -> optuna.Trial:
    """What a worker does when it takes a trial (``TrialRunner._ask``)."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    study._storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
    trial.set_user_attr("worker_id", worker)
    return trial


def _worker_dies(study: optuna.Study, trial: optuna.Trial) -> None:
    with rdb_storage(study).engine.begin() as conn:
        conn.execute(update(_heartbeats).where(_heartbeats.c.trial_id == trial._trial_id)
                     .values(heartbeat=LONG_AGO))
    optuna.storages.fail_stale_trials(study)


def _reasons(study: optuna.Study) -> dict[int, str | None]:
    """What GET /v1/jobs/{id}/trials shows as each trial's reason."""
    records = trial_store.list_trials(rdb_storage(study), study.study_name)
    return {r.number: r.reason for r in records}


def test_a_dead_workers_trial_says_why_and_which_trial_reruns_it(study: optuna.Study) -> None:
    trial = _start(study, "worker-a")
    _worker_dies(study, trial)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    retry = trials[1]
    assert retry.params == trials[0].params and retry.system_attrs["retry_history"] == [0]
    assert _reasons(study) == {
        0: "its worker worker-a stopped heartbeating; re-run as trial 1",
        1: None,  # the retry does not inherit the failed trial's reason
    }
    rerun = _start(study, "worker-b")
    assert rerun.number == 1
    study.tell(rerun, 0.5)
    assert _reasons(study)[1] is None


def test_a_trial_that_keeps_killing_workers_stops_being_rerun(study: optuna.Study) -> None:
    for round_ in range(MAX_STALE_RETRIES + 1):
        trial = _start(study, f"worker-{round_}")
        assert trial.number == round_
        _worker_dies(study, trial)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * (MAX_STALE_RETRIES + 1)
    reasons = _reasons(study)
    assert reasons[0] == "its worker worker-0 stopped heartbeating; re-run as trial 1"
    last = reasons[MAX_STALE_RETRIES]
    assert last is not None and last.startswith(
        f"its worker worker-{MAX_STALE_RETRIES} stopped heartbeating; not re-run: its "
        f"parameters ran {MAX_STALE_RETRIES + 1} times"
    )


def test_a_handed_back_trial_keeps_its_own_reason(study: optuna.Study) -> None:
    """``TrialRunner.hand_back`` fails the trial with its reason, then calls the callback."""
    trial = _start(study, "worker-a")
    trial.set_user_attr("reason", "handed back at step 3: its worker was stopping")
    study.tell(trial, state=TrialState.FAIL)
    storage = rdb_storage(study)
    callback = storage.get_heartbeat_stale_trial_callback()
    assert callback is not None
    callback(study, storage.get_trial(trial._trial_id))
    assert _reasons(study) == {0: "handed back at step 3: its worker was stopping", 1: None}
