"""Child processes of ``adamtune up`` and ``adamtune demo``: start, watch, stop them all.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the parent,
which then stops every child once, in order (SIGTERM, a grace period, then SIGKILL). On
Linux a child also gets SIGTERM when its parent dies, however it dies (``PR_SET_PDEATHSIG``):
even a ``kill -9`` of the parent leaves no orphans. The end-to-end tests start their API
and workers with the same helpers.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from workers.supervisor import preexec_die_with_parent

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def adamtune_command(*args: str) -> list[str]:
    """``adamtune ARGS`` run by this very interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "adamtune", *args]


@dataclass
class Child:
    """One started child: its name, process and log file (None: inherits our stderr)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group (it leads its own session)."""
        if self.running:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Children:
    """A set of child processes stopped together (a context manager: stopped on exit)."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        die_with_parent: bool = True,
    ):
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._preexec = preexec_die_with_parent() if die_with_parent else None

    def start(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Child:
        """Start ``command`` in its own session; its output goes to ``log_dir/NAME.log``."""
        log_file: IO[bytes] | None = None
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 - closed in Child.close_log
        process = subprocess.Popen(
            list(command),
            env={**self.env, **(env or {})},
            stdout=log_file if log_file is not None else None,
            stderr=subprocess.STDOUT if log_file is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self._preexec,  # only prctl and getppid: safe after fork
        )
        child = Child(name, process, log_path, log_file)
        self.children.append(child)
        log.debug("started %s (pid %d): %s", name, process.pid, " ".join(command))
        return child

    def exited(self) -> list[Child]:
        """Children that have exited (for a supervisor: one of them died)."""
        return [c for c in self.children if not c.running]

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM every child, wait up to ``grace`` seconds, SIGKILL what is left."""
        for child in self.children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", child.name, grace)
                child.process.kill()
                child.process.wait()
        for child in self.children:
            child.close_log()

    def kill(self) -> None:
        """SIGKILL every child now (a second Ctrl-C: stop waiting for them)."""
        for child in self.children:
            child.kill_group()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_http_ok(url: str, timeout: float, children: Sequence[Child] = ()) -> None:
    """Poll ``url`` until it answers 200; raise RuntimeError (with logs) on timeout or death."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no log line per poll
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for child in children:
            if not child.running:
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode} while starting"
                    f"\n{child.log_tail()}"
                )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s ({last})")
