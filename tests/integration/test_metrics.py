"""``/metrics``: the store's state read at scrape time, and the API's request latency."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from ui_seed import SeededJob, seed_finished_job

from api.app import create_app
from tuner.settings import Settings


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as c:
        yield c


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_empty_store_reports_zeros(client: TestClient) -> None:
    samples = scrape(client)
    assert samples[("adamtune_store_up", ())] == 1.0
    assert samples[("adamtune_jobs", (("status", "queued"),))] == 0.0
    assert samples[("adamtune_trials_finished_total", (("state", "complete"),))] == 0.0
    assert samples[("adamtune_trial_duration_seconds_count", ())] == 0.0
    assert samples[("adamtune_workers_live_total", ())] == 0.0


def test_jobs_trials_durations_and_workers_come_from_the_store(
    client: TestClient, migrated_url: str
) -> None:
    seeded: SeededJob = seed_finished_job(migrated_url)
    states = [t.state for t in seeded.trials]
    samples = scrape(client)
    assert samples[("adamtune_jobs", (("status", "completed"),))] == 1.0
    assert samples[("adamtune_jobs", (("status", "searching"),))] == 0.0
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    assert pruned == 2
    assert samples[("adamtune_trials_finished_total", (("state", "complete"),))] == complete
    assert samples[("adamtune_trials_finished_total", (("state", "pruned"),))] == pruned
    assert samples[("adamtune_trials_finished_total", (("state", "fail"),))] == 0.0
    assert samples[("adamtune_trial_duration_seconds_count", ())] == complete + pruned
    inf_bucket = samples[("adamtune_trial_duration_seconds_bucket", (("le", "+Inf"),))]
    assert inf_bucket == complete + pruned
    assert samples[("adamtune_trial_duration_seconds_sum", ())] >= 0.0
    assert samples[("adamtune_workers_live", (("device", "cpu"),))] == 1.0
    assert samples[("adamtune_workers_live_total", ())] == 1.0


def test_request_latency_is_labelled_by_route_template(client: TestClient) -> None:
    for job_id in ("a" * 32, "b" * 32):
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    client.get("/healthz")
    client.get("/wp-admin/setup.php")  # scanners must not create a series per path
    samples = scrape(client)
    by_route = {
        dict(labels)["route"]: value
        for (name, labels), value in samples.items()
        if name == "adamtune_http_request_duration_seconds_count"
    }
    assert by_route["/v1/jobs/{job_id}"] == 2.0  # one series for every job id
    assert by_route["/healthz"] == 1.0
    assert by_route["unmatched"] == 1.0
    assert not any("wp-admin" in route for route in by_route)
    statuses = {
        dict(labels)["status"]
        for (name, labels), _ in samples.items()
        if name == "adamtune_http_request_duration_seconds_count"
        and dict(labels)["route"] == "/v1/jobs/{job_id}"
    }
    assert statuses == {"404"}


def test_each_app_has_its_own_registry(migrated_url: str) -> None:
    settings = Settings(database_url=migrated_url, auth="disabled")
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        one.get("/healthz")
        assert ("adamtune_http_request_duration_seconds_count",) not in {
            (name,) for (name, labels) in scrape(two) if dict(labels).get("route") == "/healthz"
        }


def test_scrape_answers_while_the_database_is_down(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/no/such/dir/adamtune.db"
    with TestClient(create_app(Settings(database_url=missing, auth="disabled"))) as c:
        samples = scrape(c)
    assert samples[("adamtune_store_up", ())] == 0.0
