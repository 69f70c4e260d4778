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


def _study_of_few_trials(url: str, study_name: str, roles: list[str]) -> None:
    """One complete trial per role, searched in the parameterisation of tuner.space."""
    storage = optuna_storage(url)
    study = optuna.create_study(study_name=study_name, storage=storage)
    for i, role in enumerate(roles):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("one_minus_beta2", 1e-4, 1e-1, log=True)
        trial.suggest_float("wd_times_lr", 1e-9, 1e-3, log=True)
        trial.set_user_attr("role", role)
        study.tell(trial, 0.5 + i + lr)
    storage.engine.dispose()


def test_recommendation_withholds_importances_of_few_searched_trials(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    """Five complete trials, two of them seeded: three searched, below the minimum of five."""
    roles = ["baseline", "sweep_suggestion", "search", "search", "search"]
    _study_of_few_trials(migrated_url, jobs.study_name_for(job_id), roles)
    body = {**RECOMMENDATION, "importances": {"lr": 0.9, "wd_times_lr": 0.1}}
    body["lr_band"] = {"low": 2e-3, "high": 2e-3, "n_trials": 1}
    in_store(
        migrated_url, lambda s: recommendations.upsert_recommendation(s, job_id, body, final=False)
    )
    rec = client.get(f"/v1/jobs/{job_id}/recommendation").json()
    assert rec["importances"] == {}
    evidence = rec["evidence"]
    assert evidence["searched_complete"] == 3 and evidence["seeded_complete"] == 2
    assert evidence["trials_complete"] == 5 and evidence["trials_finished"] == 5
    assert evidence["importances_trials"] is None
    assert evidence["importances_hidden"] == (
        "hidden: importances need 5 completed searched trials, 3 so far "
        "(and 2 seeded, which are not counted); fewer are noise"
    )
    assert evidence["lr_band_trials"] == 1 and evidence["expected_objective_trials"] == 1

    page = client.get(f"/jobs/{job_id}").text
    assert "importances need 5 completed searched trials, 3 so far" in page
    assert 'class="bar"' not in page
    assert "one trial within 1% of the best: no band yet" in page
    assert "2e-03 .. 2e-03" not in page and "0.002 .. 0.002" not in page
    assert "one trial: the best of 5 complete" in page


def test_recommendation_shows_importances_with_their_trial_count(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    _study_of_few_trials(migrated_url, jobs.study_name_for(job_id), ["baseline"] + ["search"] * 5)
    body = {**RECOMMENDATION, "importances": {"lr": 0.9, "wd_times_lr": 0.1}}
    in_store(
        migrated_url, lambda s: recommendations.upsert_recommendation(s, job_id, body, final=True)
    )
    rec = client.get(f"/v1/jobs/{job_id}/recommendation").json()
    assert rec["importances"] == {"lr": 0.9, "wd_times_lr": 0.1}
    assert rec["evidence"]["importances_trials"] == 5
    assert rec["evidence"]["importances_hidden"] is None
    page = client.get(f"/jobs/{job_id}").text
    assert "Fitted (fANOVA) on 5 completed searched trials; 1 seeded" in page
    assert page.count('class="bar"') == 2


def test_trials_carry_the_parameters_a_user_types(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    _study_of_few_trials(migrated_url, jobs.study_name_for(job_id), ["search"])
    [trial] = client.get(f"/v1/jobs/{job_id}/trials").json()["data"]
    params, config = trial["params"], trial["config"]
    assert set(params) == {"lr", "one_minus_beta2", "wd_times_lr"}  # as searched
    assert set(config) == {"lr", "beta2", "weight_decay"}
    assert config["beta2"] == pytest.approx(1.0 - params["one_minus_beta2"])
    assert config["weight_decay"] == pytest.approx(params["wd_times_lr"] / params["lr"])
    in_store(
        migrated_url,
        lambda s: recommendations.upsert_recommendation(s, job_id, RECOMMENDATION, final=False),
    )
    page = client.get(f"/jobs/{job_id}").text
    assert "weight_decay=" in page and "beta2=" in page
    assert "wd_times_lr=" not in page and "one_minus_beta2=" not in page


def test_a_running_jobs_caption_and_chart_agree_on_finished_trials(
    client: TestClient, migrated_url: str, job_id: str
) -> None:
    storage = optuna_storage(migrated_url)
    study = optuna.create_study(study_name=jobs.study_name_for(job_id), storage=storage)
    for _ in range(3):  # diverged at once: pruned without an objective
        study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.ask()
    storage.engine.dispose()
    page = client.get(f"/jobs/{job_id}").text
    assert "3 of 4 finished" in page
    assert "3 trials finished, none with a finite objective (pruned or diverged)" in page
    assert "3 finished (0 complete, 3 pruned), 1 running" in page
    assert "no finished trials yet" not in page
