"""Everything a worker needs to run trials of one job, loaded once and kept while it searches."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna

from tuner import search, space
from tuner.db import sweeps
from tuner.db.engine import transaction
from tuner.db.models import Job
from tuner.spec import JobSpec
from tuner.workloads import Workload, registry
from workers.program_jobs import job_program, job_runner
from workers.program_runner import ProgramRunner
from workers.programs import Program
from workers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """One searching job as a worker sees it: spec, workload, study and resolved space."""

    job_id: str
    study_name: str
    spec: JobSpec
    workload: Workload | None  # None for a program job
    study: optuna.Study
    space: Any  # tuner.space.ResolvedSpace
    sweep: dict[str, Any] | None
    total: int
    partial_best: int | None = None  # best trial number of the last partial recommendation
    partial_at: float = 0.0  # time.monotonic() when this worker last wrote one
    importances: dict[str, float] | None = None  # last fitted for a partial recommendation
    importances_at: float = 0.0  # time.monotonic() when this worker last fitted them
    reaped_at: float = 0.0  # time.monotonic() when this worker last failed stale trials
    finished_seen: int = 0  # finished trials at this worker's last count
    progress_pending: bool = False  # trials told since this worker last wrote progress
    program: Program | None = None  # the worker's program a program job names
    runner: ProgramRunner | None = None  # runs it, logs in the job's folder


def job_spec(job: Job) -> JobSpec:
    """The job's spec as validated when it was submitted."""
    return JobSpec.model_validate(job.spec)


def load_workload(name: str) -> Workload:
    return registry.get(name)


def open_or_create_study(
    runtime: Runtime, study_name: str, spec: JobSpec, lr_range: dict[str, float] | None
) -> optuna.Study:
    """Create the job's study (enqueuing the baseline and the sweep's suggestion) or load it.

    A sweep taken over from a dead worker, or retried after a lost connection, may find the
    study already there: it is loaded, never created twice, and a setup cut short is
    finished without enqueuing a first trial twice (``resume``: the caller holds the job's
    sweep lease, so no other worker sets the study up meanwhile).
    """
    return search.open_study(runtime.storage, study_name, spec, lr_range, create=True,
                             resume=True)


def load_context(runtime: Runtime, job: Job) -> JobContext:
    """Load what the worker needs to run trials of a searching job."""
    spec = job_spec(job)
    with transaction(runtime.sessions) as s:
        row = sweeps.get_sweep(s, job.id)
        sweep = None if row is None else dict(row.data)
    lr_range = None if sweep is None else sweep.get("lr_range")
    study = search.open_study(runtime.storage, job.study_name, spec, lr_range, create=False)
    program = job_program(runtime.identity, spec)
    return JobContext(
        job_id=job.id,
        study_name=job.study_name,
        spec=spec,
        workload=None if program is not None else load_workload(spec.workload or ""),
        study=study,
        space=space.resolve_space(spec, lr_range),
        sweep=sweep,
        total=job.trials_total,
        program=program,
        runner=None if program is None else job_runner(runtime, job.id),
    )


class ContextCache:
    """Job contexts by job id; a job leaves the cache once it stops searching."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self._contexts: dict[str, JobContext] = {}

    def get(self, job: Job) -> JobContext:
        ctx = self._contexts.get(job.id)
        if ctx is None:
            ctx = load_context(self.runtime, job)
            self._contexts[job.id] = ctx
        return ctx

    def put(self, ctx: JobContext) -> None:
        """Preload a context (a benchmark's in-process workload, say)."""
        self._contexts[ctx.job_id] = ctx

    def peek(self, job_id: str) -> JobContext | None:
        """The context if already loaded (the heartbeat thread never loads one)."""
        return self._contexts.get(job_id)

    def keep_only(self, job_ids: set[str]) -> None:
        for job_id in set(self._contexts) - job_ids:
            del self._contexts[job_id]
