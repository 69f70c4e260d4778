"""Read a job's trials from its Optuna study (Optuna's RDB storage, same database).

Workers record who ran a trial in its user attributes (``worker_id``, ``device``) and,
for pruned or failed trials, why (``reason``); the first trials carry a ``role``
(the untuned baseline, the sweep's suggestion); ``steps`` is how many optimizer steps a
finished trial took, ``population`` how many trials trained together with it as one
vmapped population (absent when it trained alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tuner.db.optuna_store import REASON_ATTR as REASON_ATTR  # re-exported
from tuner.db.types import finite_or_none

if TYPE_CHECKING:
    import optuna



@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    worker_id: str | None
    device: str | None
    reason: str | None
    role: str | None
    steps: int | None
    population: int | None
    datetime_start: datetime | None
    datetime_complete: datetime | None


def _utc(moment: datetime | None) -> datetime | None:
    """Optuna stores naive ``datetime.now()`` (local time of the worker); read it as local."""
    return None if moment is None else moment.astimezone(UTC)


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = trial.user_attrs
    value = trial.values[0] if trial.values else None
    return TrialRecord(
        number=trial.number,
        state=trial.state.name.lower(),
        params=dict(trial.params),
        value=finite_or_none(value),
        worker_id=attrs.get("worker_id"),
        device=attrs.get("device"),
        reason=attrs.get(REASON_ATTR),
        role=attrs.get("role"),
        steps=attrs.get("steps"),
        population=attrs.get("population"),
        datetime_start=_utc(trial.datetime_start),
        datetime_complete=_utc(trial.datetime_complete),
    )


def list_trials(storage: optuna.storages.BaseStorage, study_name: str) -> list[TrialRecord]:
    """Every trial of the study, by number; empty while the study does not exist yet."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return []
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return [_record(t) for t in sorted(trials, key=lambda t: t.number)]
