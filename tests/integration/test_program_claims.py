"""Claims of program jobs on SQLite and PostgreSQL: only a worker with the program gets one."""

from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tuner.db import claims, jobs, sweeps
from tuner.db.engine import transaction
from tuner.db.models import Job
from tuner.settings import Settings
from tuner.spec import parse_job
from workers.heartbeat import HeartbeatThread
from workers.program_jobs import job_program
from workers.programs import ProgramError, parse_program_option
from workers.runtime import Identity, Runtime
from workers.sweep import sweep_and_save

LEASE = 60.0


def _submit(sessions: Any, **target: str) -> str:
    body = {**target, "budget": {"trials": 3, "steps_per_trial": 10, "eval_every": 10}}
    with transaction(sessions) as s:
        return jobs.create_job(s, spec=parse_job(body)).id


def _identity(worker_id: str, *programs: str) -> Identity:
    return Identity(worker_id=worker_id, device="cpu", workloads=("digits_mlp",),
                    programs=tuple(parse_program_option(p) for p in programs))


def test_a_program_job_goes_only_to_a_worker_with_that_program(sessions: Any) -> None:
    job_id = _submit(sessions, program="digits")
    plain, other = _identity("w-plain"), _identity("w-other", "mnist=python mnist.py")
    able = _identity("w-able", "digits=python train.py")
    with transaction(sessions) as s:
        assert claims.claim_sweep(s, plain.worker_id, plain.claimable(), LEASE) is None
        assert claims.claim_sweep(s, other.worker_id, other.claimable(), LEASE) is None
        job = claims.claim_sweep(s, able.worker_id, able.claimable(), LEASE)
        assert job is not None and job.id == job_id and job.sweep_worker_id == "w-able"
        assert claims.finish_sweep(s, job_id, able.worker_id)
    with transaction(sessions) as s:
        assert claims.searching_jobs(s, plain.claimable()) == []
        assert [j.id for j in claims.searching_jobs(s, able.claimable())] == [job_id]


def test_a_workload_job_is_not_taken_for_a_program_of_the_same_name(sessions: Any) -> None:
    _submit(sessions, workload="digits_mlp")
    only_program = Identity(worker_id="w", device="cpu", workloads=(),
                            programs=(parse_program_option("digits_mlp=python x.py"),))
    with transaction(sessions) as s:
        assert claims.claim_sweep(s, "w", only_program.claimable(), LEASE) is None


def test_a_worker_restarted_without_the_program_says_how_to_fix_it() -> None:
    spec = parse_job({"program": "digits"})
    with pytest.raises(ProgramError, match="start it with --program digits="):
        job_program(_identity("w", "mnist=python mnist.py"), spec)
    assert job_program(_identity("w"), parse_job({"workload": "digits_mlp"})) is None


def _program_runtime(url: str, tmp_path: Path, name: str, program: str) -> Runtime:
    settings = Settings(database_url=url, heartbeat_interval=1, grace_period=3,
                        poll_interval=0.05, program_log_dir=str(tmp_path / "logs"))
    identity = Identity(worker_id=name, device="cpu", programs=(parse_program_option(program),))
    return Runtime.open(settings, identity)


def _claimed_program_job(sessions: Any, runtime: Runtime) -> Any:
    _submit(sessions, program="slow")
    with transaction(sessions) as s:
        job = claims.claim_sweep(s, runtime.identity.worker_id, runtime.identity.claimable(),
                                 LEASE)
    assert job is not None
    return job


def test_sigterm_hands_a_program_sweep_back_at_once(
    migrated_url: str, sessions: Any, tmp_path: Path
) -> None:
    """The first SIGTERM stops a running program sweep and ends its lease, so that another
    worker claims it without waiting for the lease to expire."""
    sleeper = f"slow={shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"
    runtime = _program_runtime(migrated_url, tmp_path, "w-a", sleeper)
    stopping = threading.Event()
    try:
        job = _claimed_program_job(sessions, runtime)
        heartbeat = HeartbeatThread(runtime, lambda _job_id: None)
        heartbeat.watch(job.id, sweeping=True)
        threading.Timer(1.0, stopping.set).start()
        assert sweep_and_save(runtime, heartbeat, job, stopping) is None
    finally:
        runtime.close()
    with transaction(sessions) as s:
        assert sweeps.get_sweep(s, job.id) is None
        taken = claims.claim_sweep(s, "w-b", ["program:slow"], LEASE)
        assert taken is not None and taken.id == job.id and taken.sweep_worker_id == "w-b"


def test_a_program_that_crashes_in_its_sweep_fails_the_job_with_the_reason(
    migrated_url: str, sessions: Any, tmp_path: Path
) -> None:
    crasher = f"slow={shlex.quote(sys.executable)} -c 'raise SystemExit(\"no data at /data\")'"
    runtime = _program_runtime(migrated_url, tmp_path, "w-a", crasher)
    try:
        job = _claimed_program_job(sessions, runtime)
        heartbeat = HeartbeatThread(runtime, lambda _job_id: None)
        heartbeat.watch(job.id, sweeping=True)
        assert sweep_and_save(runtime, heartbeat, job) is None
    finally:
        runtime.close()
    with transaction(sessions) as s:
        failed = s.get(Job, job.id, populate_existing=True)
        assert failed is not None and failed.status == "failed"
        assert failed.error is not None
        assert "LR range test failed: sweep of program 'slow'" in failed.error
        assert "exited with code 1" in failed.error and "no data at /data" in failed.error
    assert (tmp_path / "logs" / job.id / "slow-sweep.log").is_file()  # the job's own folder
