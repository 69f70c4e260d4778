"""The Optuna dashboard behind the API: a key is needed, and a tenant sees only its studies."""

from __future__ import annotations

import optuna
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.api_helpers import store_session
from tuner import spec
from tuner.db import jobs, keys
from tuner.db.engine import optuna_storage
from tuner.settings import Settings


def _job_with_study(url: str, tenant: str) -> tuple[str, str]:
    with store_session(url) as s:
        job = jobs.create_job(s, spec=spec.parse_job({"workload": "digits_mlp"}), tenant=tenant)
        job_id, study_name = job.id, job.study_name
    study = optuna.create_study(storage=optuna_storage(url), study_name=study_name)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    return job_id, study_name


@pytest.fixture
def two_tenants(migrated_url: str) -> dict[str, tuple[str, str, str]]:
    out = {}
    for tenant in ("alice", "bob"):
        with store_session(migrated_url) as s:
            _, key = keys.create_key(s, tenant)
        out[tenant] = (key, *_job_with_study(migrated_url, tenant))
    return out


def test_dashboard_needs_a_key_and_shows_only_the_tenants_studies(
    migrated_url: str, two_tenants: dict[str, tuple[str, str, str]]
) -> None:
    alice_key, _, alice_study = two_tenants["alice"]
    _, _, bob_study = two_tenants["bob"]
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        assert client.get("/api/studies").status_code == 401
        assert client.get("/dashboard").status_code == 401

        auth = {"Authorization": f"Bearer {alice_key}"}
        page = client.get("/dashboard", headers=auth)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]

        listed = client.get("/api/studies", headers=auth)
        assert listed.status_code == 200
        names = {s["study_name"] for s in listed.json()["study_summaries"]}
        assert names == {alice_study}
        alice_id = listed.json()["study_summaries"][0]["study_id"]
        detail = client.get(f"/api/studies/{alice_id}", headers=auth)
        assert detail.status_code == 200 and len(detail.json()["trials"]) == 3

        bob_id = optuna_storage(migrated_url).get_study_id_from_name(bob_study)
        assert client.get(f"/api/studies/{bob_id}", headers=auth).status_code == 404


def test_dashboard_is_read_only(
    migrated_url: str, two_tenants: dict[str, tuple[str, str, str]]
) -> None:
    key = two_tenants["alice"][0]
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        r = client.post(
            "/api/studies",
            json={"study_name": "x", "directions": ["minimize"]},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 405
        assert "read-only" in r.json()["detail"]
