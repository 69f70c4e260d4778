"""``adamtune worker --devices cpu*2``, end to end: a real API and a real supervisor whose two
worker processes share one job.

``kill -9`` one child in its trial: the supervisor starts it again (a new pid, logged) under
the same worker id, the killed trial is re-run, and the job ends with exactly the budgeted
trials. SIGTERM to the supervisor reaches both children, each hands its trial back, and the
supervisor exits 0 once both have stopped. The workload is ``slow_digits``
(:mod:`tests.e2e.faults_harness`) so a trial can be hit in its middle. The supervisor's own
restart logic is also checked on stand-in children that exit at once (no torch, no store).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from typing import Any

import pytest
from optuna.trial import TrialState

from tests.e2e.faults_harness import (
    FaultService,
    Store,
    assert_exact_budget,
    faults_fixture,  # noqa: F401 - the faults fixture
    job_spec,
    retries_of,
    store_fixture,  # noqa: F401 - the store fixture
)
from tests.e2e.harness import wait_until
from tests.processes import is_alive
from tuner.client import Client
from workers.devices import parse_devices
from workers.supervisor import RestartPolicy, Supervisor

pytestmark = pytest.mark.e2e

NODE = "node"
CHILDREN = (f"{NODE}-cpu0", f"{NODE}-cpu1")
JOB_TIMEOUT_S = 150.0
START_TIMEOUT_S = 90.0


def _workers(client: Client) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in client._json("GET", "/v1/workers")["data"]}


def _both_running(client: Client) -> dict[str, dict[str, Any]] | None:
    """The two children's rows once both are alive and have reported their device."""
    rows = _workers(client)
    ready = all(
        name in rows and rows[name]["alive"] and rows[name]["device_info"] is not None
        for name in CHILDREN
    )
    return rows if ready else None


def _start_node(faults: FaultService) -> None:
    faults.start_worker(NODE, "--devices", "cpu*2")  # --worker-id node: children node-cpuN


def test_kill9_child_is_restarted_and_the_budget_is_exact(
    faults: FaultService, store: Store
) -> None:
    trials_total, steps = 4, 60  # a trial lasts >= 1.5 s: the kill lands in its middle
    faults.start_api()
    _start_node(faults)
    with faults.client() as client:
        rows = wait_until(lambda: _both_running(client), START_TIMEOUT_S, "both children")
        for name in CHILDREN:
            info = rows[name]["device_info"]
            assert rows[name]["device"] == "cpu" and info["kind"] == "cpu"
            assert info["name"] and info["memory_used_bytes"] > 0
        job_id = client.submit(job_spec("slow_digits", trials_total, steps))["id"]
        victim = store.wait_running_trial(job_id, CHILDREN[0], younger_than=0.5)
        old_pid = _workers(client)[CHILDREN[0]]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        faults.wait_for_log(NODE, f"worker {CHILDREN[0]} restarted (restart 1): new pid",
                            timeout=60)
        revived = wait_until(
            lambda: (w := _workers(client)[CHILDREN[0]])["alive"] and w["pid"] != old_pid and w,
            START_TIMEOUT_S, f"{CHILDREN[0]} registered again with a new pid",
        )
        job = client.wait(job_id, timeout=JOB_TIMEOUT_S, poll=0.5)

    log = faults.log(NODE)
    assert f"worker {CHILDREN[0]} (pid {old_pid}) killed by SIGKILL" in log
    assert f"new pid {revived['pid']}" in log
    assert not is_alive(old_pid)
    assert faults.alive(NODE)  # the supervisor itself carried on
    assert job["status"] == "completed", job
    assert job["progress"]["trials_completed"] == trials_total
    trials = store.trials(job_id)
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL
    assert len(retries_of(trials, victim.number)) == 1
    assert {t.user_attrs.get("worker_id") for t in trials} == set(CHILDREN)  # shared the job
    assert_exact_budget(trials, trials_total)


def test_sigterm_stops_both_children_and_the_supervisor_exits_0(
    faults: FaultService, store: Store
) -> None:
    trials_total, steps = 6, 400  # trials of >= 10 s: both are mid-trial at the SIGTERM
    faults.start_api()
    _start_node(faults)
    with faults.client() as client:
        rows = wait_until(lambda: _both_running(client), START_TIMEOUT_S, "both children")
        pids = [rows[name]["pid"] for name in CHILDREN]
        job_id = client.submit(job_spec("slow_digits", trials_total, steps))["id"]
        held = [store.wait_running_trial(job_id, name, younger_than=5.0) for name in CHILDREN]
        faults.signal(NODE, signal.SIGTERM)
        assert faults.wait_exit(NODE, timeout=60) == 0
        stopped = _workers(client)

    assert all(not is_alive(pid) for pid in pids)
    assert [stopped[name]["status"] for name in CHILDREN] == ["stopped", "stopped"]
    log = faults.log(NODE)
    assert "SIGTERM received: passing it on to 2 worker(s)" in log
    assert "restarting it in" not in log
    for name in CHILDREN:
        assert f"worker {name} stopped" in log  # each child's own clean stop
    by_number = {t.number: t for t in store.trials(job_id)}
    for trial in held:
        assert by_number[trial.number].state == TrialState.FAIL
        assert "handed back" in by_number[trial.number].user_attrs["reason"]


# ---------------------------------------------------------------- stand-in children


def _exiting_child(code: int) -> Any:
    def command(_slot: Any, worker_id: str) -> list[str]:
        return [sys.executable, "-c", f"import sys; sys.exit({code})"]

    return command


def test_a_child_that_keeps_dying_is_restarted_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exit 3 again and again: restarted after 0.05, 0.1, 0.2, 0.2 s; a stop ends it all."""
    supervisor = Supervisor(parse_devices("cpu", cuda_count=0), NODE, _exiting_child(3),
                            policy=RestartPolicy(first_delay=0.05, max_delay=0.2),
                            poll_interval=0.02)
    caplog.set_level(logging.INFO, logger="workers.supervisor")
    managed = supervisor.managed[0]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(supervisor.run()))
    runner.start()
    wait_until(lambda: managed.restarts >= 4, 30, "four restarts")
    supervisor._on_signal(signal.SIGTERM, None)  # what the SIGTERM handler does
    runner.join(timeout=30)

    assert result == [1]  # the last exit was not clean
    assert managed.done and managed.exit_codes[:4] == [3, 3, 3, 3]
    delays = [float(m) for r in caplog.records
              for m in re.findall(r"restarting it in ([0-9.]+)s", r.getMessage())]
    assert delays[:4] == [0.1, 0.1, 0.2, 0.2]  # 0.05 prints as 0.1 (one decimal)
    assert any("restarted (restart 1): new pid" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("code", [0, 2])
def test_clean_and_usage_exits_are_not_restarted(code: int) -> None:
    """Exit 0 is a stop on purpose; exit 2 a wrong command line that a restart cannot fix."""
    supervisor = Supervisor(parse_devices("cpu*2", cuda_count=0), NODE, _exiting_child(code),
                            policy=RestartPolicy(first_delay=0.01), poll_interval=0.02)
    assert supervisor.run() == (0 if code == 0 else 1)
    assert [m.restarts for m in supervisor.managed] == [0, 0]
    assert [m.worker_id for m in supervisor.managed] == list(CHILDREN)
