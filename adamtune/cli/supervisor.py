"""The local service of ``adamtune up`` and ``adamtune demo``: migrate the database, start
the API and the workers as children, and turn a stop signal into an orderly stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from adamtune.cli.processes import (
    Children,
    adamtune_command,
    dashboard_command,
    free_port,
    port_is_free,
    wait_http_ok,
)

START_TIMEOUT_S = 60.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def prepare_database(url: str) -> None:
    """Apply our migrations and create Optuna's tables (the dashboard only reads them)."""
    from tuner.db.engine import optuna_storage, upgrade

    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(url)
    storage = optuna_storage(url)
    storage.remove_session()
    storage.engine.dispose()


class StopOnSignal:
    """Turns SIGINT/SIGTERM into a flag, so the supervisor stops its children in order."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True


def local_auth_env(host: str) -> dict[str, str]:
    """One-machine mode runs without API keys unless ADAMTUNE_AUTH says otherwise."""
    if "ADAMTUNE_AUTH" in os.environ:
        return {}
    print("note: ADAMTUNE_AUTH=disabled for this local service: no API keys are needed. "
          "Set ADAMTUNE_AUTH=enabled and create keys with `adamtune keys create` to require them.",
          file=sys.stderr)
    if host not in LOOPBACK:
        print(f"WARNING: without API keys, anyone who can reach {host} can submit jobs",
              file=sys.stderr)
    return {"ADAMTUNE_AUTH": "disabled"}


def _cpu_threads_env(device: str, workers: int) -> dict[str, str]:
    """CPU workers on one machine share its cores instead of each spinning on all of them."""
    if device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, workers)))}


def _dashboard_port(api_port: int) -> int:
    return api_port + 1 if port_is_free(api_port + 1) else free_port()


def start_service(
    children: Children, *, host: str, port: int, workers: int, device: str, url: str
) -> dict[str, str]:
    """Start the API, ``workers`` workers and the dashboard; return their URLs once up."""
    api = children.start("api", adamtune_command("api", "--host", host, "--port", str(port)))
    for i in range(workers):
        children.start(f"worker-{i}", adamtune_command("worker", "--device", device),
                       env=_cpu_threads_env(device, workers))
    urls = {"api": f"http://{host}:{port}", "docs": f"http://{host}:{port}/docs"}
    dash_port = _dashboard_port(port)
    dash = dashboard_command(url, host, dash_port)
    if dash is None:
        print("note: optuna-dashboard is not installed; skipping the dashboard", file=sys.stderr)
    else:
        children.start("dashboard", dash)
        urls["dashboard"] = f"http://{host}:{dash_port}"
    wait_http_ok(f"{urls['api']}/healthz", START_TIMEOUT_S, [api])
    return urls
