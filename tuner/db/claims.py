"""What workers do to the store: claim sweeps under a lease, share searches, finalise once.

Every function takes a Session and never commits (the worker owns the transaction).
Liveness and leases are judged on the database clock (:func:`db_now`), never on a
worker's own clock. Claims are one ``SELECT ... FOR UPDATE SKIP LOCKED`` plus one UPDATE
on PostgreSQL and an atomic compare-and-set UPDATE on SQLite; status changes are
compare-and-set, so of two racing workers exactly one wins.

The trial budget is global. Handing out a trial (count the study's trials, ask one) is
serialised per job by a short lease in ``search_locks``, so N workers never ask more
trials than the budget; see ``tuner.driver.BudgetCount`` for how trials are counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, and_, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from tuner.db import recommendations, sweeps
from tuner.db.jobs import transition
from tuner.db.models import Base, Job
from tuner.db.status import JobStatus
from tuner.db.types import db_now
from tuner.db.upsert import insert_for
from tuner.settings import DEFAULT_MAX_SWEEP_ATTEMPTS

log = logging.getLogger(__name__)

CLAIM_CANDIDATES = 8  # queued jobs looked at per SQLite claim before giving up this round


class SearchLock(Base):
    """The lease that serialises handing out trials of one searching job (owner, expiry)."""

    __tablename__ = "search_locks"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None]


@dataclass(frozen=True)
class LockGrant:
    """A held search lock; ``took_over`` says the previous holder's lease had expired."""

    job_id: str
    owner: str
    took_over_from: str | None
    held: bool = True

    @property
    def took_over(self) -> bool:
        return self.took_over_from is not None


@dataclass(frozen=True)
class LockRefused:
    """The search lock was not granted: another worker holds it, or the job left searching."""

    job_id: str
    searching: bool
    held: bool = False


def _is_postgres(s: Session) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def _claimable(workloads: list[str], max_attempts: int) -> Any:
    """Queued jobs, or sweeping jobs whose lease expired with attempts left, of a workload
    this worker can run."""
    lease_expired = and_(
        Job.status == JobStatus.SWEEPING,
        Job.sweep_lease_expires_at < db_now(),
        Job.sweep_attempts < max_attempts,
    )
    return and_(or_(Job.status == JobStatus.QUEUED, lease_expired), Job.workload.in_(workloads))


def _oldest_claimable(workloads: list[str], max_attempts: int, limit: int) -> Any:
    """The ``limit`` oldest claimable jobs (:func:`_claimable`): id, status, sweep holder."""
    return (
        select(Job.id, Job.status, Job.sweep_worker_id)
        .where(_claimable(workloads, max_attempts))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )


def _lease(s: Session, row: Any, worker_id: str, lease_seconds: float, *where: Any) -> bool:
    """``queued``/``sweeping`` → ``sweeping``, leased to ``worker_id``; records the claim."""
    if row.status == JobStatus.SWEEPING:
        previous = row.sweep_worker_id
        message = f"sweep lease of worker {previous} expired; sweep taken over by {worker_id}"
        event = ("sweep_takeover", message)
    else:
        event = ("claimed", f"LR range test claimed by {worker_id}")
    return transition(
        s,
        row.id,
        row.status,
        JobStatus.SWEEPING,
        where=where,
        event=event,
        worker_id=worker_id,
        sweep_worker_id=worker_id,
        sweep_lease_expires_at=db_now(lease_seconds),
        sweep_attempts=Job.sweep_attempts + 1,
    )


