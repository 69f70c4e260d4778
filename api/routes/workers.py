"""``/v1/workers``: the worker processes, what they run and whether they are alive."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentTenant, SessionDep, SettingsDep
from api.schemas import WorkerPublic, WorkersPublic
from tuner.db import workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkersPublic, summary="Workers, most recently seen first")
def list_workers(
    session: SessionDep, settings: SettingsDep, tenant: CurrentTenant
) -> WorkersPublic:
    """``alive`` means a heartbeat within ``ADAMTUNE_GRACE_PERIOD`` seconds (database clock)."""
    states = workers.list_workers(session, grace_seconds=settings.grace_period)
    return WorkersPublic(data=[WorkerPublic.of(w) for w in states], count=len(states))
