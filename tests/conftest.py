"""Shared fixtures: a database URL for every backend the store supports.

``db_url`` runs a test once on SQLite (a temporary file) and once on PostgreSQL (a fresh
database on the server named by ``ADAMTUNE_TEST_POSTGRES_URL``, dropped afterwards).
Where PostgreSQL is unreachable the PostgreSQL run is skipped, saying why, unless
``ADAMTUNE_REQUIRE_POSTGRES=1`` (as in CI), where it fails instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tuner.db.engine import temporary_postgres_database

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_server_url() -> str:
    url = os.environ.get("ADAMTUNE_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _unavailable(reason: str) -> None:
    if os.environ.get("ADAMTUNE_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (ADAMTUNE_REQUIRE_POSTGRES=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason} (set ADAMTUNE_TEST_POSTGRES_URL)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'adamtune.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped (with force) after the test."""
    server_url = _postgres_server_url()
    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_postgres_database(server_url, "adamtune_test"))
        except Exception as exc:  # any failure to reach or use the server means: no PostgreSQL
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            where = make_url(server_url).render_as_string()
            _unavailable(f"cannot create a database at {where}: {first_line}")
        yield url


@pytest.fixture(params=["sqlite", "postgres"], ids=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL (``-k sqlite`` / ``-k postgres`` pick one)."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("sqlite_url")


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """``db_url`` with adamtune's migrations applied."""
    from tuner.db.engine import upgrade

    upgrade(db_url)
    return db_url


@pytest.fixture
def sessions(migrated_url: str) -> Iterator[Any]:
    """A session factory on ``migrated_url`` (its engine disposed afterwards)."""
    from tuner.db.engine import make_engine, make_session_factory

    engine = make_engine(migrated_url)
    yield make_session_factory(engine)
    engine.dispose()
