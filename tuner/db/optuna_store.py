"""The one place that reaches under Optuna's public API: its tables and private attributes.

Optuna's RDB storage lives in adamtune's database. Three things have no public API and are
done here, so an Optuna upgrade that changes them breaks one module (and its tests, which
run against a real ``RDBStorage``):

- a trial's storage id (:func:`trial_id`): ``optuna.Trial`` keeps it in ``_trial_id``;
- a study's storage and id (:func:`study_storage`, :func:`rdb_storage`), to create a trial
  from a template (a retry) and to write to a finished trial;
- raw reads and writes of Optuna's tables: RUNNING trials that never got a heartbeat row
  (:func:`running_trials_without_heartbeat`), and a user attribute written to a trial that
  is already finished (:func:`record_reason_of_finished_trial`).

:func:`fail_waiting_trials` ends a cancelled job's enqueued trials (public API only).
"""

from __future__ import annotations

import json

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import String, cast, column, delete, insert, select, table
from sqlalchemy.orm import Session

REASON_ATTR = "reason"

_studies = table("studies", column("study_id"), column("study_name"))
_trials = table("trials", column("trial_id"), column("study_id"), column("state"))
_heartbeats = table("trial_heartbeats", column("trial_id"))
_trial_user_attributes = table(
    "trial_user_attributes", column("trial_id"), column("key"), column("value_json")
)


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's id in the storage (what ``record_heartbeat`` and ``get_trial`` take)."""
    return int(trial._trial_id)


def study_storage(study: optuna.Study) -> tuple[optuna.storages.BaseStorage, int]:
    """The storage a study writes through and the study's id in it."""
    return study._storage, study._study_id


def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage:
    """The RDB storage under a study (which wraps it in Optuna's in-process trial cache)."""
    storage, _ = study_storage(study)
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        raise TypeError(f"expected Optuna's RDBStorage, got {type(backend).__name__}")
    return backend


def create_trial_from(study: optuna.Study, template: FrozenTrial) -> int:
    """Add ``template`` (e.g. a WAITING retry) to the study; returns the new trial's number.

    ``study.add_trial`` only accepts finished trials, so a WAITING one goes through the
    storage, as Optuna's own ``RetryFailedTrialCallback`` does.
    """
    storage, study_id = study_storage(study)
    new_id = storage.create_new_trial(study_id, template_trial=template)
    return storage.get_trial_number_from_id(new_id)


def running_trials_without_heartbeat(s: Session, study_name: str) -> list[int]:
    """Ids of the study's RUNNING trials that have no heartbeat row at all.

    Optuna's stale-trial check only sees trials with a heartbeat row; a worker that died
    between asking a trial and its first heartbeat leaves one without.
    """
    has_beat = select(_heartbeats.c.trial_id).where(_heartbeats.c.trial_id == _trials.c.trial_id)
    stmt = (
        select(_trials.c.trial_id)
        .join(_studies, _studies.c.study_id == _trials.c.study_id)
        .where(
            _studies.c.study_name == study_name,
            cast(_trials.c.state, String) == "RUNNING",  # an enum type on PostgreSQL
            ~has_beat.exists(),
        )
    )
    return [int(i) for i in s.scalars(stmt)]


def record_reason_of_finished_trial(
    storage: optuna.storages.RDBStorage, trial_id: int, reason: str
) -> None:
    """Set the ``reason`` user attribute of a trial that is already finished.

    Optuna refuses attribute writes to finished trials, but a trial failed by its stale-trial
    check (its worker died) is finished before anyone can say why; this writes the attribute
    row itself, as Optuna would (JSON in ``value_json``), in one transaction.
    """
    attrs = _trial_user_attributes.c
    with storage.engine.begin() as conn:
        conn.execute(
            delete(_trial_user_attributes).where(
                attrs.trial_id == trial_id, attrs.key == REASON_ATTR
            )
        )
        conn.execute(
            insert(_trial_user_attributes).values(
                trial_id=trial_id, key=REASON_ATTR, value_json=json.dumps(reason)
            )
        )


def fail_waiting_trials(storage: optuna.storages.BaseStorage, study_name: str, reason: str) -> int:
    """Fail the study's WAITING (enqueued, never started) trials with ``reason``; how many.

    No worker asks a trial of a cancelled job, so its enqueued trials would wait forever.
    A study not created yet has none. A trial a worker took meanwhile is left to that worker.
    """
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    failed = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            storage.set_trial_user_attr(trial._trial_id, REASON_ATTR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        failed += 1
    return failed
