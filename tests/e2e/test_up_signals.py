"""``adamtune up`` and ``adamtune demo`` as a user runs them: behind a pipe that closes
(``adamtune up 2>&1 | head -c 100``), stopped by SIGINT, SIGTERM or SIGHUP. Every child
must be gone within seconds and the parent must exit; nothing is left with parent 1."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adamtune.cli.processes import adamtune_command, free_port, wait_http_ok
from tests.e2e.harness import CHILD_ENV, wait_until
from tests.processes import descendants, is_alive

pytestmark = pytest.mark.e2e

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
CHILDREN_GONE_S = 10.0
START_S = 90.0


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAMTUNE_")}
    return {**env, **CHILD_ENV, **extra}


@contextmanager
def through_closing_pipe(
    command: list[str], env: dict[str, str], cwd: Path
) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """``command 2>&1 | head -c 100``: head takes 100 bytes and closes the pipe."""
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    head = subprocess.Popen(
        ["head", "-c", "100"], stdin=proc.stdout, stdout=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    proc.stdout.close()  # head alone reads the pipe
    try:
        yield proc, head
    finally:
        for pid in descendants(proc.pid) if proc.poll() is None else []:
            _kill(pid)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        head.kill()
        head.wait()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_and_check(proc: subprocess.Popen[bytes], head: subprocess.Popen[bytes],
                   children: list[int], signum: int) -> int:
    """Wait for head to close the pipe, send ``signum``; every child gone, the parent out."""
    head.wait(timeout=30)  # the pipe now has no reader: every write to it fails
    assert proc.poll() is None, f"exited {proc.returncode} when its output pipe closed"
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    try:
        wait_until(lambda: not any(is_alive(p) for p in children), CHILDREN_GONE_S,
                   "every child to exit")
    finally:
        for pid in children:
            _kill(pid)
    return code


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("signum", SIGNALS, ids=[s.name for s in SIGNALS])
def test_up_behind_a_closed_pipe_stops_every_child_on_a_signal(
    migrated_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    port = free_port()
    env = base_env(ADAMTUNE_DATABASE_URL=migrated_url)
    env.pop("ADAMTUNE_AUTH")  # `up` prints its no-key note first: head has its bytes at once
    command = adamtune_command("up", "--port", str(port), "--workers", "1")
    with through_closing_pipe(command, env, tmp_path) as (up, head):
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", START_S)
        children = wait_until(lambda: len(kids := descendants(up.pid)) >= 2 and kids, 30,
                              "the API and the worker to start")
        assert stop_and_check(up, head, children, signum) == 0


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_demo_behind_a_closed_pipe_stops_every_child_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """The test reads the demo's first line and closes the pipe; the signal comes while the
    service starts (exit 130). Had the job been submitted by then, the demo's next line
    would end it (a closed pipe ends it quietly, exit 0): either way, no child is left."""
    demo = subprocess.Popen(adamtune_command("demo"), env=base_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert demo.stdout is not None
    children: list[int] = []
    try:
        assert demo.stdout.readline().startswith(b"demo: fresh database")
        demo.stdout.close()
        children = wait_until(lambda: len(kids := descendants(demo.pid)) >= 2 and kids, START_S,
                              "the demo's API and worker to start")
        demo.send_signal(signum)
        assert demo.wait(timeout=60) in (0, 130)
        wait_until(lambda: not any(is_alive(p) for p in children), CHILDREN_GONE_S,
                   "every child of the demo to exit")
    finally:
        for pid in children:
            _kill(pid)
        if demo.poll() is None:
            demo.kill()
        demo.wait()
