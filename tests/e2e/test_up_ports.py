"""``ADAMTUNE_AUTH=enabled adamtune up``: no TCP port its processes open serves study data
without a key. There is one dashboard, the API's own ``/dashboard``, behind the keys; no
keyless optuna-dashboard next to it (it had listed every tenant's studies on port + 1)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import httpx
import optuna
import pytest

from adamtune.cli.processes import adamtune_command, free_port, wait_http_ok
from tests.e2e.harness import CHILD_ENV, listening_ports, wait_until
from tests.processes import descendants
from tuner.db import keys
from tuner.db.engine import make_engine, make_session_factory, transaction

pytestmark = pytest.mark.e2e

SECRET_STUDY = "adamtune-another-tenants-study"
STUDY_PATHS = ["/api/studies", "/api/studies/1", "/csv/1", "/api/meta", "/dashboard",
               "/dashboard/api/studies", "/dashboard/api/studies/1", "/v1/jobs"]
REFUSED = {401, 403, 404, 405}


def _create_key(url: str, tenant: str) -> str:
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            return keys.create_key(session, tenant)[1]
    finally:
        engine.dispose()


def _probe(port: int, path: str, method: str = "GET") -> httpx.Response | None:
    """The answer of ``port`` to ``path`` without a key; None where it speaks no HTTP."""
    try:
        return httpx.request(method, f"http://127.0.0.1:{port}{path}", timeout=5.0)
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_port_opened_by_up_serves_study_data_without_a_key(
    migrated_url: str, tmp_path: Path
) -> None:
    optuna.create_study(study_name=SECRET_STUDY, storage=migrated_url)
    secret_key = _create_key(migrated_url, "team-a")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAMTUNE_")}
    env.update({**CHILD_ENV, "ADAMTUNE_AUTH": "enabled", "ADAMTUNE_DATABASE_URL": migrated_url})
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log_file:
        up = subprocess.Popen(adamtune_command("up", "--port", str(port), "--workers", "1"),
                              env=env, stdout=log_file, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", 90)
            wait_until(lambda: len(descendants(up.pid)) >= 2, 30, "the API and the worker")
            wait_until(lambda: "Stop with Ctrl-C" in log_path.read_text(), 30, "up's URLs")
            ports = listening_ports([up.pid, *descendants(up.pid)])
            assert port in ports, (ports, log_path.read_text())
            for open_port in sorted(ports):
                for path in STUDY_PATHS:
                    answer = _probe(open_port, path)
                    where = f"port {open_port} {path}"
                    assert answer is None or answer.status_code in REFUSED, (
                        where, answer.status_code, answer.text[:200])
                    assert answer is None or SECRET_STUDY not in answer.text, where
                created = _probe(open_port, "/api/studies", method="POST")
                assert created is None or created.status_code in REFUSED, open_port
            with httpx.Client(headers={"Authorization": f"Bearer {secret_key}"}) as client:
                listed = client.get(f"http://127.0.0.1:{port}/api/studies", timeout=10.0)
                assert listed.status_code == 200, listed.text[:200]  # the key opens it...
                assert SECRET_STUDY not in listed.text  # ...to team-a's studies alone
            output = log_path.read_text()
            assert f"http://127.0.0.1:{port}/dashboard" in output
            assert "ADAMTUNE_AUTH=disabled" not in output
        finally:
            children = descendants(up.pid)
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
