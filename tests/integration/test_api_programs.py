"""Program jobs over REST: a job names a program that live workers offer, never a command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner.db import workers
from tuner.db.models import Job, Worker
from tuner.db.types import db_now
from tuner.settings import Settings
from workers.programs import parse_program_option

SECRET_COMMAND = "python /srv/secret/train.py --token s3cr3t"


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=migrated_url, auth="disabled", grace_period=30)
    with TestClient(create_app(settings)) as c:
        yield c


def register(url: str, worker_id: str, *programs: str) -> None:
    described = [parse_program_option(p).describe() for p in programs]

    def insert(s: Session) -> None:
        workers.register_worker(
            s, worker_id=worker_id, hostname="node", pid=1, device="cpu",
            workloads=["digits_mlp"], programs=described,
        )

    in_store(url, insert)


def program_job(name: str = "digits") -> dict:
    body = job_body(program=name)
    del body["workload"]
    return body


def test_a_program_no_worker_offers_is_422_listing_the_offered_ones(
    client: TestClient, migrated_url: str
) -> None:
    register(migrated_url, "w1", f"digits={SECRET_COMMAND}", "mnist=python mnist.py")
    r = client.post("/v1/jobs", json=program_job("resnet"))
    assert r.status_code == 422, r.text
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "program"]
    assert "no live worker offers program 'resnet'" in err["msg"]
    assert "programs offered: digits, mnist" in err["msg"]
    assert "s3cr3t" not in r.text


def test_with_no_programs_anywhere_the_422_says_how_to_define_one(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=program_job())
    assert r.status_code == 422
    assert "none (no live worker has --program)" in r.json()["detail"][0]["msg"]


def test_a_dead_workers_programs_are_not_offered(client: TestClient, migrated_url: str) -> None:
    register(migrated_url, "w-dead", "digits=python train.py")
    in_store(migrated_url, lambda s: s.execute(
        update(Worker).values(last_heartbeat=db_now(-3600))
    ))
    r = client.post("/v1/jobs", json=program_job())
    assert r.status_code == 422 and "programs offered: none" in r.text


def test_a_program_job_is_queued_and_shows_its_program(
    client: TestClient, migrated_url: str
) -> None:
    register(migrated_url, "w1", "digits=python train.py")
    r = client.post("/v1/jobs", json=program_job())
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["program"] == "digits" and job["workload"] is None
    stored = in_store(migrated_url, lambda s: s.get(Job, job["id"]).workload)
    assert stored == "program:digits"  # what claims match against a worker's programs
    listed = client.get("/v1/jobs").json()["data"]
    assert [(j["program"], j["workload"]) for j in listed] == [("digits", None)]
    workload_job = client.post("/v1/jobs", json=job_body()).json()
    assert workload_job["workload"] == "digits_mlp" and workload_job["program"] is None


def test_workers_list_their_programs_never_the_commands(
    client: TestClient, migrated_url: str
) -> None:
    register(migrated_url, "w1", f"digits={SECRET_COMMAND}")
    r = client.get("/v1/workers")
    [worker] = r.json()["data"]
    assert worker["programs"] == [{"name": "digits", "time_limit": None}]
    assert "secret" not in r.text and "python" not in r.text


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"program": "python train.py --evil", "budget": {"trials": 4}}, "never a command"),
        ({"program": "digits", "command": SECRET_COMMAND}, "unknown field"),
        ({"program": "digits", "working_directory": "/"}, "unknown field"),
        ({"program": "digits", "environment": {"LD_PRELOAD": "x.so"}}, "unknown field"),
        ({"program": "../../bin/sh"}, "never a command"),
    ],
)
def test_a_request_can_never_carry_a_command(
    client: TestClient, migrated_url: str, body: dict, fragment: str
) -> None:
    register(migrated_url, "w1", "digits=python train.py")
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.text
    assert in_store(migrated_url, lambda s: s.scalar(select(func.count()).select_from(Job))) == 0


@pytest.fixture
def logs_client(migrated_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=migrated_url, auth="disabled",
                        program_log_dir=str(tmp_path / "logs"))
    with TestClient(create_app(settings)) as c:
        yield c


def _job_with_trials(client: TestClient, url: str, *attrs: dict) -> str:
    register(url, "w1", "digits=python train.py")
    job_id: str = client.post("/v1/jobs", json=program_job()).json()["id"]
    study = optuna.create_study(storage=url, study_name=f"adamtune-{job_id}")
    for user_attrs in attrs:
        study.add_trial(optuna.create_trial(value=1.0, user_attrs=user_attrs))
    return job_id


def test_a_program_trials_log_tail_is_served(
    logs_client: TestClient, migrated_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "logs" / "job"
    folder.mkdir(parents=True)
    short, long = folder / "digits-trial-0.log", folder / "digits-trial-1.log"
    short.write_text("step 0 loss 2.3\nTraceback: boom\n")
    long.write_bytes(b"x" * 100_000 + b"\nlast line\n")
    job_id = _job_with_trials(logs_client, migrated_url, {"log": str(short)}, {"log": str(long)})
    r = logs_client.get(f"/v1/jobs/{job_id}/trials/0/log")
    assert r.status_code == 200 and r.headers["x-log-truncated"] == "false"
    assert r.text == "step 0 loss 2.3\nTraceback: boom\n"
    r = logs_client.get(f"/v1/jobs/{job_id}/trials/1/log")
    assert r.headers["x-log-truncated"] == "true" and r.text.endswith("last line\n")
    assert len(r.content) == 64 * 1024


def test_a_log_the_api_cannot_read_is_a_404_saying_why(
    logs_client: TestClient, migrated_url: str, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.log"
    outside.write_text("secret")
    job_id = _job_with_trials(
        logs_client, migrated_url,
        {"log": str(outside), "worker_id": "gpu-node-7"},
        {"log": str(tmp_path / "logs" / "job" / "gone.log"), "worker_id": "gpu-node-7"},
        {},
    )
    for number in (0, 1):
        r = logs_client.get(f"/v1/jobs/{job_id}/trials/{number}/log")
        assert r.status_code == 404 and "secret" not in r.text
        assert "on gpu-node-7's filesystem, which this API does not share" in r.json()["detail"]
    r = logs_client.get(f"/v1/jobs/{job_id}/trials/2/log")
    assert r.status_code == 404 and "only the trials of program jobs" in r.json()["detail"]
    r = logs_client.get(f"/v1/jobs/{job_id}/trials/9/log")
    assert r.status_code == 404 and f"job {job_id} has no trial 9" in r.json()["detail"]
