"""The HTML pages and the SVG plot endpoint, over create_app on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from ui_seed import SNIPPET, SeededJob, seed_finished_job

from api.app import create_app
from tuner.db import jobs, keys
from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.settings import Settings
from tuner.spec import JobSpec


@pytest.fixture
def client(migrated_url: str) -> Iterator[TestClient]:
    """An app on a migrated, empty database."""
    with TestClient(create_app(Settings(database_url=migrated_url, auth="disabled"))) as c:
        yield c


@pytest.fixture
def seeded(client: TestClient, migrated_url: str) -> SeededJob:
    """A finished job with its sweep, study and recommendation in the client's database."""
    return seed_finished_job(migrated_url)


def queued_job(url: str, name: str = "waiting") -> str:
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        job_id = jobs.create_job(s, spec=JobSpec(workload="digits_mlp", name=name)).id
    engine.dispose()
    return job_id


def svg_of(html: str, css_class: str) -> str:
    match = re.search(rf'<svg class="chart {css_class}".*?</svg>', html, re.S)
    assert match, f"no {css_class} chart in the page"
    return match.group(0)


def test_index_and_lr_sweep_svg_of_a_finished_job(client: TestClient, seeded: SeededJob) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    row = re.search(rf'<tr class="job" data-job-id="{seeded.job_id}">.*?</tr>', r.text, re.S)
    assert row, "the seeded job is not listed"
    assert "status-completed" in row.group(0)
    assert "12/12" in row.group(0)
    assert f'href="/jobs/{seeded.job_id}"' in row.group(0)
    assert "refresh" not in r.text  # nothing runs: no reloading

    r = client.get(f"/v1/jobs/{seeded.job_id}/lr-sweep.svg")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg")
    assert len(re.findall(r'class="pt[ "]', r.text)) == seeded.finite_smoothed


def test_job_page_draws_every_point_and_the_recommendation(
    client: TestClient, seeded: SeededJob
) -> None:
    r = client.get(f"/jobs/{seeded.job_id}")
    assert r.status_code == 200
    lr_svg = svg_of(r.text, "lr-curve")
    assert len(re.findall(r'class="pt[ "]', lr_svg)) == seeded.finite_smoothed
    assert lr_svg.count('class="suggestion"') == 4
    assert 'class="lr-range"' in lr_svg
    trials_svg = svg_of(r.text, "trials-chart")
    assert trials_svg.count('class="pt ') == seeded.trials_with_values
    assert 'class="best"' in trials_svg and 'class="baseline"' in trials_svg
    assert svg_of(r.text, "importances-chart").count('class="bar"') == 3
    snippet = SNIPPET.strip().splitlines()[1]
    assert snippet in r.text
    assert 'id="snippet"' in r.text and 'class="copy"' in r.text
    link = re.search(r'href="/dashboard/studies/(\d+)" class="dashboard-link"', r.text)
    assert link, "no link to the job's study in the dashboard"
    studies = client.get("/api/studies").json()["study_summaries"]  # the dashboard's own API
    label = {s["study_id"]: s["study_name"] for s in studies}[int(link.group(1))]
    assert seeded.job_id in label  # the dashboard names the study by its job
    assert re.search(r'class="gain">\(\d+\.\d% lower\)', r.text)  # the gain over the baseline
    assert re.findall(r'(?:src|href)="(https?://[^"]+)"', r.text) == []  # nothing from outside
    assert "<link" not in r.text  # styles are inline


def test_running_job_page_refreshes_and_says_what_is_missing(
    migrated_url: str, client: TestClient
) -> None:
    job_id = queued_job(migrated_url)
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    assert 'http-equiv="refresh"' in r.text and "location.reload" in r.text
    assert "no LR range test data yet" in r.text
    assert "no finished trials yet" in r.text
    assert "Not yet" in r.text
    assert "refresh" in client.get("/").text  # the list reloads while a job runs


def test_names_are_escaped(migrated_url: str, client: TestClient) -> None:
    job_id = queued_job(migrated_url, name="<script>alert(1)</script>")
    for path in ("/", f"/jobs/{job_id}"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;alert(1)" in html


def test_unknown_job_page_is_a_404_page(client: TestClient) -> None:
    r = client.get("/jobs/doesnotexist")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "doesnotexist" in r.text


def test_lr_sweep_svg_before_the_sweep_says_why(migrated_url: str, client: TestClient) -> None:
    job_id = queued_job(migrated_url)
    r = client.get(f"/v1/jobs/{job_id}/lr-sweep.svg")
    assert r.status_code == 404
    assert "not done yet" in r.json()["detail"]
    r = client.get("/v1/jobs/nope/lr-sweep.svg")
    assert r.status_code == 404 and "not found" in r.json()["detail"]


def test_no_dashboard_link_when_the_dashboard_is_off(migrated_url: str) -> None:
    settings = Settings(database_url=migrated_url, auth="disabled", dashboard=False)
    job_id = queued_job(migrated_url)
    with TestClient(create_app(settings)) as c:
        for path in ("/", f"/jobs/{job_id}"):
            assert "/dashboard" not in c.get(path).text


def test_pages_are_behind_the_api_keys(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    with transaction(make_session_factory(engine)) as s:
        _, secret = keys.create_key(s, "team-a")
    engine.dispose()
    job_id = queued_job(migrated_url)  # the default tenant's, not team-a's
    with TestClient(create_app(Settings(database_url=migrated_url, auth="enabled"))) as c:
        assert c.get("/").status_code == 401
        assert c.get(f"/jobs/{job_id}").status_code == 401
        assert c.get("/", auth=("", secret)).status_code == 200  # a browser's Basic auth
        assert (
            c.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {secret}"}).status_code
            == 404
        )


def test_diagnostics_are_named_and_explained(migrated_url: str, client: TestClient) -> None:
    from tests.integration.api_helpers import in_store
    from tuner.db import recommendations

    job_id = queued_job(migrated_url)
    body = {
        "optimizer": "adam",
        "lr": 1e-3,
        "snippet": SNIPPET,
        "diagnostics": {
            "groups": {"decay": {"p10": 0.01, "p50": 0.1, "p90": 0.5}},
            "modules": {"0 (Linear)": {"p10": 0.02, "p50": 0.2, "p90": 0.7}},
        },
    }
    in_store(
        migrated_url, lambda s: recommendations.upsert_recommendation(s, job_id, body, final=False)
    )
    page = client.get(f"/jobs/{job_id}").text
    assert "<li>module 0 (Linear): p10 0.02, p50 0.2, p90 0.7</li>" in page
    assert "<li>parameter group decay: p10 0.01, p50 0.1, p90 0.5</li>" in page
    assert "near 1 the layer is still learning" in page