def claim_sweep(
    s: Session,
    worker_id: str,
    workloads: list[str],
    lease_seconds: float,
    max_attempts: int = DEFAULT_MAX_SWEEP_ATTEMPTS,
) -> Job | None:
    """Take the oldest queued job (or a sweep whose lease expired) and lease its sweep.

    Returns the job, now ``sweeping`` and leased to ``worker_id`` for ``lease_seconds``,
    or None when there is nothing to claim. Sweeps already abandoned ``max_attempts`` times
    are failed first (``sweeps.fail_abandoned_sweeps``), never claimed again.
    ``workloads``: the jobs-table ``workload`` values the worker runs, its programs as
    ``program:NAME`` (``Identity.claimable()``), so a program job goes only to a worker
    configured with that program.
    """
    for job_id in sweeps.fail_abandoned_sweeps(s, max_attempts, worker_id):
        log.error("job %s failed: its LR range test was abandoned %d times", job_id,
                  max_attempts)
    if not workloads:
        return None
    if _is_postgres(s):
        return _claim_sweep_postgres(s, worker_id, workloads, lease_seconds, max_attempts)
    return _claim_sweep_cas(s, worker_id, workloads, lease_seconds, max_attempts)


def _claim_sweep_postgres(
    s: Session, worker_id: str, workloads: list[str], lease_seconds: float, max_attempts: int
) -> Job | None:
    row = s.execute(
        _oldest_claimable(workloads, max_attempts, 1).with_for_update(skip_locked=True)
    ).one_or_none()
    if row is None or not _lease(s, row, worker_id, lease_seconds):
        return None
    return _claimed(s, row.id)


def _claim_sweep_cas(
    s: Session, worker_id: str, workloads: list[str], lease_seconds: float, max_attempts: int
) -> Job | None:
    rows = s.execute(_oldest_claimable(workloads, max_attempts, CLAIM_CANDIDATES)).all()
    for row in rows:
        if _lease(s, row, worker_id, lease_seconds, _claimable(workloads, max_attempts)):
            return _claimed(s, row.id)
    return None


def _claimed(s: Session, job_id: str) -> Job:
    job = s.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


