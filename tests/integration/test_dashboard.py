"""The Optuna dashboard behind the API: a key is needed, and a tenant sees only its studies."""

from __future__ import annotations

import importlib.util
import logging

import optuna
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.dashboard import READ_ONLY_SCRIPT
from tests.integration.api_helpers import store_session
from tuner import spec
from tuner.db import jobs, keys, recommendations
from tuner.db.engine import optuna_storage
from tuner.settings import Settings


def _job_with_study(url: str, tenant: str) -> tuple[str, str]:
    body = {"workload": "digits_mlp", "name": f"{tenant}'s run"}
    with store_session(url) as s:
        job = jobs.create_job(s, spec=spec.parse_job(body), tenant=tenant)
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
    alice_key, alice_job, _ = two_tenants["alice"]
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
        assert names == {f"alice's run ({alice_job})"}  # the job's name, not the study's
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


def test_no_study_data_without_a_key(
    migrated_url: str, two_tenants: dict[str, tuple[str, str, str]]
) -> None:
    study_id = optuna_storage(migrated_url).get_study_id_from_name(two_tenants["bob"][2])
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        for path in (
            "/api/studies",
            f"/api/studies/{study_id}",
            f"/api/studies/{study_id}/param_importances",
            f"/api/studies/{study_id}/plot/slice",
            f"/csv/{study_id}",
            "/dashboard",
        ):
            r = client.get(path)
            assert r.status_code == 401, path
            assert "bob" not in r.text, path


def test_another_tenants_study_is_a_404_not_an_error(
    migrated_url: str,
    two_tenants: dict[str, tuple[str, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice_key = two_tenants["alice"][0]
    bob_id = optuna_storage(migrated_url).get_study_id_from_name(two_tenants["bob"][2])
    auth = {"X-API-Key": alice_key}
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        caplog.set_level(logging.INFO)
        for path in (
            f"/api/studies/{bob_id}",
            f"/api/studies/{bob_id}/param_importances",
            f"/api/studies/{bob_id}/plot/slice",
            f"/api/studies/{bob_id}/plot/timeline",
            f"/csv/{bob_id}",
            "/api/studies/999999",
        ):
            r = client.get(path, headers=auth)
            assert r.status_code == 404, path
            assert "among your jobs' studies" in r.json()["detail"], path
            assert "bob" not in r.text
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []
    assert not any(rec.exc_info for rec in caplog.records)


def test_server_side_plots_answer_501_with_the_reason_without_plotly(
    migrated_url: str,
    two_tenants: dict[str, tuple[str, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, _, study_name = two_tenants["alice"]
    study_id = optuna_storage(migrated_url).get_study_id_from_name(study_name)
    plotly_installed = importlib.util.find_spec("plotly") is not None
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        for plot in ("slice", "timeline"):
            r = client.get(f"/api/studies/{study_id}/plot/{plot}", headers={"X-API-Key": key})
            if plotly_installed:
                assert r.status_code == 200, r.text
            else:
                assert r.status_code == 501
                assert "plotly, which is not installed" in r.json()["detail"]
                assert "draws its charts in the browser" in r.json()["detail"]
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []


def test_dashboard_page_says_it_is_read_only_and_hides_the_writes(
    migrated_url: str, two_tenants: dict[str, tuple[str, str, str]]
) -> None:
    auth = {"X-API-Key": two_tenants["alice"][0]}
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        for path in ("/dashboard", "/dashboard/studies/1"):
            page = client.get(path, headers=auth)
            assert page.status_code == 200
            assert f'<script defer src="{READ_ONLY_SCRIPT}"></script></head>' in page.text
            assert int(page.headers["content-length"]) == len(page.content)
        script = client.get(READ_ONLY_SCRIPT, headers=auth)
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "Read-only" in script.text and '"Create"' in script.text
        assert '"Delete study"' in script.text
        assert client.get(READ_ONLY_SCRIPT).status_code == 401
        r = client.delete("/api/studies/1", headers=auth)
        assert r.status_code == 405 and "read-only" in r.json()["detail"]


def test_dashboard_importances_are_the_recommendations_with_the_same_rule(
    migrated_url: str, two_tenants: dict[str, tuple[str, str, str]]
) -> None:
    key, job_id, study_name = two_tenants["alice"]
    storage = optuna_storage(migrated_url)
    study_id = storage.get_study_id_from_name(study_name)
    body = {"lr": 1e-3, "importances": {"x": 1.0}, "lr_band": {"low": 1, "high": 1, "n_trials": 1}}
    with store_session(migrated_url) as s:
        recommendations.upsert_recommendation(s, job_id, body, final=False)
    auth = {"X-API-Key": key}
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        few = client.get(f"/api/studies/{study_id}/param_importances", headers=auth).json()
        assert few["param_importances"] == [[]]  # 3 searched trials: withheld, as in /v1
        assert "importances need 5 completed searched trials, 3 so far" in few["reason"]
        assert (
            client.get(f"/v1/jobs/{job_id}/recommendation", headers=auth).json()["importances"]
            == {}
        )

        optuna.load_study(study_name=study_name, storage=storage).optimize(
            lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=2
        )
        rec = client.get(f"/v1/jobs/{job_id}/recommendation", headers=auth).json()
        enough = client.get(f"/api/studies/{study_id}/param_importances", headers=auth).json()
        assert rec["importances"] == {"x": 1.0}
        assert enough["param_importances"] == [
            [{"name": "x", "importance": 1.0, "distribution": "FloatDistribution"}]
        ]
        assert enough["reason"] is None
