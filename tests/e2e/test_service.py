"""The service end to end: uvicorn on a free port, two workers, one job, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from adamtune.cli.processes import adamtune_command, free_port, wait_http_ok
from tests.e2e.harness import CHILD_ENV, Service, wait_until
from tuner.client import Client

pytestmark = pytest.mark.e2e

TRIALS = 8
JOB = {
    "name": "e2e",
    "workload": "digits_mlp",
    "seed": 3,
    "budget": {"trials": TRIALS, "steps_per_trial": 40, "eval_every": 20},
    "sweep": {"steps": 30},
}
CONTRACT_KEYS = {
    "optimizer", "lr", "betas", "eps", "weight_decay", "schedule", "warmup_steps",
    "total_steps", "expected_objective", "baseline_objective", "lr_range", "final", "snippet",
}
JOB_TIMEOUT_S = 150.0


def test_two_workers_share_a_job_to_completion(service: Service) -> None:
    service.start_api()
    service.start_worker("worker-a")
    service.start_worker("worker-b")
    with service.client() as client:
        job = client.submit(JOB)
        job = client.wait(job["id"], timeout=JOB_TIMEOUT_S, poll=0.5)
        assert job["status"] == "completed", job
        rec = client.recommendation(job["id"])
        trials = client.trials(job["id"])
        sweep = client.lr_sweep(job["id"])

    assert CONTRACT_KEYS <= set(rec), CONTRACT_KEYS - set(rec)
    assert rec["final"] is True
    assert set(rec["lr_range"]) >= {"low", "suggested", "high"}
    assert rec["lr_range"]["suggested"] == pytest.approx(sweep["lr_range"]["suggested"])
    assert "torch.optim" in rec["snippet"]
    assert job["progress"]["trials_completed"] == TRIALS

    finished = [t for t in trials if t["state"] in ("complete", "pruned", "COMPLETE", "PRUNED")]
    assert {t["worker_id"] for t in finished} == {"worker-a", "worker-b"}
    assert {t["device"] for t in finished} == {"cpu"}

    states = service.study_states(job["id"])
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == TRIALS
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states


def test_a_population_worker_trains_asked_trials_together(service: Service) -> None:
    service.start_api()
    service.start_worker("pop", "--population", "3")
    with service.client() as client:
        body = {**JOB, "name": "e2e-population", "budget": {**JOB["budget"], "trials": 7}}
        job = client.submit(body)
        job = client.wait(job["id"], timeout=JOB_TIMEOUT_S, poll=0.5)
        assert job["status"] == "completed", job
        trials = client.trials(job["id"])
        rec = client.recommendation(job["id"])

    finished = [t for t in trials if t["state"] in ("complete", "pruned")]
    assert len(finished) == 7 and rec["final"] is True
    assert [t["population"] for t in finished] == [3, 3, 3, 3, 3, 3, None]  # 7 = 3 + 3 + 1
    assert all(t["steps"] is not None and t["steps"] <= 40 for t in finished)
    searched = [tuple(sorted(t["params"].items())) for t in finished if t["params"]]
    assert len(set(searched)) == len(searched)


def test_workers_exit_zero_on_sigterm_when_idle(service: Service) -> None:
    service.start_worker("idle")
    service.wait_for_log("idle", "registered", timeout=60)
    service.signal("idle", signal.SIGTERM)
    assert service.wait_exit("idle", timeout=30) == 0
    assert "worker idle stopped" in service.log("idle")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_up_starts_everything_and_stops_on_ctrl_c(migrated_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**CHILD_ENV, "ADAMTUNE_DATABASE_URL": migrated_url}
    env.pop("ADAMTUNE_AUTH")  # `up` must choose the local no-key mode itself, and say so
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log_file:
        up = subprocess.Popen(
            adamtune_command("up", "--port", str(port), "--workers", "1"),
            env={**_base_env(), **env}, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", 90)
            _wait_for_text(log_path, "Stop with Ctrl-C", 30)
            with Client(f"http://127.0.0.1:{port}") as client:
                wait_until(lambda: _live_workers(client), 90, "the worker to register")
            up.send_signal(signal.SIGINT)
            assert up.wait(timeout=60) == 0, log_path.read_text()
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
    output = log_path.read_text()
    assert "ADAMTUNE_AUTH=disabled" in output
    assert f"http://127.0.0.1:{port}/docs" in output
    assert re.search(r"worker \S+ stopped", output)  # its own log line: stopped, not killed
    assert "SIGINT: stopped the service" in output
    assert "optuna-dashboard" not in output and f":{port + 1}" not in output


def _live_workers(client: Client) -> list[dict[str, Any]]:
    body = client._json("GET", "/v1/workers")
    rows: list[dict[str, Any]] = body["data"] if isinstance(body, dict) else body
    return [w for w in rows if w.get("status") == "running"]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ADAMTUNE_")}


def _wait_for_text(path: Path, text: str, timeout: float) -> None:
    wait_until(lambda: path.exists() and text in path.read_text(), timeout, f"{text!r} in {path}")

