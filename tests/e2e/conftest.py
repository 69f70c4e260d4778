"""End-to-end fixtures: ``service`` runs real processes on SQLite and on PostgreSQL.

See :mod:`tests.e2e.harness`. Every process is stopped at teardown, and the logs of a
failed test (or of every test, with ``ADAMTUNE_E2E_LOGS=1``) are printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Service


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so teardown knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def service(
    migrated_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Service]:
    """Processes of this test (none started yet); stopped, and logs printed on failure."""
    svc = Service(migrated_url, tmp_path / "logs")
    try:
        yield svc
    finally:
        svc.stop()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed or os.environ.get("ADAMTUNE_E2E_LOGS") == "1":
            print(svc.all_logs())
