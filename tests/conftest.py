"""Shared fixtures: a database URL for every backend the store supports.

``db_url`` runs a test once on SQLite (a temporary file) and once on PostgreSQL (a fresh
database on the server named by ``ADAMTUNE_TEST_POSTGRES_URL``, dropped afterwards).
Where PostgreSQL is unreachable the PostgreSQL run is skipped, saying why, unless
``ADAMTUNE_REQUIRE_POSTGRES=1`` (as in CI), where it fails instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
    server = make_url(_postgres_server_url())
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"adamtune_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach or use the server means: no PostgreSQL
        admin.dispose()
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _unavailable(f"cannot create a database at {server.render_as_string()}: {first_line}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
