"""``/v1/workers``: the worker processes, what they run and whether they are alive."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import CurrentTenant, SessionDep, SettingsDep
from api.schemas import WorkerPublic, WorkersPublic
from tuner.db import workers
from tuner.db.models import Job

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkersPublic, summary="Workers, most recently seen first")
def list_workers(
    session: SessionDep, settings: SettingsDep, tenant: CurrentTenant
) -> WorkersPublic:
    """``alive`` means a heartbeat within ``ADAMTUNE_GRACE_PERIOD`` seconds (database clock).

    ``current_job_id`` is shown only for this tenant's jobs: another tenant's is null."""
    states = workers.list_workers(session, grace_seconds=settings.grace_period)
    running = {w.current_job_id for w in states if w.current_job_id}
    mine = set(session.scalars(select(Job.id).where(Job.id.in_(running), Job.tenant == tenant)))
    data = [
        WorkerPublic.of(w).model_copy(
            update={"current_job_id": w.current_job_id if w.current_job_id in mine else None}
        )
        for w in states
    ]
    return WorkersPublic(data=data, count=len(data))
