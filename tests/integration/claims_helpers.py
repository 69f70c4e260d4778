"""Helpers of the claims tests: a job submitted, claimed, read back, its sweep lease expired."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from tuner.db import claims, jobs
from tuner.db.engine import db_now, transaction
from tuner.db.models import Job
from tuner.spec import parse_job

LONG_LEASE = 60.0


def _submit(sessions: Any, workload: str = "digits_mlp", trials: int = 4,
            budget: dict[str, Any] | None = None, **extra: Any) -> str:
    body = {"workload": workload, "budget": {"trials": trials, "steps_per_trial": 10,
                                             "eval_every": 10, **(budget or {})}, **extra}
    with transaction(sessions) as s:
        return jobs.create_job(s, spec=parse_job(body)).id


def _claim(sessions: Any, worker: str, lease: float = LONG_LEASE) -> Job | None:
    with transaction(sessions) as s:
        return claims.claim_sweep(s, worker, ["digits_mlp"], lease)


def _job(sessions: Any, job_id: str) -> Job:
    with transaction(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _expire_sweep_lease(sessions: Any, job_id: str) -> None:
    """What a dead sweeper leaves behind: a lease that ran out a minute ago (database clock)."""
    with transaction(sessions) as s:
        s.execute(update(Job).where(Job.id == job_id)
                  .values(sweep_lease_expires_at=db_now(-60)))
