"""API keys and tenants on every route of the app, taken from the app's own route list.

A route added tomorrow is in ``ROUTES`` automatically: if it answers without a key, or
serves another tenant's job, these tests fail. The route checks run on SQLite (one app
for the module); the key lifecycle runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from adamtune.cli import main as cli_main
from api.app import create_app
from api.auth import ApiKeyMiddleware
from api.deps import CurrentTenant
from tests.integration.api_helpers import in_store, job_body, store_session
from tests.integration.ui_seed import seed_finished_job
from tuner.db import keys, workers
from tuner.db.engine import make_engine, make_session_factory
from tuner.db.models import ApiKey, Job, Worker
from tuner.settings import Settings

# Open on purpose: probes, Prometheus (no tenant data, see test_metrics_expose_no_tenant_data)
# and the API docs. Anything else that answers without a key fails test_needs_a_key.
OPEN = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs-assets/swagger-ui-bundle.js",  # Swagger UI's own files, served locally
    "/docs-assets/swagger-ui.css",
    "/docs-assets/favicon-32x32.png",
}
SENTINEL_JOB = "jobidthatdoesnotexist"


def app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route and mount of a freshly built app (FastAPI
    includes routers lazily: ``iter_route_contexts`` flattens them as the router sees them)."""
    app = create_app(Settings(database_url="sqlite://"))
    found = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            found.append(("GET", f"{route.path}/"))
            continue
        found += [(m, route.path) for m in sorted(route.methods or {"GET"}) if m != "HEAD"]
    return sorted(set(found))


# The Optuna dashboard is dispatched by path inside the auth middleware, not routed.
DASHBOARD = [("GET", "/dashboard"), ("GET", "/api/studies"), ("GET", "/api/studies/0")]
ROUTES = app_routes()
GUARDED = [r for r in ROUTES if r[1] not in OPEN] + DASHBOARD
JOB_ROUTES = [r for r in GUARDED if "{job_id}" in r[1]]


def concrete(path: str, job_id: str = SENTINEL_JOB) -> str:
    names = {"{job_id}": job_id, "{number}": "0"}  # a trial number is an integer
    return re.sub(r"\{[^}]+\}", lambda m: names.get(m.group(0), "x"), path)


def call(client: TestClient, method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
    if method == "POST" and path == "/v1/jobs":
        kwargs.setdefault("json", job_body())
    return client.request(method, path, **kwargs)  # type: ignore[arg-type]


@dataclass
class World:
    """One migrated database with a finished job of tenant ``acme`` and keys of two tenants."""

    url: str
    client: TestClient
    job_id: str
    acme: dict[str, str]
    other: dict[str, str]
    revoked: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'adamtune.db'}"
    job_id = seed_finished_job(url, n_trials=4).job_id
    in_store(url, lambda s: s.execute(update(Job).where(Job.id == job_id).values(tenant="acme")))
    _, acme = in_store(url, lambda s: keys.create_key(s, "acme"))
    _, other = in_store(url, lambda s: keys.create_key(s, "other"))
    gone, revoked = in_store(url, lambda s: keys.create_key(s, "acme"))
    in_store(url, lambda s: keys.revoke_key(s, gone.id))
    with TestClient(create_app(Settings(database_url=url))) as client:
        yield World(
            url,
            client,
            job_id,
            acme={"Authorization": f"Bearer {acme}"},
            other={"X-API-Key": other},
            revoked={"Authorization": f"Bearer {revoked}"},
        )


def test_route_list_is_complete() -> None:
    """The parametrisation sees the routes it must (a broken discovery would pass vacuously)."""
    paths = {p for _, p in GUARDED}
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/workloads",
        "/v1/workers",
        "/",
        "/jobs/{job_id}",
    } <= paths
    assert len(JOB_ROUTES) >= 6


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_needs_a_key(world: World, method: str, path: str) -> None:
    r = call(world.client, method, concrete(path, world.job_id))
    assert r.status_code == 401, r.text
    assert "no API key" in r.json()["detail"] and "Authorization: Bearer" in r.json()["detail"]
    expected = "Bearer" if path.startswith("/v1") else 'Basic realm="adamtune"'
    assert r.headers["www-authenticate"].startswith(expected)


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_revoked_or_unknown_key_is_401(world: World, method: str, path: str) -> None:
    for headers in (world.revoked, {"X-API-Key": "adt_not-a-key"}):
        r = call(world.client, method, concrete(path, world.job_id), headers=headers)
        assert r.status_code == 401, r.text
        assert "invalid or revoked" in r.json()["detail"]


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_valid_key_is_let_in(world: World, method: str, path: str) -> None:
    r = call(world.client, method, concrete(path, world.job_id), headers=world.acme)
    assert r.status_code not in (401, 403), r.text
    assert r.status_code < 500, r.text


