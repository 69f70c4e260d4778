"""Jobs that name a program: the worker's program for a job, its runner, its LR range test.

A program job runs the user's script in a child process for each phase
(:class:`workers.program_runner.ProgramRunner`); everything else (claims, the study, the
budget, the recommendation) is the same as for a workload job. Each job's logs go to one
folder, ``<program log dir>/<job id>/``, which the API reads for
``GET /v1/jobs/{id}/trials/{n}/log`` where it shares the worker's filesystem.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuner.lr_range import SweepInterrupted, SweepResult
from tuner.spec import JobSpec
from tuner.train import StopFn, TrialInterrupted
from workers.program_runner import ProgramRunner
from workers.programs import Program, ProgramError
from workers.runtime import Identity, Runtime

log = logging.getLogger(__name__)


def job_program(identity: Identity, spec: JobSpec) -> Program | None:
    """The worker's program that ``spec`` names; None for a workload job.

    Claims give a program job only to a worker that advertises the program, so a miss means
    the worker was restarted without it: the error says how to fix that.
    """
    if spec.program is None:
        return None
    program = identity.program(spec.program)
    if program is None:
        offered = ", ".join(p.name for p in identity.programs) or "none"
        raise ProgramError(
            f"worker {identity.worker_id} has no program {spec.program!r} (it has: {offered}); "
            f"start it with --program {spec.program}='command ...'"
        )
    return program


def job_log_dir(runtime: Runtime, job_id: str) -> Path:
    return runtime.program_log_dir / job_id


def job_runner(runtime: Runtime, job_id: str) -> ProgramRunner:
    """A runner on this worker's device writing the job's logs to its own folder."""
    return ProgramRunner(runtime.identity.device, job_log_dir(runtime, job_id))


def run_program_sweep(
    runtime: Runtime, job_id: str, spec: JobSpec, should_stop: StopFn
) -> SweepResult:
    """The LR range test of a program job, in a child process.

    Raises SweepInterrupted (as the in-process range test does) when ``should_stop()``
    turns True, and :class:`workers.program_runner.ProgramFailed` with the reason and the
    stderr tail when the program produced no usable curve.
    """
    program = job_program(runtime.identity, spec)
    assert program is not None  # only called for program jobs
    runner = job_runner(runtime, job_id)
    try:
        result = runner.run_sweep(program, spec.sweep, seed=spec.seed, should_stop=should_stop)
    except TrialInterrupted as exc:
        raise SweepInterrupted(f"program sweep stopped at step {exc.step}") from exc
    if runner.last_run is not None:
        log.info("job %s: sweep of program %s done (log %s)", job_id, program.name,
                 runner.last_run.log_path)
    return result
