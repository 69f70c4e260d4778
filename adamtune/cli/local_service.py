"""The local service of ``adamtune up`` and ``adamtune demo``: migrate the database, start
the API and the workers as children, and stop them all on SIGINT, SIGTERM or SIGHUP.

The order is what matters: the children are stopped first, and only then is anything
printed, with :func:`adamtune.cli.output.say`, which ignores a closed pipe. (A message
printed first to ``adamtune up 2>&1 | tee log`` after Ctrl-C had killed ``tee`` raised
BrokenPipeError and skipped the stop, leaving every child running.) There is one
dashboard, the API's own ``/dashboard``, behind the API keys: nothing else listens.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from adamtune.cli.output import say
from adamtune.cli.processes import Children, adamtune_command, wait_http_ok

START_TIMEOUT_S = 60.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(Exception):
    """A stop signal arrived; ``name`` is the signal's (SIGINT, SIGTERM, SIGHUP)."""

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class StopSignals:
    """While active, the first stop signal raises :class:`StopRequested` in the main thread;
    once stopping has begun (``stopping``), a further signal SIGKILLs the children instead
    of waiting for them to finish their work."""

    def __init__(self, children: Children) -> None:
        self.children = children
        self.stopping = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            self.children.kill()
            return
        self.stopping = True
        raise StopRequested(signum)


def supervised(
    children: Children, body: Callable[[], int], *, stopped_code: int, error_hint: str = ""
) -> int:
    """Run ``body`` (which starts ``children``) until it returns or a stop signal arrives,
    then stop every child, and only then say why it ended.

    Returns ``body``'s code, ``stopped_code`` after a stop signal, 1 when the service
    could not start (a RuntimeError, printed with ``error_hint``).
    """
    message = ""
    with StopSignals(children) as signals:
        try:
            code = body()
        except StopRequested as stop:
            code, message = stopped_code, f"{stop.name}: stopped the service"
        except RuntimeError as exc:
            code, message = 1, f"error: {exc}{error_hint}"
        finally:
            signals.stopping = True
            children.stop()
    if message:
        say(message, err=True)
    return code


def prepare_database(url: str) -> None:
    """Apply our migrations and create Optuna's tables (the API's trials routes read them)."""
    from tuner.db.engine import optuna_storage, upgrade

    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(url)
    storage = optuna_storage(url)
    storage.remove_session()
    storage.engine.dispose()


def local_auth_env(host: str) -> dict[str, str]:
    """One-machine mode runs without API keys unless ADAMTUNE_AUTH says otherwise."""
    if "ADAMTUNE_AUTH" in os.environ:
        return {}
    say("note: ADAMTUNE_AUTH=disabled for this local service: no API keys are needed. "
        "Set ADAMTUNE_AUTH=enabled and create keys with `adamtune keys create` to require them.",
        err=True)
    if host not in LOOPBACK:
        say(f"WARNING: without API keys, anyone who can reach {host} can submit jobs", err=True)
    return {"ADAMTUNE_AUTH": "disabled"}


def _cpu_threads_env(device: str, workers: int) -> dict[str, str]:
    """CPU workers on one machine share its cores instead of each spinning on all of them."""
    if device != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, workers)))}


def start_service(
    children: Children,
    *,
    host: str,
    port: int,
    workers: int,
    device: str,
    dashboard: bool,
    worker_options: Sequence[str] = (),
) -> dict[str, str]:
    """Start the API and ``workers`` workers; return the URLs to show once the API is up
    (``dashboard``: the API serves its Optuna dashboard, ADAMTUNE_DASHBOARD;
    ``worker_options``: more options of each ``adamtune worker``, e.g. its programs)."""
    api = children.start("api", adamtune_command("api", "--host", host, "--port", str(port)))
    for i in range(workers):
        command = adamtune_command("worker", "--device", device, *worker_options)
        children.start(f"worker-{i}", command,
                       env=_cpu_threads_env(device, workers))
    base = f"http://{host}:{port}"
    wait_http_ok(f"{base}/healthz", START_TIMEOUT_S, [api])
    urls = {"api": base, "docs": f"{base}/docs"}
    if dashboard:
        urls["dashboard"] = f"{base}/dashboard"
    return urls


def supervise(children: Children, poll: float = 0.5) -> int:
    """Wait while every child runs; 1 (naming it) as soon as one exits by itself."""
    while True:
        dead = children.exited()
        if dead:
            for child in dead:
                say(f"error: {child.name} exited with code {child.process.returncode}", err=True)
            return 1
        time.sleep(poll)
