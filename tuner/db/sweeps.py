"""The LR range test of each job, stored as one JSON document (not a row per point)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuner.db.models import LRSweep
from tuner.db.types import db_now
from tuner.db.upsert import insert_for


def save_sweep(s: Session, job_id: str, data: dict[str, Any], worker_id: str | None) -> None:
    """Store ``SweepResult.to_dict()``; a sweep re-run after a lost lease replaces the old one."""
    stmt = insert_for(s, LRSweep).values(job_id=job_id, data=data, worker_id=worker_id)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LRSweep.job_id],
        set_={
            "data": stmt.excluded.data,
            "worker_id": stmt.excluded.worker_id,
            "created_at": db_now(),
        },
    )
    s.execute(stmt)


def get_sweep(s: Session, job_id: str) -> LRSweep | None:
    return s.get(LRSweep, job_id, populate_existing=True)