@pytest.mark.parametrize(("method", "path"), JOB_ROUTES)
def test_another_tenants_job_is_404(world: World, method: str, path: str) -> None:
    own = call(world.client, method, concrete(path, world.job_id), headers=world.acme)
    # The owner reaches it (cancel: completed; a workload job's trial has no log: says so).
    reached = own.status_code in (200, 409) or (
        path.endswith("/log") and "has no log" in own.text
    )
    assert reached, own.text
    r = call(world.client, method, concrete(path, world.job_id), headers=world.other)
    assert r.status_code == 404, r.text
    assert world.job_id in r.text


def test_other_tenant_lists_nothing_and_cannot_cancel(world: World) -> None:
    assert world.client.get("/v1/jobs", headers=world.other).json()["count"] == 0
    listed = world.client.get("/v1/jobs", headers=world.acme).json()["data"]
    assert world.job_id in {j["id"] for j in listed}
    mine = world.client.post("/v1/jobs", json=job_body(), headers=world.other).json()["id"]
    assert world.client.post(f"/v1/jobs/{mine}/cancel", headers=world.acme).status_code == 404
    assert world.client.get(f"/v1/jobs/{mine}", headers=world.other).json()["status"] == "queued"
    r = world.client.post(f"/v1/jobs/{mine}/cancel", headers=world.other)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


@pytest.mark.parametrize("path", sorted(OPEN))
def test_open_paths_need_no_key(world: World, path: str) -> None:
    assert world.client.get(path).status_code == 200


def test_workers_show_only_this_tenants_current_job(world: World) -> None:
    def busy(s: Session) -> None:
        workers.register_worker(
            s, worker_id="w-busy", hostname="node", pid=9, device="cpu", workloads=["x"]
        )
        s.execute(update(Worker).where(Worker.id == "w-busy").values(current_job_id=world.job_id))

    in_store(world.url, busy)
    seen = {
        who: {w["id"]: w for w in world.client.get("/v1/workers", headers=h).json()["data"]}
        for who, h in (("acme", world.acme), ("other", world.other))
    }
    assert seen["acme"]["w-busy"]["current_job_id"] == world.job_id
    assert seen["other"]["w-busy"]["current_job_id"] is None
    assert world.job_id not in world.client.get("/v1/workers", headers=world.other).text


def test_dashboard_shows_a_tenant_only_its_studies(world: World) -> None:
    mine = world.client.get("/api/studies", headers=world.acme)
    theirs = world.client.get("/api/studies", headers=world.other)
    assert mine.status_code == theirs.status_code == 200
    assert f"seeded digits ({world.job_id})" in mine.text  # named by the job
    assert world.job_id not in theirs.text and "seeded digits" not in theirs.text


def test_metrics_expose_no_tenant_data(world: World) -> None:
    """/metrics is open for Prometheus, so it carries only aggregates: no tenant, id, name."""
    world.client.post("/v1/jobs", json=job_body(name="secret-project-x"), headers=world.other)
    text = world.client.get("/metrics").text
    assert "adamtune_jobs" in text
    for secret in ("acme", "other", "secret-project-x", world.job_id, "adt_", "tenant"):
        assert secret not in text


def test_every_header_form_is_accepted(world: World) -> None:
    key = world.acme["Authorization"].removeprefix("Bearer ")
    for headers in ({"Authorization": f"bearer {key}"}, {"X-API-Key": key}):
        assert world.client.get("/v1/jobs", headers=headers).status_code == 200
    assert world.client.get("/", auth=("anyone", key)).status_code == 200
    assert world.client.get("/", auth=(key, "")).status_code == 200
    posted = world.client.post("/v1/jobs", json=job_body(), auth=("anyone", key))
    assert posted.status_code == 401  # no Basic for changes: a cross-site form could send it
    assert "HTTP Basic is accepted only to read pages (GET)" in posted.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"Authorization": "Token abc"}, "unsupported Authorization scheme 'Token'"),
        ({"Authorization": "Bearer "}, "empty Authorization header"),
        ({"Authorization": "Basic !!!"}, "malformed Basic credentials"),
        ({"Authorization": "Bearer a", "X-API-Key": "b"}, "send only one"),
        ({"X-API-Key": " "}, "empty X-API-Key header"),
        ({"Authorization": ""}, "empty Authorization header"),
    ],
)
def test_malformed_credentials_say_what_to_send(
    world: World, headers: dict[str, str], fragment: str
) -> None:
    r = world.client.get("/v1/jobs", headers=headers)
    assert r.status_code == 401 and fragment in r.json()["detail"]


