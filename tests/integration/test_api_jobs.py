"""``/v1/jobs``: submit, list, read, cancel, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner.db import jobs
from tuner.settings import Settings


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as c:
        yield c


def test_submit_returns_202_with_location(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=job_body())
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["phase"] == "waiting for a worker"
    assert job["progress"] == {"trials_completed": 0, "trials_total": 4, "best_objective": None}
    assert job["links"]["recommendation"] == f"/v1/jobs/{job['id']}/recommendation"
    assert job["created_at"].endswith("Z") or job["created_at"].endswith("+00:00")
    assert client.get(r.headers["location"]).json()["id"] == job["id"]


def test_unknown_workload_lists_known_ones(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=job_body(workload="resnet9000"))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "workload"]
    assert "unknown workload 'resnet9000'" in err["msg"]
    assert "digits_mlp" in err["msg"] and "regression_mlp" in err["msg"]


def test_budget_over_server_limit_says_the_limit(migrated_url: str) -> None:
    settings = Settings(
        database_url=migrated_url, max_trials=10, max_population=2, auth="disabled"
    )
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/jobs", json=job_body(budget={"trials": 20}, population=4))
    assert r.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}
    assert "limit of 10 (ADAMTUNE_MAX_TRIALS)" in errors[("body", "budget", "trials")]
    assert "limit of 2 (ADAMTUNE_MAX_POPULATION)" in errors[("body", "population")]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"name": "no workload"}, ["body"], "exactly one of workload"),
        (job_body(program="digits"), ["body"], "got both"),
        (job_body(preset="fast"), ["body", "preset"], "'default', 'vision'"),
        (
            job_body(budget={"trials": 1}),
            ["body", "budget", "trials"],
            "greater than or equal to 2",
        ),
        (job_body(colour="red"), ["body", "colour"], "unknown field"),
        (
            job_body(search={"lr": {"low": 1e-2, "high": 1e-4}}),
            ["body", "search", "lr"],
            "must be smaller than high",
        ),
    ],
)
def test_invalid_body_names_the_field(
    client: TestClient, body: dict, loc: list, fragment: str
) -> None:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    matching = [e for e in detail if e["loc"] == loc]
    assert matching, detail
    assert fragment in matching[0]["msg"]
    assert all("input" not in e for e in detail)


def test_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"


def test_list_filters_and_paginates(client: TestClient, migrated_url: str) -> None:
    ids = [client.post("/v1/jobs", json=job_body()).json()["id"] for _ in range(5)]
    other = client.post("/v1/jobs", json=job_body(workload="regression_mlp")).json()["id"]
    in_store(migrated_url, lambda s: jobs.transition(s, ids[0], "queued", "failed", error="x"))
    first = client.get("/v1/jobs", params={"limit": 4}).json()
    second = client.get("/v1/jobs", params={"limit": 4, "offset": 4}).json()
    assert first["count"] == second["count"] == 6
    assert len(first["data"]) == 4 and len(second["data"]) == 2
    assert {j["id"] for j in first["data"] + second["data"]} == {*ids, other}
    failed = client.get("/v1/jobs", params={"status": "failed"}).json()
    assert failed["count"] == 1 and failed["data"][0]["id"] == ids[0]
    assert failed["data"][0]["phase"] == "failed" and failed["data"][0]["error"] == "x"
    by_workload = client.get("/v1/jobs", params={"workload": "regression_mlp"}).json()
    assert [j["id"] for j in by_workload["data"]] == [other]


def test_list_refuses_bad_query(client: TestClient) -> None:
    r = client.get("/v1/jobs", params={"status": "done", "limit": 0})
    assert r.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}
    assert "'queued', 'sweeping', 'searching'" in errors[("query", "status")]
    assert "greater than or equal to 1" in errors[("query", "limit")]


def test_get_unknown_job_is_404(client: TestClient) -> None:
    r = client.get("/v1/jobs/doesnotexist")
    assert r.status_code == 404
    assert r.json() == {"detail": "job doesnotexist not found; GET /v1/jobs lists your jobs"}


def test_phase_follows_status(client: TestClient, migrated_url: str) -> None:
    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    in_store(migrated_url, lambda s: jobs.transition(s, job_id, "queued", "sweeping"))
    assert client.get(f"/v1/jobs/{job_id}").json()["phase"] == "LR range test"
    in_store(
        migrated_url,
        lambda s: jobs.transition(
            s, job_id, "sweeping", "searching", trials_completed=3, best_objective=0.25
        ),
    )
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["phase"] == "search: 3/4 trials"
    assert job["progress"] == {"trials_completed": 3, "trials_total": 4, "best_objective": 0.25}
    assert job["started_at"] is not None and job["finished_at"] is None


def test_cancel_then_cancel_again(client: TestClient) -> None:
    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["phase"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"job {job_id} is already cancelled; only queued, sweeping or searching jobs can be "
        "cancelled"
    )
    assert client.post("/v1/jobs/nope/cancel").status_code == 404


def test_cancel_completed_job_is_409(client: TestClient, migrated_url: str) -> None:
    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    steps = (("queued", "sweeping"), ("sweeping", "searching"), ("searching", "completed"))
    in_store(migrated_url, lambda s: all(jobs.transition(s, job_id, *step) for step in steps))
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and "is already completed" in r.json()["detail"]


def test_idempotency_key_replays_the_first_job(client: TestClient) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    again = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert client.get("/v1/jobs").json()["count"] == 1
    changed = client.post("/v1/jobs", json=job_body(seed=3), headers=headers)
    assert changed.status_code == 409
    assert "different body" in changed.json()["detail"]


def test_events_list_the_jobs_history_oldest_first(client: TestClient, migrated_url: str) -> None:
    job = client.post("/v1/jobs", json=job_body()).json()
    assert job["links"]["events"] == f"/v1/jobs/{job['id']}/events"
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    r = client.get(job["links"]["events"])
    assert r.status_code == 200
    body = r.json()
    assert [e["kind"] for e in body["data"]] == ["created", "cancelled"]
    assert body["count"] == 2
    assert "digits_mlp, 4 trials" in body["data"][0]["message"]
    assert body["data"][0]["id"] < body["data"][1]["id"]
    assert body["data"][0]["at"].endswith("Z") or body["data"][0]["at"].endswith("+00:00")
    assert client.get(job["links"]["events"], params={"limit": 1}).json()["count"] == 1
    page = client.get(f"/jobs/{job['id']}").text
    assert 'class="card history"' in page and "cancelled on request" in page


def test_events_of_an_unknown_job_are_a_404(client: TestClient) -> None:
    r = client.get("/v1/jobs/nope/events")
    assert r.status_code == 404
    assert "job nope not found" in r.json()["detail"]


def test_cancel_fails_the_enqueued_trials_with_the_reason(
    client: TestClient, migrated_url: str
) -> None:
    import optuna

    from tuner.db.engine import optuna_storage

    job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
    in_store(migrated_url, lambda s: jobs.transition(s, job_id, "queued", "sweeping"))
    study_name = jobs.study_name_for(job_id)
    storage = optuna_storage(migrated_url)
    try:
        study = optuna.create_study(study_name=study_name, storage=storage)
        study.enqueue_trial({"lr": 1e-3})
        study.enqueue_trial({"lr": 3e-3})
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
        states = sorted(t.state.name for t in trials)
        assert states == ["COMPLETE", "FAIL", "FAIL"]
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        assert all(t.user_attrs["reason"] == "the job was cancelled" for t in failed)
        assert all(t.datetime_complete is not None for t in failed)
    finally:
        storage.engine.dispose()