def renew_sweep_lease(s: Session, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Extend the sweep lease; False when the worker no longer holds it (expired, cancelled)."""
    stmt = (
        update(Job)
        .where(
            Job.id == job_id, Job.status == JobStatus.SWEEPING, Job.sweep_worker_id == worker_id
        )
        .values(sweep_lease_expires_at=db_now(lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def finish_sweep(s: Session, job_id: str, worker_id: str) -> bool:
    """Move ``sweeping`` → ``searching`` if ``worker_id`` still holds the lease; opens the lock."""
    moved = transition(
        s,
        job_id,
        JobStatus.SWEEPING,
        JobStatus.SEARCHING,
        where=(Job.sweep_worker_id == worker_id,),
        event=("searching", f"LR range test done by {worker_id}"),
        worker_id=worker_id,
        sweep_lease_expires_at=None,
    )
    if moved:
        _ensure_lock_row(s, job_id)
    return moved


def fail_job(
    s: Session, job_id: str, expected: tuple[str, ...], error: str, worker_id: str | None
) -> bool:
    """Move a job from one of ``expected`` to ``failed`` with ``error``; False if it had moved."""
    return transition(
        s,
        job_id,
        expected,
        JobStatus.FAILED,
        event=("failed", error),
        worker_id=worker_id,
        error=error,
        sweep_lease_expires_at=None,
    )


def searching_jobs(s: Session, workloads: list[str], limit: int = 20) -> list[Job]:
    """Searching jobs of a workload or program (``program:NAME``) this worker can run, oldest
    first (first come, first served)."""
    if not workloads:
        return []
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.SEARCHING, Job.workload.in_(workloads))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    return list(s.scalars(stmt))


def job_status(s: Session, job_id: str) -> str | None:
    """The job's status now (None: deleted); what a running trial polls to notice a cancel."""
    return s.scalar(select(Job.status).where(Job.id == job_id))


def _ensure_lock_row(s: Session, job_id: str) -> None:
    stmt = insert_for(s, SearchLock).values(job_id=job_id, owner=None, expires_at=None)
    s.execute(stmt.on_conflict_do_nothing(index_elements=[SearchLock.job_id]))


def acquire_search_lock(
    s: Session, job_id: str, owner: str, ttl_seconds: float
) -> LockGrant | LockRefused:
    """Take the job's search lock for ``ttl_seconds``, only while the job is searching.

    Refused while another live holder has it, or for good once the job left searching.
    An expired lock is taken over (its holder died or stalled): ``took_over_from`` names it,
    so the caller can recover what the holder left half done.
    """
    if _take_lock(s, job_id, owner, ttl_seconds, SearchLock.owner.is_(None)):
        return LockGrant(job_id=job_id, owner=owner, took_over_from=None)
    if job_status(s, job_id) != JobStatus.SEARCHING:
        return LockRefused(job_id, searching=False)
    row = s.execute(select(SearchLock.owner).where(SearchLock.job_id == job_id)).one_or_none()
    if row is None:  # a job that reached searching without its lock row (older data)
        _ensure_lock_row(s, job_id)
        return acquire_search_lock(s, job_id, owner, ttl_seconds)
    if row.owner is None:
        return LockRefused(job_id, searching=True)
    if not _take_lock(s, job_id, owner, ttl_seconds, SearchLock.expires_at < db_now()):
        return LockRefused(job_id, searching=True)
    log.warning("search lock of job %s expired (held by %s); taken over", job_id, row.owner)
    return LockGrant(job_id=job_id, owner=owner, took_over_from=row.owner)


def _take_lock(s: Session, job_id: str, owner: str, ttl_seconds: float, condition: Any) -> bool:
    """Compare-and-set the lock, only while the job is searching (a cancel stops new trials)."""
    searching = (
        select(Job.id).where(Job.id == job_id, Job.status == JobStatus.SEARCHING).exists()
    )
    stmt = (
        update(SearchLock)
        .where(SearchLock.job_id == job_id, condition, searching)
        .values(owner=owner, expires_at=db_now(ttl_seconds))
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def release_search_lock(s: Session, job_id: str, owner: str) -> bool:
    """Release the lock; False when ``owner`` had lost it (expired and taken over meanwhile)."""
    stmt = (
        update(SearchLock)
        .where(SearchLock.job_id == job_id, SearchLock.owner == owner)
        .values(owner=None, expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Progress:
    """What a job's progress shows: finished trials, best and untuned-baseline objectives."""

    trials_completed: int
    best_objective: float | None
    baseline_objective: float | None

    def values(self) -> dict[str, Any]:
        return {
            "trials_completed": self.trials_completed,
            "best_objective": self.best_objective,
            "baseline_objective": self.baseline_objective,
        }


def record_progress(
    s: Session, job_id: str, progress: Progress, partial: dict[str, Any] | None
) -> bool:
    """Update a searching job's progress and its partial recommendation.

    Does nothing (False) once the job has left ``searching``, so a slow worker can never
    overwrite what the finaliser wrote.
    """
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.SEARCHING)
        .values(**progress.values(), updated_at=db_now())
        .execution_options(synchronize_session=False)
    )
    if s.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        return False
    if partial is not None:
        recommendations.upsert_recommendation(s, job_id, partial, final=False)
    return True


def finalise(
    s: Session, job_id: str, progress: Progress, final: dict[str, Any], worker_id: str
) -> bool:
    """``searching`` → ``completed`` with the final recommendation, exactly once.

    The status change and the recommendation are written in the caller's one transaction:
    the worker that wins the compare-and-set writes both, every other one writes nothing.
    """
    message = f"completed: {progress.trials_completed} trials, best {progress.best_objective}"
    moved = transition(
        s,
        job_id,
        JobStatus.SEARCHING,
        JobStatus.COMPLETED,
        event=("completed", message),
        worker_id=worker_id,
        **progress.values(),
    )
    if moved:
        recommendations.upsert_recommendation(s, job_id, final, final=True)
    return moved
