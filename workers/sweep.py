"""The sweep phase: run the LR range test of a claimed job, store it, open the search.

The worker holds the sweep under a lease that its heartbeat thread renews; if the worker
dies, the lease expires (database clock) and another worker claims the sweep again. A
sweep already stored by a worker that died just after is reused, not run twice.
"""

from __future__ import annotations

import logging
from threading import Event
from typing import Any

from tuner.db import claims, sweeps
from tuner.db.engine import transaction
from tuner.db.models import Job
from tuner.db.status import JobStatus
from tuner.lr_range import SweepInterrupted, run_lr_range_test
from workers.context import job_spec, load_workload, open_or_create_study
from workers.heartbeat import HeartbeatThread
from workers.program_jobs import run_program_sweep
from workers.program_runner import ProgramFailed
from workers.programs import ProgramError
from workers.runtime import Runtime

log = logging.getLogger(__name__)


def run_sweep(
    runtime: Runtime, heartbeat: HeartbeatThread, job: Job, stopping: Event | None = None
) -> None:
    """Sweep ``job`` (already claimed) and move it to ``searching``, or fail it with the reason.

    ``stopping`` (the worker's SIGTERM): a program's sweep, which may run long, is handed
    back at once; an in-process one is short and finishes."""
    heartbeat.watch(job.id, sweeping=True)
    try:
        data = stored_sweep(runtime, job.id)
        if data is None:
            data = sweep_and_save(runtime, heartbeat, job, stopping)
            if data is None:
                return
        lr_range = data.get("lr_range") if data else None
        open_or_create_study(runtime, job.study_name, job_spec(job), lr_range)
        with transaction(runtime.sessions) as s:
            moved = claims.finish_sweep(s, job.id, runtime.identity.worker_id)
        if moved:
            log.info("job %s: LR range test done, searching (lr range %s)", job.id, lr_range)
        else:
            log.warning("job %s: the sweep lease was lost before the search could start", job.id)
    finally:
        heartbeat.idle()


def hand_back_sweep(runtime: Runtime, heartbeat: HeartbeatThread, job: Job) -> None:
    """The worker is stopping: end the sweep lease now, so another worker claims it at once."""
    heartbeat.idle()  # no more renewals of the lease
    with transaction(runtime.sessions) as s:
        claims.renew_sweep_lease(s, job.id, runtime.identity.worker_id, 0)
    log.warning("job %s: LR range test handed back: the worker is stopping", job.id)


def _lost(heartbeat: HeartbeatThread) -> bool:
    """The sweep is no longer this worker's: its lease was lost, or the job was stopped."""
    return heartbeat.lease_lost.is_set() or heartbeat.job_stopped.is_set()


def stored_sweep(runtime: Runtime, job_id: str) -> dict[str, Any] | None:
    with transaction(runtime.sessions) as s:
        row = sweeps.get_sweep(s, job_id)
        return None if row is None else dict(row.data)


def sweep_and_save(
    runtime: Runtime, heartbeat: HeartbeatThread, job: Job, stopping: Event | None = None
) -> dict[str, Any] | None:
    """Run the LR range test (or skip it when disabled) and store it while the lease holds.

    Returns the stored sweep ({} when disabled), or None when the job was failed, cancelled
    or taken over meanwhile.
    """
    worker_id = runtime.identity.worker_id
    spec = job_spec(job)
    if not spec.sweep.enabled:
        return {}
    log.info("job %s: LR range test of %s (%d steps) on %s", job.id, spec.target,
             spec.sweep.steps, runtime.identity.device)
    try:
        if spec.program is not None:
            result = run_program_sweep(runtime, job.id, spec, lambda: _lost(heartbeat) or (
                stopping is not None and stopping.is_set()))
        else:
            workload = load_workload(spec.workload or "")
            result = run_lr_range_test(workload, seed=spec.seed, device=runtime.identity.device,
                                       spec=spec.sweep, should_stop=lambda: _lost(heartbeat))
    except SweepInterrupted:
        if stopping is not None and stopping.is_set() and not _lost(heartbeat):
            hand_back_sweep(runtime, heartbeat, job)
            return None
        log.warning("job %s: stopped its LR range test: the sweep lease was lost (taken over) "
                    "or the job left sweeping (cancelled)", job.id)
        return None
    except Exception as exc:  # the workload's own error: the job cannot be tuned as it is
        log.exception("job %s: LR range test failed", job.id)
        why = str(exc) if isinstance(exc, ProgramFailed | ProgramError) else (
            f"{type(exc).__name__}: {exc}")
        error = f"LR range test failed: {why}"
        with transaction(runtime.sessions) as s:
            claims.fail_job(s, job.id, (JobStatus.SWEEPING,), error, worker_id)
        return None
    data = result.to_dict()
    with transaction(runtime.sessions) as s:
        if not claims.renew_sweep_lease(s, job.id, worker_id, runtime.timing.sweep_lease):
            log.warning("job %s: no longer holds the sweep (cancelled or taken over); "
                        "discarding the result", job.id)
            return None
        sweeps.save_sweep(s, job.id, data, worker_id)
    return data
