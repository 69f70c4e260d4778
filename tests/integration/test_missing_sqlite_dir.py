"""A SQLite URL whose directory is missing: every entry point says so and how to fix it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adamtune.cli.processes import adamtune_command
from api.app import create_app
from tuner.db.engine import sqlite_path_problem
from tuner.settings import Settings


def missing_url(tmp_path: Path) -> tuple[str, Path]:
    directory = tmp_path / "no" / "such"
    return f"sqlite:///{directory}/adamtune.db", directory


def test_problem_names_the_directory_and_the_fix(tmp_path: Path) -> None:
    url, directory = missing_url(tmp_path)
    problem = sqlite_path_problem(url)
    assert problem and str(directory) in problem and "ADAMTUNE_DATABASE_URL" in problem
    assert sqlite_path_problem(f"sqlite:///{tmp_path}/ok.db") is None
    assert sqlite_path_problem("sqlite://") is None
    assert sqlite_path_problem("postgresql+psycopg://u@h/db") is None


@pytest.mark.parametrize("auth", ["enabled", "disabled"])
def test_api_says_the_directory_is_missing_not_retry(
    tmp_path: Path, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, directory = missing_url(tmp_path)
    app = create_app(Settings(database_url=url, auth=auth))
    assert any(str(directory) in r.getMessage() for r in caplog.records)
    with TestClient(app) as client:
        answer = client.get("/v1/jobs", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 503
    detail = answer.json()["detail"]
    assert str(directory) in detail and "mkdir -p" in detail and "retry" not in detail
    assert "retry-after" not in answer.headers


def test_db_upgrade_says_the_directory_is_missing(tmp_path: Path) -> None:
    url, directory = missing_url(tmp_path)
    done = subprocess.run(
        adamtune_command("db", "upgrade"),
        env={**os.environ, "ADAMTUNE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert str(directory) in done.stderr and "ADAMTUNE_DATABASE_URL" in done.stderr
    assert not directory.exists()
