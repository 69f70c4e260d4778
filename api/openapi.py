"""The OpenAPI schema with this server's own limits: the workloads it knows, its budgets.

``JobSpec`` declares the hard ceilings every server shares; a server may set lower ones
(``ADAMTUNE_MAX_*``) and knows only the workloads installed with it. Writing both into
the schema lets clients (and fuzzers) see what this server accepts before they submit.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from tuner import workloads
from tuner.settings import Settings

DOCS_URL = "/docs"
# Swagger UI's files ship in the fastapi-swagger wheel: /docs works offline, with no CDN.
DOCS_ASSETS_URL = "/docs-assets"
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
DOCS_PATHS = frozenset({DOCS_URL} | {f"{DOCS_ASSETS_URL}/{name}" for name in DOCS_ASSETS})


def _narrow(schemas: dict[str, Any], settings: Settings) -> None:
    job = schemas.get("JobSpec", {}).get("properties", {})
    budget = schemas.get("Budget", {}).get("properties", {})
    if "workload" in job:  # a name, or null in a program job
        for branch in job["workload"].get("anyOf", [job["workload"]]):
            if branch.get("type") == "string":
                branch["enum"] = workloads.names()
        job["workload"]["description"] = (
            "an installed workload (see GET /v1/workloads); or null and a program"
        )
    if "population" in job:  # an integer, or "auto"
        for branch in job["population"].get("anyOf", [job["population"]]):
            if branch.get("type") == "integer":
                branch["maximum"] = settings.max_population
    if "trials" in budget:
        budget["trials"]["maximum"] = settings.max_trials
    if "steps_per_trial" in budget:
        budget["steps_per_trial"]["maximum"] = settings.max_steps_per_trial


def install(app: FastAPI, settings: Settings) -> None:
    """Generate the schema once, on first request of ``/openapi.json``, with the limits in."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _narrow(schema.get("components", {}).get("schemas", {}), settings)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` from the installed package's files (build the app with
    ``docs_url=None, redoc_url=None``: FastAPI's own pages load their scripts from a CDN)."""
    assets = StaticFiles(directory=str(resources.files("fastapi_swagger") / "resources"))
    app.router.routes.append(Mount(DOCS_ASSETS_URL, app=assets, name="docs-assets"))

    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon-32x32.png",
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
