"""Schemathesis fuzzes the /v1 API from its own OpenAPI schema (SQLite, a few examples each),
signed with a valid API key.

Every generated request must get a documented status, a body matching the documented
schema, and never a 500. Three checks are left out: two for a Starlette behaviour outside
this project (on a path with two routes, GET and POST /v1/jobs, the ``Allow`` header of a
405 lists only the first route's method), and "schema-valid data is accepted", since a job
has rules across fields that JSON Schema cannot say (``eval_every <= steps_per_trial``,
``lr_min < lr_max``); those get a 422 naming the fields, which the other tests check.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    positive_data_acceptance,
    unsupported_method,
)

from api.app import create_app
from tuner.db import keys
from tuner.db.engine import upgrade
from tuner.settings import Settings

EXCLUDED = [unsupported_method, allow_header_conformance, positive_data_acceptance]


def test_api_conforms_to_its_schema(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    auth = {"Authorization": "Bearer " + keys.create_key_at(sqlite_url, "fuzz")}
    app = create_app(Settings(database_url=sqlite_url))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The chart images (api/routes/plots.py) are left to their own tests.
    ours = schema.include(path_regex=r"^/(v1|healthz)").exclude(path_regex=r"\.svg$")
    operations = [result.ok() for result in ours.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=auth, excluded_checks=EXCLUDED)

        fuzz()
