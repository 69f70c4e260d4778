"""The OpenAPI schema with this server's own limits: the workloads it knows, its budgets.

``JobSpec`` declares the hard ceilings every server shares; a server may set lower ones
(``ADAMTUNE_MAX_*``) and knows only the workloads installed with it. Writing both into
the schema lets clients (and fuzzers) see what this server accepts before they submit.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tuner import workloads
from tuner.settings import Settings


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
