"""Claims of program jobs on SQLite and PostgreSQL: only a worker with the program gets one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tuner.db import claims, jobs
from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.spec import parse_job
from workers.program_jobs import job_program
from workers.programs import ProgramError, parse_program_option
from workers.runtime import Identity

LEASE = 60.0


@pytest.fixture
def sessions(migrated_url: str) -> Iterator[Any]:
    engine = make_engine(migrated_url)
    yield make_session_factory(engine)
    engine.dispose()


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
