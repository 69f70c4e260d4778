"""Health, workers, workloads, tenants and API keys, errors and limits of the API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner.db import keys, workers
from tuner.db.models import Worker
from tuner.db.types import db_now
from tuner.settings import Settings


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as c:
        yield c


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize(
    "url",
    ["sqlite:////nonexistent-dir/adamtune.db", "postgresql://postgres@127.0.0.1:1/none"],
    ids=["sqlite", "postgres"],
)
def test_readiness_503_when_database_is_down(url: str) -> None:
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["detail"].startswith("database unavailable: ")


def test_store_outage_is_503_not_500(tmp_path: Path) -> None:
    """A database that cannot be opened (here: the path is a directory): 503 with Retry-After.
    A missing directory is a configuration error instead: test_missing_sqlite_dir.py."""
    url = f"sqlite:///{tmp_path}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        r = client.get("/v1/jobs")
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json() == {"detail": "the database is unavailable or busy; retry in a few seconds"}


def test_workers_with_liveness(client: TestClient, migrated_url: str) -> None:
    assert client.get("/v1/workers").json() == {"data": [], "count": 0}
    for wid in ("w1", "w2"):
        in_store(
            migrated_url,
            lambda s, wid=wid: workers.register_worker(
                s, worker_id=wid, hostname="node", pid=7, device="cpu", workloads=["digits_mlp"]
            ),
        )
    in_store(
        migrated_url,
        lambda s: s.execute(
            update(Worker).where(Worker.id == "w2").values(last_heartbeat=db_now(-3600))
        ),
    )
    body = client.get("/v1/workers").json()
    assert body["count"] == 2
    by_id = {w["id"]: w for w in body["data"]}
    assert by_id["w1"]["alive"] and not by_id["w2"]["alive"]
    assert by_id["w1"]["workloads"] == ["digits_mlp"] and by_id["w1"]["device"] == "cpu"
    assert [w["id"] for w in body["data"]] == ["w1", "w2"]


def test_workloads_lists_the_registry(client: TestClient) -> None:
    body = client.get("/v1/workloads").json()
    names = [w["name"] for w in body["data"]]
    assert {"digits_mlp", "regression_mlp", "tiny_transformer"} <= set(names)
    assert body["count"] == len(names) and all(w["description"] for w in body["data"])


def test_openapi_and_docs(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/jobs" in schema["paths"] and "/v1/jobs/{job_id}/recommendation" in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_without_keys_auth_fails_closed(migrated_url: str) -> None:
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        r = client.post("/v1/jobs", json=job_body())
    assert r.status_code == 401 and "adamtune keys create --tenant NAME" in r.json()["detail"]


def test_keys_scope_jobs_to_their_tenant(migrated_url: str) -> None:
    client = TestClient(create_app(Settings(database_url=migrated_url)))
    _, acme = in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
    _, other = in_store(migrated_url, lambda s: keys.create_key(s, "other"))
    acme_h = {"Authorization": f"Bearer {acme}"}
    other_h = {"Authorization": f"Bearer {other}"}
    r = client.post("/v1/jobs", json=job_body())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "no API key" in r.json()["detail"] and "adamtune keys create" in r.json()["detail"]
    bad = client.get("/v1/jobs", headers={"Authorization": "Bearer adt_wrong"})
    assert bad.status_code == 401 and "invalid or revoked" in bad.json()["detail"]
    job_id = client.post("/v1/jobs", json=job_body(), headers=acme_h).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=acme_h).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=other_h).status_code == 404
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=other_h).status_code == 404
    assert client.get("/v1/jobs", headers=other_h).json()["count"] == 0
    assert client.get("/v1/jobs", headers=acme_h).json()["count"] == 1
    assert client.get("/healthz").status_code == 200


def test_auth_disabled_serves_the_default_tenant(migrated_url: str) -> None:
    in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as client:
        assert client.post("/v1/jobs", json=job_body()).status_code == 202


def test_body_over_the_limit_is_413(migrated_url: str) -> None:
    settings = Settings(database_url=migrated_url, max_body_bytes=1024, auth="disabled")
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/jobs", json=job_body(name="x" * 2000))
        assert r.status_code == 413
        assert "limit is 1024 bytes (ADAMTUNE_MAX_BODY_BYTES)" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield b'{"workload": "digits_mlp", "name": "'
            yield b"y" * 2000
            yield b'"}'

        chunked = client.post(
            "/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413


def test_unhandled_error_is_500_with_request_id(migrated_url: str) -> None:
    app = create_app(Settings(database_url=migrated_url, auth="disabled"))

    def explode() -> None:
        raise RuntimeError("bug")

    app.add_api_route("/explode", explode)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/explode", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error; report request id req-42 to the operator"}
    assert r.headers["x-request-id"] == "req-42"


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
    assert (
        client.get("/v1/jobs/x", headers={"X-Request-ID": "abc"}).headers["x-request-id"] == "abc"
    )
