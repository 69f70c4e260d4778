"""``adamtune db upgrade`` prepares a fresh database for every process: our tables and Optuna's.

The API's trials and dashboard routes read Optuna's tables; on a fresh database where no
worker has opened a study yet they must already exist, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from adamtune.cli import main as cli_main
from api.app import create_app
from tests.integration.api_helpers import store_session
from tuner.db import keys
from tuner.db.engine import ALEMBIC_VERSION_TABLE, make_engine, normalise_url
from tuner.db.models import all_tables
from tuner.settings import Settings

OPTUNA_TABLES = {"alembic_version", "studies", "trials", "trial_user_attributes",
                 "trial_heartbeats"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture
def upgraded_twice(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ADAMTUNE_DATABASE_URL", db_url)
    assert _tables(db_url) == set()
    assert cli_main(["db", "upgrade"]) == 0
    assert cli_main(["db", "upgrade"]) == 0  # idempotent
    return db_url


def test_db_upgrade_creates_our_tables_and_optunas(upgraded_twice: str) -> None:
    tables = _tables(upgraded_twice)
    assert set(all_tables().tables) | {ALEMBIC_VERSION_TABLE} <= tables
    assert OPTUNA_TABLES <= tables
    # Optuna's schema is at this Optuna's head: a storage that neither creates tables nor
    # skips the version check opens it (it raises on a missing or outdated schema).
    storage = optuna.storages.RDBStorage(normalise_url(upgraded_twice), skip_table_creation=True)
    try:
        assert storage.get_current_version() == storage.get_head_version()
        assert storage.get_all_studies() == []
    finally:
        storage.engine.dispose()


def test_api_reads_optuna_on_a_fresh_database(upgraded_twice: str) -> None:
    """Before any job or worker exists, the dashboard's study list answers (empty), with a key."""
    with store_session(upgraded_twice) as s:
        _, key = keys.create_key(s, "alice")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(Settings(database_url=upgraded_twice))) as client:
        listed = client.get("/api/studies", headers=auth)
        assert listed.status_code == 200, listed.text
        assert listed.json()["study_summaries"] == []
        assert client.get("/v1/jobs", headers=auth).status_code == 200


def _run_upgrade(url: str, *flags: str) -> list[str]:
    env = {**os.environ, "ADAMTUNE_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "adamtune", *flags, "db", "upgrade"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_db_upgrade_says_its_outcome_in_one_line(db_url: str) -> None:
    """By default one line says what happened (not Alembic's ten INFO lines); -v shows them."""
    first = _run_upgrade(db_url)
    assert len(first) == 1 and "upgraded to revision" in first[0] and "from empty" in first[0]
    again = _run_upgrade(db_url)
    assert len(again) == 1 and "already at revision" in again[0], again
    verbose = _run_upgrade(db_url, "-v")
    assert any("alembic" in line for line in verbose), verbose
