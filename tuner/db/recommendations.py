"""The recommendation of each job: partial while the search runs, final once, then frozen."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuner.db.models import Recommendation
from tuner.db.types import db_now
from tuner.db.upsert import insert_for


def upsert_recommendation(s: Session, job_id: str, body: dict[str, Any], final: bool) -> bool:
    """Write the recommendation; returns False when a final one is already there.

    A final recommendation is never overwritten (neither by a late partial from a slow
    worker nor by a second finalisation), so what users fetch once done stays the same.
    """
    stmt = insert_for(s, Recommendation).values(job_id=job_id, body=body, final=final)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Recommendation.job_id],
        set_={"body": stmt.excluded.body, "final": stmt.excluded.final, "updated_at": db_now()},
        where=Recommendation.final.is_(False),
    )
    written = s.execute(stmt.returning(Recommendation.job_id)).first()
    return written is not None


def get_recommendation(s: Session, job_id: str) -> Recommendation | None:
    return s.get(Recommendation, job_id, populate_existing=True)
