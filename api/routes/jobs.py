"""``/v1/jobs``: submit, list, read and cancel tuning jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    CurrentTenant,
    JobDep,
    OptunaStorageDep,
    SessionDep,
    SettingsDep,
    job_or_404,
)
from api.errors import UnprocessableJob, field_error
from api.schemas import JobEventPublic, JobEventsPublic, JobPublic, JobsPublic, error_responses
from tuner import workloads
from tuner.db import events, jobs, optuna_store, workers
from tuner.db.engine import transaction
from tuner.db.models import ACTIVE_JOB_STATUSES
from tuner.db.status import JobStatus
from tuner.settings import Settings
from tuner.spec import JobSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])
# One job's routes: each reads the job, so each answers 404 when the tenant has no such job.
job_router = APIRouter(prefix="/{job_id}", responses=error_responses(404))  # under ``router``
CANCELLED_REASON = "the job was cancelled"
REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {"model": JobPublic, "description": "replay of an idempotent request"}
}
MAX_EVENTS_LISTED = 1000
StatusFilter = Literal["queued", "sweeping", "searching", "completed", "failed", "cancelled"]


def unknown_target(spec: JobSpec, settings: Settings, session: Session) -> dict[str, Any] | None:
    """The error for a workload not installed, or a program that no live worker offers."""
    if spec.program is not None:
        offered = workers.live_programs(session, grace_seconds=settings.grace_period)
        if spec.program in offered:
            return None
        listed = ", ".join(offered) if offered else "none (no live worker has --program)"
        msg = (
            f"no live worker offers program {spec.program!r}; programs offered: {listed}. "
            "Programs are defined on workers (adamtune worker --program NAME='command'), "
            "never in a job"
        )
        return field_error(["body", "program"], msg)
    known = workloads.names()
    if spec.workload in known:
        return None
    msg = f"unknown workload {spec.workload!r}; known workloads: {', '.join(known)}"
    return field_error(["body", "workload"], msg)


def refuse_unservable(spec: JobSpec, settings: Settings, session: Session) -> None:
    """422 for a job this server will not run: unknown workload or program, or budgets over
    its limits."""
    errors = []
    unknown = unknown_target(spec, settings, session)
    if unknown is not None:
        errors.append(unknown)
    limits = [
        (["body", "budget", "trials"], spec.budget.trials, settings.max_trials, "MAX_TRIALS"),
        (
            ["body", "budget", "steps_per_trial"],
            spec.budget.steps_per_trial,
            settings.max_steps_per_trial,
            "MAX_STEPS_PER_TRIAL",
        ),
        (["body", "population"], spec.population, settings.max_population, "MAX_POPULATION"),
    ]
    for loc, value, limit, env in limits:
        if isinstance(value, int) and value > limit:  # population "auto" is capped by the worker
            msg = f"{value} exceeds this server's limit of {limit} (ADAMTUNE_{env}); ask for less"
            errors.append(field_error(loc, msg, "less_than_equal"))
    if errors:
        raise UnprocessableJob(errors)


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    summary="Submit a tuning job",
    responses=error_responses(400, 409, 413) | REPLAYED,
)
def submit_job(
    spec: JobSpec,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a job (202 with ``Location``). A retry with the same ``Idempotency-Key`` and
    body returns the first job (200, ``Idempotent-Replayed: true``), also when the two race;
    the same key with another body is refused (409). Keys are per tenant."""
    refuse_unservable(spec, settings, session)
    if idempotency_key:
        try:
            job, created = jobs.create_job_once(
                session, spec=spec, tenant=tenant, idempotency_key=idempotency_key
            )
        except jobs.IdempotencyKeyReused as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        if not created:
            response.status_code = 200
            response.headers["Idempotent-Replayed"] = "true"
    else:
        job = jobs.create_job(session, spec=spec, tenant=tenant)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobPublic.of(job)


@router.get("", response_model=JobsPublic, summary="List jobs, newest first")
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    status: StatusFilter | None = None,
    workload: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JobsPublic:
    page, total = jobs.list_jobs(
        session, tenant=tenant, status=status, workload=workload, limit=limit, offset=offset
    )
    return JobsPublic(data=[JobPublic.of(j) for j in page], count=total)


@job_router.get("", response_model=JobPublic, summary="A job: status, phase, progress")
async def get_job(job_id: str, request: Request, tenant: CurrentTenant) -> JobPublic:
    """What clients poll. The read and the conversion run in one thread-pool hop (the
    ``JobDep`` way costs four: session open and close, the lookup, the route)."""
    return await run_in_threadpool(_read_job, request.app.state.session_factory, job_id, tenant)


def _read_job(session_factory: Callable[[], Session], job_id: str, tenant: str) -> JobPublic:
    with transaction(session_factory) as session:
        return JobPublic.of(job_or_404(session, job_id, tenant))


@job_router.post(
    "/cancel", response_model=JobPublic, summary="Cancel a job", responses=error_responses(409)
)
def cancel_job(
    job: JobDep, session: SessionDep, tenant: CurrentTenant, storage: OptunaStorageDep
) -> JobPublic:
    """Cancel a queued or running job; workers stop its trials at their next check, and its
    enqueued trials that no worker started end now (failed, reason: the job was cancelled)."""
    if job.status in ACTIVE_JOB_STATUSES:
        job = jobs.request_cancel(session, job.id, tenant) or job
        if job.status == JobStatus.CANCELLED:
            session.commit()  # the cancel first; SQLite allows one writer (Optuna's is next)
            optuna_store.fail_waiting_trials(storage, job.study_name, CANCELLED_REASON)
            return JobPublic.of(job)
    raise HTTPException(
        status_code=409,
        detail=f"job {job.id} is already {job.status}; only queued, sweeping or searching "
        "jobs can be cancelled",
    )


@job_router.get("/events", response_model=JobEventsPublic, summary="A job's history")
def list_job_events(
    job: JobDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_LISTED)] = 100,
) -> JobEventsPublic:
    """What happened to the job and where, oldest first: created, claimed by a worker, LR
    range test done, taken over after a lost lease, failed, cancelled, completed."""
    listed = events.list_events(session, job.id, limit=limit)
    return JobEventsPublic(
        data=[JobEventPublic.model_validate(e) for e in listed], count=len(listed)
    )


router.include_router(job_router)
