"""``adamtune api --workers N``: N uvicorn processes on one port, each a whole app built from
the same ``ADAMTUNE_*`` environment, with keys checked (and revocation seen) by every one."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from adamtune.cli import main as cli_main
from adamtune.cli.processes import Child, Children, adamtune_command, free_port, wait_http_ok
from tuner.db import jobs, keys
from tuner.db.engine import make_engine, make_session_factory, transaction
from tuner.spec import parse_job

pytestmark = pytest.mark.e2e

START_TIMEOUT_S = 90.0
STARTED = re.compile(r"Started server process \[(\d+)\]")


def _seed(url: str) -> tuple[str, str, str]:
    """A key of tenant acme (id, secret) and a job of acme's."""
    engine = make_engine(url)
    spec = parse_job({"workload": "regression_mlp", "budget": {"trials": 2}})
    with transaction(make_session_factory(engine)) as s:
        row, secret = keys.create_key(s, "acme")
        job_id = jobs.create_job(s, spec=spec, tenant="acme").id
    engine.dispose()
    return row.id, secret, job_id


def _server_pids(api: Child, want: int, timeout: float) -> set[str]:
    """The pids of the worker processes that say they started, once ``want`` have."""
    deadline = time.monotonic() + timeout
    pids: set[str] = set()
    while time.monotonic() < deadline and len(pids) < want:
        assert api.log_path is not None
        pids = set(STARTED.findall(api.log_path.read_text(errors="replace")))
        time.sleep(0.2)
    return pids


def test_api_with_two_workers_serves_keys_and_sees_revocation(
    migrated_url: str, tmp_path: Path
) -> None:
    key_id, secret, job_id = _seed(migrated_url)
    env = {
        "ADAMTUNE_DATABASE_URL": migrated_url,
        "ADAMTUNE_AUTH": "enabled",
        "ADAMTUNE_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Children(env=env, log_dir=tmp_path / "logs") as kids:
        api = kids.start("api", adamtune_command("api", "--port", str(port), "--workers", "2"))
        wait_http_ok(f"{base}/readyz", START_TIMEOUT_S, [api])
        assert len(_server_pids(api, 2, START_TIMEOUT_S)) == 2, api.log_tail()
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok", "database": "ok"}
        headers = {"Authorization": f"Bearer {secret}"}
        # A new connection per request, so that both processes get some of them.
        for _ in range(10):
            assert httpx.get(f"{base}/v1/jobs/{job_id}").status_code == 401  # default deny
            r = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers)
            assert r.status_code == 200 and r.json()["id"] == job_id
        assert httpx.get(f"{base}/v1/jobs", headers=headers).json()["count"] == 1
        with transaction(make_session_factory(engine := make_engine(migrated_url))) as s:
            assert keys.revoke_key(s, key_id)
        engine.dispose()
        for _ in range(10):  # no process caches the key: refused from the next request on
            assert httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers).status_code == 401
        assert api.running


def test_api_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["api", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
