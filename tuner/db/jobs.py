"""Queries on jobs. Status changes go through :func:`transition` (compare-and-set), so two
workers never both move a job.

Every read takes an optional ``tenant``; the API always passes it, so one tenant never
sees another's jobs. Functions never commit: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tuner.db import events
from tuner.db.models import DEFAULT_TENANT, Job, new_job_id
from tuner.db.status import ACTIVE_JOB_STATUSES, FINISHED_JOB_STATUSES, JobStatus, check_edges
from tuner.db.types import db_now
from tuner.spec import JobSpec


def study_name_for(job_id: str) -> str:
    """The Optuna study of a job; stable, so any worker can load it by the job id alone."""
    return f"adamtune-{job_id}"


def create_job(
    s: Session,
    *,
    spec: JobSpec,
    tenant: str = DEFAULT_TENANT,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    """Insert a queued job for ``spec``; a reused (tenant, idempotency key) raises StoreConflict."""
    job_id = new_job_id()
    job = Job(
        id=job_id,
        tenant=tenant,
        name=spec.name,
        workload=spec.target,  # the workload's name, or program:NAME
        spec=spec.model_dump(mode="json"),
        status=JobStatus.QUEUED,
        study_name=study_name_for(job_id),
        trials_total=spec.budget.trials,
        trials_completed=0,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    s.add(job)
    s.flush()
    events.add_event(s, job_id, "created", f"queued: {spec.target}, {spec.budget.trials} trials")
    return job


class IdempotencyKeyReused(ValueError):
    """An idempotency key sent again with a different job body."""

    def __init__(self, key: str, job_id: str):
        self.key = key
        self.job_id = job_id
        super().__init__(
            f"Idempotency-Key {key!r} was already used for job {job_id} with a different body; "
            "send the same body to get that job back, or use a new key for a new job"
        )


def request_hash(spec: JobSpec) -> str:
    """A fingerprint of the job body, to tell a retried request from a different one."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job_once(
    s: Session, *, spec: JobSpec, tenant: str, idempotency_key: str
) -> tuple[Job, bool]:
    """Create the job unless this tenant already did under this key: (job, created).

    A retried request (same key, same body) gets the first job back; the same key with a
    different body raises :class:`IdempotencyKeyReused`. Two racing requests are settled by
    the unique (tenant, idempotency_key) constraint: the loser's insert is rolled back and
    it returns the winner's job. Call it first in its transaction, since that rollback
    discards whatever the transaction wrote before.
    """
    fingerprint = request_hash(spec)
    existing = get_job_by_idempotency_key(s, tenant, idempotency_key)
    if existing is None:
        try:
            job = create_job(
                s,
                spec=spec,
                tenant=tenant,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
            )
            return job, True
        except IntegrityError:
            s.rollback()
            existing = get_job_by_idempotency_key(s, tenant, idempotency_key)
            if existing is None:
                raise
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(idempotency_key, existing.id)
    return existing, False


def get_job(s: Session, job_id: str, tenant: str | None = None) -> Job | None:
    """The job, or None where it does not exist or belongs to another tenant."""
    if "\x00" in job_id:  # no id has one, and PostgreSQL refuses NUL in text parameters
        return None
    stmt = select(Job).where(Job.id == job_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    return s.scalars(stmt).one_or_none()


def get_job_by_idempotency_key(s: Session, tenant: str, idempotency_key: str) -> Job | None:
    stmt = select(Job).where(Job.tenant == tenant, Job.idempotency_key == idempotency_key)
    return s.scalars(stmt).one_or_none()


def list_jobs(
    s: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    workload: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """One page of jobs, newest first, and the number of jobs matching the filters."""
    conditions = []
    if tenant is not None:
        conditions.append(Job.tenant == tenant)
    if status is not None:
        conditions.append(Job.status == status)
    if workload is not None:
        conditions.append(Job.workload == workload)
    total = s.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    page = s.scalars(
        select(Job)
        .where(*conditions)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(page), int(total)


def transition(
    s: Session,
    job_id: str,
    expected: str | Sequence[str],
    new: str,
    *,
    where: Sequence[Any] = (),
    event: tuple[str, str] | None = None,
    worker_id: str | None = None,
    **fields: Any,
) -> bool:
    """Move a job from one of ``expected`` to ``new``; False when it was not in ``expected``.

    The only writer of a job's status. Every edge ``expected`` → ``new`` must be in
    :data:`tuner.db.status.TRANSITIONS` (:class:`IllegalTransition` otherwise). One
    ``UPDATE ... WHERE status IN (...)`` (and the extra ``where`` conditions): of two callers
    racing from the same status, exactly one wins, and only the winner records ``event``
    (kind, message; by default the new status and the edge) in ``job_events``. Leaving
    ``queued`` stamps ``started_at``, reaching a final status stamps ``finished_at`` (unless
    given in ``fields``). ``fields`` may hold SQL expressions such as ``db_now(+30)``.
    """
    sources = check_edges((expected,) if isinstance(expected, str) else expected, new)
    target = JobStatus(new)
    values: dict[str, Any] = {"status": target, "updated_at": db_now()}
    if target != JobStatus.QUEUED:
        values["started_at"] = func.coalesce(Job.started_at, db_now())
    if target in FINISHED_JOB_STATUSES:
        values["finished_at"] = db_now()
    values.update(fields)
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sources), *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if s.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        return False
    kind, message = event or (str(target), f"{' or '.join(sources)} -> {target}")
    events.add_event(s, job_id, kind, message, worker_id=worker_id)
    return True


def request_cancel(s: Session, job_id: str, tenant: str | None = None) -> Job | None:
    """Cancel a job that has not finished. Returns the job as it now is (None: no such job).

    The returned job's status says what happened: ``cancelled``, or the final status it
    reached before the cancel could win.
    """
    job = get_job(s, job_id, tenant)
    if job is None:
        return None
    transition(
        s,
        job_id,
        ACTIVE_JOB_STATUSES,
        JobStatus.CANCELLED,
        event=("cancelled", "cancelled on request"),
        sweep_lease_expires_at=None,
    )
    s.refresh(job)
    return job
