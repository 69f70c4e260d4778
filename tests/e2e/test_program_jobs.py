"""Program jobs end to end: the API and two workers configured with the plain-loop example.

Real processes on SQLite and PostgreSQL: a job naming ``program: digits`` is swept and
searched by the user's script (a child process per phase) and completes with a
recommendation; a job naming a program no worker offers is a 422 listing ``digits``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Service, wait_until
from tuner.client import ApiError

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "examples" / "programs" / "train.py"
# The worker's own interpreter, so the child imports the same torch and adamtune.
PROGRAM = f"digits={shlex.quote(sys.executable)} {shlex.quote(str(TRAIN))} --batch-size 32"
CRASHING = PROGRAM.replace("digits=", "crashing=", 1) + " --crash-at 5"
JOB_TIMEOUT_S = 240.0
JOB = {
    "name": "digits program",
    "program": "digits",
    "seed": 3,
    "budget": {"trials": 3, "steps_per_trial": 60, "eval_every": 20},
    "sweep": {"steps": 30},
}


def _start(service: Service, tmp_path: Path) -> None:
    env = {"ADAMTUNE_PROGRAM_LOG_DIR": str(tmp_path / "program-logs")}  # shared with the API
    service.start_api(env=env)
    for name in ("worker-a", "worker-b"):
        service.start_worker(name, "--program", PROGRAM, "--program", CRASHING, env=env)
    wait_until(
        lambda: sum(w["alive"] for w in _workers(service)) == 2, 90, "both workers registered"
    )


def _workers(service: Service) -> list[dict]:
    data: list[dict] = httpx.get(f"{service.api_url}/v1/workers").json()["data"]
    return data


def test_a_program_job_completes_with_a_recommendation(service: Service, tmp_path: Path) -> None:
    _start(service, tmp_path)
    client = service.client()
    workers = _workers(service)
    assert {w["id"]: w["programs"] for w in workers} == {
        "worker-a": [
            {"name": "digits", "time_limit": None},
            {"name": "crashing", "time_limit": None},
        ],
        "worker-b": [
            {"name": "digits", "time_limit": None},
            {"name": "crashing", "time_limit": None},
        ],
    }
    assert str(TRAIN) not in str(workers)  # a worker never shows its command

    job = client.submit(JOB)
    assert job["program"] == "digits" and job["workload"] is None
    done = client.wait(job["id"], timeout=JOB_TIMEOUT_S, poll=0.5)
    assert done["status"] == "completed", (done, service.all_logs())
    assert done["progress"]["trials_completed"] == 3

    sweep = client.lr_sweep(job["id"])
    assert len(sweep["lrs"]) == len(sweep["losses"]) >= 10  # the curve the program reported
    low, suggested, high = (sweep["lr_range"][k] for k in ("low", "suggested", "high"))
    assert low < suggested < high

    trials = client.trials(job["id"])
    assert len([t for t in trials if t["state"] in ("complete", "pruned")]) == 3
    assert {t["worker_id"] for t in trials} <= {"worker-a", "worker-b"}
    logs = list((tmp_path / "program-logs" / job["id"]).glob("digits-*.log"))
    assert any(p.name.startswith("digits-trial-") for p in logs), logs  # one folder per job
    log = httpx.get(f"{service.api_url}/v1/jobs/{job['id']}/trials/{trials[0]['number']}/log")
    assert log.status_code == 200, log.text
    assert log.headers["x-log-truncated"] == "false"
    page = httpx.get(f"{service.api_url}/jobs/{job['id']}")
    assert page.status_code == 200  # the job page links each best trial's log
    assert any(f'href="/v1/jobs/{job["id"]}/trials/{t["number"]}/log"' in page.text for t in trials)

    rec = client.recommendation(job["id"])
    assert rec["final"] is True
    assert rec["optimizer"] in ("adam", "adamw") and rec["lr"] > 0
    assert rec["baseline_objective"] is not None  # the untuned default ran as a program too
    assert rec["references"] in ([], {}, None)  # no Schedule-Free/Prodigy for a user's loop


def test_a_job_naming_an_unknown_program_is_422_listing_digits(
    service: Service, tmp_path: Path
) -> None:
    _start(service, tmp_path)
    with pytest.raises(ApiError) as refused:
        service.client().submit({**JOB, "program": "resnet"})
    assert refused.value.status == 422
    assert "no live worker offers program 'resnet'" in str(refused.value)
    assert "programs offered: crashing, digits" in str(refused.value)


def test_a_crashing_trial_fails_with_the_reason_and_log_tail_over_rest(
    service: Service, tmp_path: Path
) -> None:
    _start(service, tmp_path)
    client = service.client()
    job = client.submit({**JOB, "program": "crashing", "budget": {**JOB["budget"], "trials": 2}})

    def failed_trial() -> dict | None:
        return next((t for t in client.trials(job["id"]) if t["state"] == "fail"), None)

    trial = wait_until(failed_trial, JOB_TIMEOUT_S, "a failed trial")
    assert "exited with code 1" in trial["reason"], trial
    assert "RuntimeError: --crash-at 5: crashing on purpose" in trial["reason"]
    log = httpx.get(f"{service.api_url}/v1/jobs/{job['id']}/trials/{trial['number']}/log")
    assert log.status_code == 200 and "crashing on purpose" in log.text
    client.cancel(job["id"])
