"""Request and response bodies of the REST API, apart from the ORM models.

The request body of ``POST /v1/jobs`` is :class:`tuner.spec.JobSpec` itself (the job file).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuner.db.models import Job
from tuner.db.status import JobStatus
from tuner.db.types import finite_or_none
from tuner.db.workers import WorkerState
from tuner.spec import program_of

PHASES = {
    JobStatus.QUEUED: "waiting for a worker",
    JobStatus.SWEEPING: "LR range test",
    JobStatus.COMPLETED: "done",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def phase_of(job: Job) -> str:
    """A human phrase for where the job is, e.g. ``search: 7/24 trials``."""
    if job.status == JobStatus.SEARCHING:
        return f"search: {job.trials_completed}/{job.trials_total} trials"
    return PHASES.get(job.status, job.status)


class Progress(BaseModel):
    trials_completed: int
    trials_total: int
    best_objective: float | None = None


class JobLinks(BaseModel):
    self: str
    cancel: str
    lr_sweep: str
    trials: str
    recommendation: str
    events: str


class JobPublic(BaseModel):
    id: str
    name: str | None
    workload: str | None = Field(description="the workload trained; null for a program job")
    program: str | None = Field(
        None, description="the program (a worker's training script) run; null for a workload job"
    )
    status: str
    phase: str
    progress: Progress
    baseline_objective: float | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        base = f"/v1/jobs/{job.id}"
        return cls(
            id=job.id,
            name=job.name,
            workload=None if program_of(job.workload) else job.workload,
            program=program_of(job.workload),
            status=job.status,
            phase=phase_of(job),
            progress=Progress(
                trials_completed=job.trials_completed,
                trials_total=job.trials_total,
                best_objective=finite_or_none(job.best_objective),
            ),
            baseline_objective=finite_or_none(job.baseline_objective),
            error=job.error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            links=JobLinks(
                self=base,
                cancel=f"{base}/cancel",
                lr_sweep=f"{base}/lr-sweep",
                trials=f"{base}/trials",
                recommendation=f"{base}/recommendation",
                events=f"{base}/events",
            ),
        )


class JobsPublic(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="jobs matching the filters, on every page")


class JobEventPublic(BaseModel):
    """One thing that happened to a job (created, claimed, searching, completed, ...)."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="increases with time; events are listed in this order")
    at: datetime
    kind: str = Field(description="a short word: created, claimed, searching, failed, ...")
    message: str
    worker_id: str | None


class JobEventsPublic(BaseModel):
    data: list[JobEventPublic]
    count: int = Field(description="events in data (the oldest first)")


def _numbers(values: list[Any]) -> list[float | None]:
    return [finite_or_none(v) for v in values]


class LRSweepPublic(BaseModel):
    """The LR range test; non-finite losses (divergence) are null."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    worker_id: str | None
    created_at: datetime
    lrs: list[float | None]
    losses: list[float | None]
    smoothed: list[float | None]
    suggestions: dict[str, float | None]
    lr_range: dict[str, float | None]
    stop_reason: str | None = None

    @field_validator("lrs", "losses", "smoothed", mode="before")
    @classmethod
    def _finite_lists(cls, values: list[Any]) -> list[float | None]:
        return _numbers(values)

    @field_validator("suggestions", "lr_range", mode="before")
    @classmethod
    def _finite_maps(cls, values: dict[str, Any]) -> dict[str, float | None]:
        return {k: finite_or_none(v) for k, v in values.items()}


class TrialPublic(BaseModel):
    number: int
    state: str = Field(description="running, complete, pruned, fail or waiting")
    params: dict[str, Any] = Field(description="as searched (e.g. one_minus_beta2, wd_times_lr)")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="the same parameters as a user types them (beta2, weight_decay)",
    )
    value: float | None
    worker_id: str | None
    device: str | None
    reason: str | None = Field(description="why a trial was pruned or failed")
    role: str | None = Field(
        description="baseline, sweep_suggestion, schedule_suggestion (the seeded trials) or search"
    )
    steps: int | None = Field(None, description="optimizer steps the trial took, once finished")
    population: int | None = Field(
        None, description="trials trained together with this one as a population (None: alone)"
    )
    datetime_start: datetime | None
    datetime_complete: datetime | None


class TrialsPublic(BaseModel):
    data: list[TrialPublic]
    count: int


class LRRange(BaseModel):
    model_config = ConfigDict(extra="allow")

    low: float | None = None
    suggested: float | None = None
    high: float | None = None


class Evidence(BaseModel):
    """The trials behind a recommendation's numbers (seeded trials: baseline, suggestions)."""

    trials_finished: int = Field(description="complete + pruned, as progress counts them")
    trials_complete: int
    searched_complete: int = Field(description="complete trials the sampler chose")
    seeded_complete: int
    expected_objective_trials: int = Field(description="the best trial alone")
    lr_band_trials: int | None = Field(description="trials within 1% of the best loss")
    importances_trials: int | None = Field(description="searched trials they were fitted on")
    importances_hidden: str | None = Field(description="why importances are withheld")


