"""End-to-end harness: the real ``adamtune api`` and ``adamtune worker`` processes.

A :class:`Service` (the ``service`` fixture) starts processes on a migrated database
(SQLite or PostgreSQL), on free loopback ports, with short liveness settings (heartbeat
1 s, grace 3 s) and without API keys (``ADAMTUNE_AUTH=disabled``). Each process logs to
its own file; fault tests signal or kill workers with :meth:`Service.signal` and read
their logs with :meth:`Service.log`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from adamtune.cli.processes import Child, Children, adamtune_command, free_port, wait_http_ok
from tuner.client import Client

HEARTBEAT_INTERVAL_S = 1
GRACE_PERIOD_S = 3
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 20.0

CHILD_ENV = {
    "ADAMTUNE_AUTH": "disabled",
    "ADAMTUNE_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL_S),
    "ADAMTUNE_GRACE_PERIOD": str(GRACE_PERIOD_S),
    "ADAMTUNE_POLL_INTERVAL": "0.2",
    "ADAMTUNE_LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
    # Two workers share two cores: one thread each keeps them from fighting over both.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class Service:
    """The API and workers of one test, on one database."""

    def __init__(self, database_url: str, log_dir: Path):
        env = {**CHILD_ENV, "ADAMTUNE_DATABASE_URL": database_url}
        self.database_url = database_url
        self.log_dir = log_dir
        self.children = Children(env=env, log_dir=log_dir)
        self.api_url: str | None = None
        self.api_port: int | None = None
        self._by_name: dict[str, Child] = {}

    def start_api(self, env: dict[str, str] | None = None, port: int | None = None) -> str:
        """Start ``adamtune api`` (on a free port unless given); its URL once /healthz answers."""
        port = port or free_port()
        child = self._start("api", adamtune_command("api", "--port", str(port)), env)
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", START_TIMEOUT_S, [child])
        self.api_url = url
        self.api_port = port
        return url

    def restart_api(self) -> str:
        """Stop the API (SIGTERM) and start it again on the same port."""
        self.signal("api", signal.SIGTERM)
        self.wait_exit("api", timeout=STOP_GRACE_S)
        return self.start_api(port=self.api_port)

    def study_states(self, job_id: str) -> list[TrialState]:
        """The states of every trial in the job's study, read straight from the database."""
        study = optuna.load_study(study_name=f"adamtune-{job_id}", storage=self.database_url)
        return [t.state for t in study.get_trials(deepcopy=False)]

    def start_worker(self, name: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """Start ``adamtune worker --worker-id NAME ARGS`` (it registers within seconds)."""
        command = adamtune_command("worker", "--worker-id", name, *args)
        return self._start(name, command, env)

    def _start(self, name: str, command: list[str], env: dict[str, str] | None) -> Child:
        if name in self._by_name and self._by_name[name].running:
            raise ValueError(f"{name} is already running")
        child = self.children.start(name, command, env)
        self._by_name[name] = child
        return child

    def child(self, name: str) -> Child:
        return self._by_name[name]

    def signal(self, name: str, signum: int = signal.SIGTERM) -> None:
        self._by_name[name].signal(signum)

    def wait_exit(self, name: str, timeout: float) -> int:
        """Wait for a child to exit and return its code (raises TimeoutError)."""
        process = self._by_name[name].process
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} still running after {timeout:.0f}s\n{self.log(name)}")
            time.sleep(0.1)
        return int(process.returncode)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, name: str, text: str, timeout: float) -> None:
        """Wait until ``text`` appears in a child's log (e.g. "trial 3 started")."""
        wait_until(lambda: text in self.log(name), timeout, f"{text!r} in the log of {name}")

    def client(self) -> Client:
        assert self.api_url is not None, "start_api() first"
        return Client(self.api_url)

    def all_logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-60:])
            parts.append(f"----- {path.name} (last 60 lines) -----\n{tail}")
        return "\n".join(parts)

    def stop(self) -> None:
        self.children.stop(grace=STOP_GRACE_S)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- a process tree and the TCP ports it listens on, read from /proc (Linux)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_ports(pids: Iterable[int]) -> set[int]:
    """The TCP ports (IPv4 and IPv6) on which any of ``pids`` listens."""
    inodes = set().union(*(_socket_inodes(pid) for pid in pids))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
