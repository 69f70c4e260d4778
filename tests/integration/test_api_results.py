"""``/v1/jobs/{id}/lr-sweep``, ``/trials`` and ``/recommendation``, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner.db import jobs, recommendations, sweeps
from tuner.db.engine import optuna_storage
from tuner.settings import Settings

SWEEP = {
    "lrs": [1e-6, 1e-4, 1e-2, 1.0],
    "losses": [2.3, 2.0, 1.2, float("inf")],
    "smoothed": [2.3, 2.1, 1.5, float("nan")],
    "suggestions": {"steepest": 1e-3, "valley": 3e-3, "min_over_10": 1e-3, "divergence": 1.0},
    "lr_range": {"low": 1e-4, "suggested": 1e-3, "high": 1e-2},
    "stop_reason": "diverged",
    "spec": {"steps": 100},
}
RECOMMENDATION = {
    "optimizer": "adamw",
    "lr": 2e-3,
    "betas": [0.9, 0.995],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "schedule": "cosine",
    "warmup_steps": 20,
    "total_steps": 300,
    "expected_objective": 0.12,
    "baseline_objective": 0.2,
    "lr_range": {"low": 1e-4, "suggested": 1e-3, "high": 1e-2},
    "snippet": "opt = torch.optim.AdamW(...)",
    "sensitivities": {"lr": 0.7},
}


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as c:
        yield c


@pytest.fixture
def job_id(client: TestClient) -> str:
    return str(client.post("/v1/jobs", json=job_body()).json()["id"])


def test_lr_sweep_404_while_queued_then_served(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    r = client.get(f"/v1/jobs/{job_id}/lr-sweep")
    assert r.status_code == 404
    assert r.json()["detail"] == (
        f"job {job_id} is queued (waiting for a worker): its LR sweep is not done yet; poll again"
    )
    in_store(migrated_url, lambda s: jobs.transition(s, job_id, "queued", "sweeping"))
    assert "is sweeping (LR range test)" in client.get(f"/v1/jobs/{job_id}/lr-sweep").text
    in_store(migrated_url, lambda s: sweeps.save_sweep(s, job_id, SWEEP, "w1"))
    sweep = client.get(f"/v1/jobs/{job_id}/lr-sweep").json()
    assert sweep["job_id"] == job_id and sweep["worker_id"] == "w1"
    assert sweep["lrs"] == SWEEP["lrs"]
    assert sweep["losses"] == [2.3, 2.0, 1.2, None] and sweep["smoothed"][-1] is None
    assert sweep["lr_range"] == SWEEP["lr_range"] and sweep["stop_reason"] == "diverged"
    assert sweep["suggestions"]["valley"] == 3e-3


def test_lr_sweep_disabled_or_unknown_job(client: TestClient) -> None:
    no_sweep = client.post("/v1/jobs", json=job_body(sweep={"enabled": False})).json()["id"]
    r = client.get(f"/v1/jobs/{no_sweep}/lr-sweep")
    assert r.status_code == 404 and "sweep.enabled=false" in r.json()["detail"]
    assert client.get("/v1/jobs/nope/lr-sweep").status_code == 404


def test_recommendation_409_before_any_trial(client: TestClient, job_id: str) -> None:
    r = client.get(f"/v1/jobs/{job_id}/recommendation")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"job {job_id} has no recommendation yet: it is queued (waiting for a worker); "
        "one appears once a trial completes, poll again"
    )
    assert client.get("/v1/jobs/nope/recommendation").status_code == 404


def test_recommendation_of_failed_job_says_why(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    in_store(migrated_url, lambda s: jobs.transition(s, job_id, "queued", "failed", error="OOM"))
    r = client.get(f"/v1/jobs/{job_id}/recommendation")
    assert r.status_code == 409
    assert r.json()["detail"] == f"job {job_id} failed before any recommendation: OOM"


def test_recommendation_partial_then_final(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    in_store(
        migrated_url,
        lambda s: recommendations.upsert_recommendation(s, job_id, RECOMMENDATION, final=False),
    )
    partial = client.get(f"/v1/jobs/{job_id}/recommendation").json()
    assert partial["final"] is False and partial["job_id"] == job_id
    for key, value in RECOMMENDATION.items():
        assert partial[key] == value, key
    final_body = {**RECOMMENDATION, "lr": 3e-3, "final": True}
    in_store(
        migrated_url,
        lambda s: recommendations.upsert_recommendation(s, job_id, final_body, final=True),
    )
    final = client.get(f"/v1/jobs/{job_id}/recommendation").json()
    assert final["final"] is True and final["lr"] == 3e-3


def _seed_trials(url: str, study_name: str) -> None:
    storage = optuna_storage(url)
    study = optuna.create_study(study_name=study_name, storage=storage)
    done = study.ask()
    done.suggest_float("lr", 1e-4, 1e-1, log=True)
    for key, value in {"worker_id": "w1", "device": "cuda:0", "role": "baseline"}.items():
        done.set_user_attr(key, value)
    study.tell(done, 0.5)
    pruned = study.ask()
    pruned.suggest_float("lr", 1e-4, 1e-1, log=True)
    pruned.set_user_attr("worker_id", "w2")
    pruned.set_user_attr("device", "cpu")
    pruned.set_user_attr("reason", "diverged: loss is nan at step 7")
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.ask()
    storage.engine.dispose()


def test_trials_empty_before_search_then_listed(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    assert client.get(f"/v1/jobs/{job_id}/trials").json() == {"data": [], "count": 0}
    _seed_trials(migrated_url, jobs.study_name_for(job_id))
    body = client.get(f"/v1/jobs/{job_id}/trials").json()
    assert body["count"] == 3
    done, pruned, running = body["data"]
    assert done["number"] == 0 and done["state"] == "complete" and done["value"] == 0.5
    assert done["worker_id"] == "w1" and done["device"] == "cuda:0" and done["role"] == "baseline"
    assert set(done["params"]) == {"lr"} and done["datetime_complete"] is not None
    assert pruned["state"] == "pruned" and pruned["reason"].startswith("diverged")
    assert pruned["value"] is None and pruned["worker_id"] == "w2"
    assert running["state"] == "running" and running["worker_id"] is None
    assert client.get("/v1/jobs/nope/trials").status_code == 404