class RecommendationPublic(BaseModel):
    """The recommended configuration; ``final`` is false while the search still runs."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    final: bool
    updated_at: datetime
    optimizer: str | None = Field(None, description="adam or adamw")
    lr: float | None = Field(None, description="the peak learning rate, reached after warmup")
    betas: list[float] | None = Field(None, description="[beta1, beta2]")
    eps: float | None = None
    weight_decay: float | None = Field(
        None, description="Adam: L2 added to the gradient; AdamW: decoupled (times lr)"
    )
    schedule: str | None = Field(None, description="after warmup: constant, linear or cosine")
    warmup_steps: int | None = Field(None, description="linear warmup, out of total_steps")
    total_steps: int | None = Field(None, description="the schedule's length: steps per trial")
    expected_objective: float | None = Field(
        None, description="mean validation objective over objective_seeds (spread: objective_std)"
    )
    baseline_objective: float | None = Field(
        None, description="the untuned default's (Adam, lr 1e-3), measured the same way"
    )
    lr_range: LRRange | None = Field(None, description="what the LR range test suggested")
    snippet: str | None = Field(None, description="PyTorch code: this optimizer and its scheduler")
    evidence: Evidence | None = Field(
        None, description="how many trials each number rests on; what is hidden, and why"
    )


class WorkloadPublic(BaseModel):
    name: str
    description: str


class WorkloadsPublic(BaseModel):
    data: list[WorkloadPublic]
    count: int


class DeviceInfoPublic(BaseModel):
    """A worker's device as its last heartbeat saw it (NVML on CUDA, /proc on CPU)."""

    kind: str = Field(description="cpu or cuda")
    name: str | None = Field(None, description="e.g. NVIDIA H100 80GB HBM3, or the CPU model")
    uuid: str | None = Field(None, description="the GPU's UUID (CUDA only)")
    index: int | None = Field(
        None, description="the GPU's number in nvidia-smi (a pinned worker sees it as cuda:0)"
    )
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = Field(
        None, description="on the GPU: all its processes; on CPU: this worker's resident memory"
    )
    utilisation_percent: float | None = Field(
        None, description="GPU busy time (NVML), or this worker's share of its CPU cores"
    )


class ProgramPublic(BaseModel):
    """A program a worker offers: its name and time limit; never its command."""

    name: str
    time_limit: float | None = Field(None, description="seconds per run (null: no limit)")


class WorkerPublic(BaseModel):
    id: str
    hostname: str = Field(description="the machine it runs on")
    pid: int = Field(description="its process id on that machine")
    device: str = Field(description="what it trains on: cpu or cuda:N")
    workloads: list[str] = Field(description="the workloads whose jobs it claims")
    status: str = Field(description="running, stopping, stopped or lost (silent too long)")
    alive: bool = Field(description="heartbeat within the grace period (database clock)")
    current_job_id: str | None
    started_at: datetime
    last_heartbeat: datetime
    device_info: DeviceInfoPublic | None = Field(
        None, description="name, memory and utilisation of the device (null: not reported)"
    )
    programs: list[ProgramPublic] = Field(
        default_factory=list, description="the programs it runs (jobs name them in `program`)"
    )

    @classmethod
    def of(cls, state: WorkerState) -> WorkerPublic:
        return cls.model_validate(state, from_attributes=True)


class WorkersPublic(BaseModel):
    data: list[WorkerPublic]
    count: int


class Health(BaseModel):
    status: str
    database: str | None = None


class ErrorMessage(BaseModel):
    """Every error other than a 422: what was wrong and how to fix it."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    described = {
        400: "the body could not be read (not UTF-8 JSON)",
        401: "an API key is required (keys exist) and was missing, unknown or revoked",
        404: "no such job for this tenant, or nothing there yet",
        409: "the job is not in a state that allows this",
        413: "the request body is too large",
        500: "a bug: the detail gives the request id to report",
        503: "the database is unavailable; retry later",
    }
    return {code: {"model": ErrorMessage, "description": described[code]} for code in codes}
