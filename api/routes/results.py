"""``/v1/jobs/{id}/...``: what a job produced: its LR sweep, its trials, its recommendation."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException

from api.deps import JobDep, OptunaStorageDep, SessionDep
from api.evidence import evidence, shown_importances, trial_counts, user_params
from api.schemas import (
    LRSweepPublic,
    RecommendationPublic,
    TrialPublic,
    TrialsPublic,
    error_responses,
    phase_of,
)
from tuner.db import recommendations, sweeps, trials
from tuner.db.status import ACTIVE_JOB_STATUSES, JobStatus

# Every route here reads one job (``JobDep``): a 404 when the tenant has no such job.
router = APIRouter(prefix="/jobs/{job_id}", tags=["results"], responses=error_responses(404))


@router.get("/lr-sweep", response_model=LRSweepPublic, summary="The LR range test")
def get_lr_sweep(job: JobDep, session: SessionDep) -> LRSweepPublic:
    """The loss against the learning rate, the suggestions and the range the search uses."""
    sweep = sweeps.get_sweep(session, job.id)
    if sweep is None:
        if not job.spec.get("sweep", {}).get("enabled", True):
            reason = "was submitted with sweep.enabled=false, so it has no LR sweep"
        elif job.status in (JobStatus.QUEUED, JobStatus.SWEEPING):
            reason = f"is {job.status} ({phase_of(job)}): its LR sweep is not done yet; poll again"
        else:
            reason = f"is {job.status} and has no LR sweep"
        raise HTTPException(status_code=404, detail=f"job {job.id} {reason}")
    return LRSweepPublic.model_validate(
        {
            **sweep.data,
            "job_id": job.id,
            "worker_id": sweep.worker_id,
            "created_at": sweep.created_at,
        }
    )


@router.get("/trials", response_model=TrialsPublic, summary="The trials of the search")
def list_trials(job: JobDep, storage: OptunaStorageDep) -> TrialsPublic:
    """Every trial of the job's Optuna study, by number, with the worker and device that ran it.

    Empty until the search starts (after the LR sweep)."""
    records = trials.list_trials(storage, job.study_name)
    data = [TrialPublic(**asdict(r), config=user_params(r.params)) for r in records]
    return TrialsPublic(data=data, count=len(records))


@router.get(
    "/recommendation",
    response_model=RecommendationPublic,
    summary="The recommended configuration",
    responses=error_responses(409),
)
def get_recommendation(
    job: JobDep, session: SessionDep, storage: OptunaStorageDep
) -> RecommendationPublic:
    """Partial (``final: false``) while the search runs, final once the job is completed.
    ``evidence`` says how many trials each number rests on; importances fitted on fewer
    than 5 completed searched trials are withheld (``evidence.importances_hidden``)."""
    rec = recommendations.get_recommendation(session, job.id)
    if rec is None:
        if job.status in ACTIVE_JOB_STATUSES:
            detail = (
                f"job {job.id} has no recommendation yet: it is {job.status} ({phase_of(job)}); "
                "one appears once a trial completes, poll again"
            )
        elif job.status == JobStatus.FAILED:
            detail = f"job {job.id} failed before any recommendation: {job.error or 'no reason'}"
        else:
            detail = f"job {job.id} is {job.status} and has no recommendation"
        raise HTTPException(status_code=409, detail=detail)
    counts = trial_counts([asdict(r) for r in trials.list_trials(storage, job.study_name)])
    return RecommendationPublic.model_validate(
        {
            **rec.body,
            "importances": shown_importances(rec.body, counts),
            "evidence": evidence(rec.body, counts),
            "job_id": job.id,
            "final": rec.final,
            "updated_at": rec.updated_at,
        }
    )
