"""tuner.db.optuna_store against Optuna's own RDBStorage (SQLite and PostgreSQL): what it
reads and writes under Optuna's API must agree with what Optuna's API then reports."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.orm import Session

from tuner.db import optuna_store
from workers.runtime import Timing, open_optuna_storage, quiet_optuna_warnings


@pytest.fixture
def study(db_url: str) -> Iterator[optuna.Study]:
    quiet_optuna_warnings()
    storage = open_optuna_storage(db_url, Timing(heartbeat_interval=1, grace_period=2,
                                                 poll_interval=0.1))
    yield optuna.create_study(study_name="adapter", storage=storage)
    storage.remove_session()
    storage.engine.dispose()


def test_trial_id_is_the_storage_id(study: optuna.Study) -> None:
    first, second = study.ask(), study.ask()
    storage, study_id = optuna_store.study_storage(study)
    assert study_id == storage.get_study_id_from_name("adapter")
    for trial in (first, second):
        expected = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        assert optuna_store.trial_id(trial) == expected
    frozen = study.trials[1]
    assert optuna_store.trial_id(frozen) == optuna_store.trial_id(second)


def test_running_trials_without_heartbeat(study: optuna.Study) -> None:
    beating, silent, finished = study.ask(), study.ask(), study.ask()
    storage = optuna_store.rdb_storage(study)
    storage.record_heartbeat(optuna_store.trial_id(beating))
    study.tell(finished, 1.0)
    with Session(storage.engine) as s:
        orphans = optuna_store.running_trials_without_heartbeat(s, "adapter")
        assert optuna_store.running_trials_without_heartbeat(s, "no-such-study") == []
    assert orphans == [optuna_store.trial_id(silent)]


def test_reason_of_a_finished_trial_is_read_back_by_optuna(study: optuna.Study) -> None:
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    storage = optuna_store.rdb_storage(study)
    for reason in ("first", "its worker w stopped heartbeating"):  # a second write replaces
        optuna_store.record_reason_of_finished_trial(
            storage, optuna_store.trial_id(trial), reason
        )
    frozen = storage.get_trial(optuna_store.trial_id(trial))
    assert frozen.user_attrs[optuna_store.REASON_ATTR] == "its worker w stopped heartbeating"


def test_create_trial_from_a_waiting_template(study: optuna.Study) -> None:
    study.ask()
    template = optuna.create_trial(
        state=TrialState.WAITING,
        params={"lr": 0.01},
        distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
        user_attrs={"role": "retry"},
    )
    number = optuna_store.create_trial_from(study, template)
    assert number == 1
    [waiting] = study.get_trials(states=(TrialState.WAITING,))
    assert (waiting.number, waiting.params, waiting.user_attrs) == (1, {"lr": 0.01},
                                                                    {"role": "retry"})
    assert study.ask().number == 1  # the next ask takes the waiting trial
    assert study.trials[1].state == TrialState.RUNNING


def test_rdb_storage_refuses_another_storage() -> None:
    in_memory = optuna.create_study()
    with pytest.raises(TypeError, match="expected Optuna's RDBStorage, got InMemoryStorage"):
        optuna_store.rdb_storage(in_memory)
