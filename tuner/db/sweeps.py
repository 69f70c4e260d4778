"""The LR range test of each job: its stored result, and sweeps abandoned too often.

The result is one JSON document (not a row per point). A sweep whose worker dies is claimed
again once its lease expires (``tuner.db.claims``); each claim counts in
``jobs.sweep_attempts``, and a sweep abandoned ``max_attempts`` times fails its job instead of
being claimed again: a workload that kills the process running it would otherwise loop forever.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from tuner.db.jobs import transition
from tuner.db.models import Job, JobEvent, LRSweep
from tuner.db.status import JobStatus
from tuner.db.types import db_now
from tuner.db.upsert import insert_for

ABANDONED_PER_ROUND = 8  # exhausted sweeps failed per claim, at most
CLAIM_EVENT_KINDS = ("claimed", "sweep_takeover")  # written by claims, one per sweep attempt


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


def abandoned(max_attempts: int) -> Any:
    """Sweeping jobs whose lease expired on their last allowed attempt (database clock)."""
    return and_(
        Job.status == JobStatus.SWEEPING,
        Job.sweep_lease_expires_at < db_now(),
        Job.sweep_attempts >= max_attempts,
    )


def sweep_workers(s: Session, job_id: str) -> list[str]:
    """The workers that claimed the job's sweep, in order (one per attempt)."""
    stmt = (
        select(JobEvent.worker_id)
        .where(JobEvent.job_id == job_id, JobEvent.kind.in_(CLAIM_EVENT_KINDS))
        .order_by(JobEvent.id)
    )
    return [w for w in s.scalars(stmt) if w is not None]


def abandoned_error(attempts: int, max_attempts: int, workers: list[str]) -> str:
    """Why the job failed, by whom, and what to check."""
    who = ", ".join(workers) if workers else "unknown workers"
    return (
        f"the LR range test was abandoned {attempts} times (limit "
        f"ADAMTUNE_MAX_SWEEP_ATTEMPTS={max_attempts}): its workers ({who}) each stopped "
        "heartbeating before finishing it, so the workload most likely kills the process "
        "that runs it. Check those workers' logs and the host's kernel log (`dmesg`, the OOM "
        "killer) for out-of-memory or a crash in native code; then lower the workload's memory "
        "use (batch or model size) or `sweep.steps`, or set `sweep.enabled: false`, and submit "
        "the job again"
    )


def fail_abandoned_sweeps(s: Session, max_attempts: int, worker_id: str) -> list[str]:
    """Fail the jobs whose sweep was abandoned ``max_attempts`` times; returns their ids.

    Compare-and-set per job, so of two workers noticing the same job exactly one fails it.
    """
    stmt = (
        select(Job.id, Job.sweep_attempts)
        .where(abandoned(max_attempts))
        .order_by(Job.created_at, Job.id)
        .limit(ABANDONED_PER_ROUND)
    )
    failed = []
    for job_id, attempts in s.execute(stmt).all():
        error = abandoned_error(attempts, max_attempts, sweep_workers(s, job_id))
        if transition(
            s,
            job_id,
            JobStatus.SWEEPING,
            JobStatus.FAILED,
            where=(abandoned(max_attempts),),
            event=("failed", error),
            worker_id=worker_id,
            error=error,
            sweep_lease_expires_at=None,
        ):
            failed.append(job_id)
    return failed