def test_openapi_declares_both_schemes_on_every_guarded_operation(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["APIKeyHeader"] == {
        **schemes["APIKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            wanted = [] if path in OPEN else [{"HTTPBearer": []}, {"APIKeyHeader": []}]
            assert operation.get("security", []) == wanted, (method, path)


def test_no_key_in_the_database_fails_closed(migrated_url: str) -> None:
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        for method, path in GUARDED:
            r = call(client, method, concrete(path))
            assert r.status_code == 401, (method, path, r.text)
            detail = r.json()["detail"]
            assert "adamtune keys create --tenant NAME" in detail, detail
            assert "ADAMTUNE_AUTH=disabled" in detail
        assert client.get("/healthz").status_code == 200


def test_auth_disabled_is_open_and_warns(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        app = create_app(Settings(database_url=migrated_url, auth="disabled"))
    [warning] = [r for r in caplog.records if r.name == "api.auth"]
    assert warning.levelno == logging.WARNING and "NO AUTHENTICATION" in warning.getMessage()
    with TestClient(app) as client:
        r = client.post("/v1/jobs", json=job_body())
        assert r.status_code == 202
        assert client.get(f"/v1/jobs/{r.json()['id']}").status_code == 200


def test_key_lifecycle_from_the_cli(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`adamtune keys create` prints the key once and stores only its hash; revoke ends it."""
    monkeypatch.setenv("ADAMTUNE_DATABASE_URL", migrated_url)
    assert cli_main(["keys", "create", "--tenant", "acme"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("adt_") and "shown only once" in err
    with store_session(migrated_url) as s:
        [row] = s.scalars(select(ApiKey)).all()
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in value for value in stored)
    assert cli_main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert row.id in listing and "acme" in listing and key not in listing
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        headers = {"X-API-Key": key}
        job_id = client.post("/v1/jobs", json=job_body(), headers=headers).json()["id"]
        assert client.get(f"/v1/jobs/{job_id}", headers=headers).status_code == 200
        assert cli_main(["keys", "revoke", row.id]) == 0
        r = client.get(f"/v1/jobs/{job_id}", headers=headers)
        assert r.status_code == 401
        assert "ADAMTUNE_AUTH=disabled" in r.json()["detail"]  # no active key is left
        _, fresh = in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
        assert client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": fresh}).status_code == 200
        assert "invalid or revoked" in client.get("/v1/jobs", headers=headers).json()["detail"]


def _dashboard_stub() -> Starlette:
    """A stand-in for a mounted app (the Optuna dashboard): it shows everything it has."""
    return Starlette(routes=[Route("/", lambda request: PlainTextResponse("every study"))])


def test_a_mounted_app_is_guarded(world: World) -> None:
    app = create_app(Settings(database_url=world.url))
    app.mount("/mounted", _dashboard_stub())
    with TestClient(app) as client:
        assert client.get("/mounted/").status_code == 401
        assert client.get("/mounted/", headers=world.revoked).status_code == 401
        assert client.get("/mounted/", headers=world.acme).text == "every study"


def test_guard_can_admit_only_some_tenants(world: World) -> None:
    """ApiKeyMiddleware around any ASGI app, e.g. a dashboard that shows every tenant."""
    engine = make_engine(world.url)
    guarded = ApiKeyMiddleware(
        _dashboard_stub(),
        settings=Settings(database_url=world.url),
        session_factory=make_session_factory(engine),
        tenants={"acme"},
    )
    with TestClient(guarded) as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers=world.acme).status_code == 200
        r = client.get("/", headers=world.other)
        assert r.status_code == 403 and "tenant 'other' may not use /" in r.json()["detail"]
    engine.dispose()


def test_tenant_dependency_checks_the_key_without_the_middleware(world: World) -> None:
    """A route using CurrentTenant in an app assembled without auth.install is not open."""
    bare = FastAPI()
    engine = make_engine(world.url)
    bare.state.settings = Settings(database_url=world.url)
    bare.state.session_factory = make_session_factory(engine)

    @bare.get("/whoami")
    def whoami(tenant: CurrentTenant) -> str:
        return tenant

    with TestClient(bare) as client:
        r = client.get("/whoami")
        assert r.status_code == 401 and "no API key" in r.json()["detail"]
        assert client.get("/whoami", headers=world.revoked).status_code == 401
        assert client.get("/whoami", headers=world.other).json() == "other"
    engine.dispose()


def test_store_outage_while_checking_a_key_is_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        r = client.get("/v1/jobs", headers={"X-API-Key": "adt_x"})
    # a missing directory never heals: no Retry-After, the detail says what to create
    assert r.status_code == 503 and "retry-after" not in r.headers
    assert "missing-dir" in r.json()["detail"] and "mkdir -p" in r.json()["detail"]


def test_keys_on_both_backends(migrated_url: str) -> None:
    """Tenant scoping and revocation on SQLite and PostgreSQL."""
    acme_key, acme = in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
    _, other = in_store(migrated_url, lambda s: keys.create_key(s, "other"))
    with TestClient(create_app(Settings(database_url=migrated_url))) as client:
        job_id = client.post("/v1/jobs", json=job_body(), headers={"X-API-Key": acme}).json()["id"]
        assert client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": other}).status_code == 404
        in_store(migrated_url, lambda s: keys.revoke_key(s, acme_key.id))
        assert client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": acme}).status_code == 401
