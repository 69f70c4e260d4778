"""Job events: a short, human-readable history of what happened to a job and where."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tuner.db.models import JobEvent

MAX_MESSAGE_CHARS = 4000


def add_event(
    s: Session, job_id: str, kind: str, message: str, worker_id: str | None = None
) -> JobEvent:
    """Record an event (``kind`` is a short word: created, claimed, swept, failed, ...)."""
    event = JobEvent(
        job_id=job_id, kind=kind, message=message[:MAX_MESSAGE_CHARS], worker_id=worker_id
    )
    s.add(event)
    s.flush()
    return event


def list_events(s: Session, job_id: str, *, limit: int = 100) -> list[JobEvent]:
    """A job's events, oldest first."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id).limit(limit)
    return list(s.scalars(stmt))
