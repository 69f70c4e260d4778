"""Helpers of the fault tests: deliberately slow or faulty workloads, and looks into the store.

The fault tests need trials and sweeps slow enough to be hit in the middle, and a workload
that raises. They are installed the way a third party installs a workload: a distribution
(a ``*.dist-info`` folder with an ``adamtune.workloads`` entry point, plus its module) in a
folder on the children's ``PYTHONPATH``. The API, which only accepts workloads its registry
knows, and the workers both see it; nothing in the project's own packaging changes.

``slow_digits`` is ``digits_mlp`` sleeping :data:`SLOW_STEP_S` per training batch, so a trial
of N steps lasts at least N times that, however fast or busy the machine (sleeping costs no
CPU). ``raising_digits`` raises at its third training batch, in every trial; ``nan_digits``
feeds NaN inputs from its third batch on, so its training loss is NaN.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from tests.e2e.harness import Service, wait_until
from tuner.db.models import Job, JobEvent, LRSweep

SLOW_STEP_S = 0.025
RAISING_MESSAGE = "deliberate fault: raising_digits fails at its third training batch"
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)

_PLUGIN_MODULE = f'''"""Workloads of adamtune's fault tests (see tests/e2e/faults_harness)."""

import time

from tuner.workloads.digits import DigitsMLP


class SlowDigits(DigitsMLP):
    name = "slow_digits"
    description = "digits_mlp sleeping {SLOW_STEP_S}s per training batch (fault tests)"

    def train_batches(self, seed):
        for batch in super().train_batches(seed):
            time.sleep({SLOW_STEP_S})
            yield batch


class RaisingDigits(DigitsMLP):
    name = "raising_digits"
    description = "digits_mlp that raises at its third training batch (fault tests)"

    def train_batches(self, seed):
        batches = super().train_batches(seed)
        yield next(batches)
        yield next(batches)
        raise RuntimeError({RAISING_MESSAGE!r})


class NanDigits(DigitsMLP):
    name = "nan_digits"
    description = "digits_mlp whose inputs turn NaN at the third training batch (fault tests)"

    def train_batches(self, seed):
        for i, (inputs, targets) in enumerate(super().train_batches(seed)):
            yield (inputs * float("nan") if i >= 2 else inputs), targets
'''

_ENTRY_POINTS = """[adamtune.workloads]
slow_digits = adamtune_fault_workloads:SlowDigits
raising_digits = adamtune_fault_workloads:RaisingDigits
nan_digits = adamtune_fault_workloads:NanDigits
"""


def install_fault_workloads(site: Path) -> Path:
    """Write the fault workloads' distribution into ``site``; put ``site`` on PYTHONPATH."""
    dist_info = site / "adamtune_fault_workloads-0.1.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: adamtune-fault-workloads\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(_ENTRY_POINTS)
    (site / "adamtune_fault_workloads.py").write_text(_PLUGIN_MODULE)
    return site


class FaultService(Service):
    """A :class:`Service` whose children also have the fault workloads installed."""

    def __init__(self, database_url: str, log_dir: Path, site: Path):
        super().__init__(database_url, log_dir)
        paths = [str(install_fault_workloads(site)), self.children.env.get("PYTHONPATH", "")]
        self.children.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)

    def kill(self, name: str) -> int:
        """``kill -9`` a child and wait for it; returns its exit code (-9)."""
        self.signal(name, signal.SIGKILL)
        return self.wait_exit(name, timeout=30)

    def start_api_again(self) -> None:
        """Start the API again on the port it had (after :meth:`kill`), as a restart would."""
        assert self.api_port is not None, "start_api() first"
        self.start_api(port=self.api_port)

    def alive(self, name: str) -> bool:
        return self.child(name).running

    def stop(self) -> None:
        """Kill what is left: the tests check graceful stops themselves, teardown needs none."""
        for child in self.children.children:
            child.signal(signal.SIGKILL)
        super().stop()


# ---------------------------------------------------------------- the store, read directly


class Store:
    """Read-only looks at a job in the store: its row, events, sweep and Optuna trials."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.engine = create_engine(database_url)
        self._storage: optuna.storages.RDBStorage | None = None

    def close(self) -> None:
        self.engine.dispose()
        if self._storage is not None:
            self._storage.remove_session()
            self._storage.engine.dispose()

    def job(self, job_id: str) -> Job:
        with Session(self.engine, expire_on_commit=False) as s:
            job = s.get(Job, job_id)
            assert job is not None, f"no job {job_id}"
            return job

    def events(self, job_id: str) -> list[JobEvent]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(
                s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))
            )

    def sweep_worker(self, job_id: str) -> str | None:
        with Session(self.engine) as s:
            return s.scalar(select(LRSweep.worker_id).where(LRSweep.job_id == job_id))

    def trials(self, job_id: str) -> list[FrozenTrial]:
        """Every trial of the job's study (empty while the study does not exist).

        Optuna's storage is opened only once a worker has created the study: opening it
        earlier would race the workers that are creating Optuna's tables.
        """
        if self._storage is None:
            if not self._study_exists(job_id):
                return []
            self._storage = optuna.storages.RDBStorage(self.database_url)
        try:
            study_id = self._storage.get_study_id_from_name(f"adamtune-{job_id}")
        except KeyError:
            return []
        return self._storage.get_all_trials(study_id)

    def _study_exists(self, job_id: str) -> bool:
        if not inspect(self.engine).has_table("studies"):
            return False
        query = text("SELECT 1 FROM studies WHERE study_name = :name")
        with self.engine.connect() as conn:
            return conn.execute(query, {"name": f"adamtune-{job_id}"}).first() is not None

    def wait_running_trial(
        self, job_id: str, worker: str, younger_than: float, timeout: float = 90.0
    ) -> FrozenTrial:
        """A trial of ``worker`` that started less than ``younger_than`` seconds ago.

        Killing a worker right after this returns hits it in the middle of that trial, as
        long as the trial lasts longer than ``younger_than`` (plus the kill's few ms).
        """

        def young_trial() -> FrozenTrial | None:
            now = datetime.now()  # Optuna stamps trials with the local clock of this host
            for t in self.trials(job_id):
                if (
                    t.state == TrialState.RUNNING
                    and t.user_attrs.get("worker_id") == worker
                    and t.datetime_start is not None
                    and (now - t.datetime_start).total_seconds() < younger_than
                ):
                    return t
            return None

        found: FrozenTrial = wait_until(
            young_trial, timeout, f"a trial of {worker} that just started"
        )
        return found


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials the budget counts: COMPLETE and PRUNED."""
    return [t for t in trials if t.state in FINISHED_STATES]


def retries_of(trials: list[FrozenTrial], number: int) -> list[FrozenTrial]:
    """Trials re-enqueued (``RetryHeartbeatStaleTrialCallback``) to re-run trial ``number``."""
    return [t for t in trials if number in t.system_attrs.get("retry_history", [])]


def assert_exact_budget(trials: list[FrozenTrial], budget: int) -> None:
    """The study ends with exactly ``budget`` finished trials and nothing left running."""
    states = [t.state for t in trials]
    assert len(finished(trials)) == budget, states
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states, states


# ---------------------------------------------------------------- PostgreSQL


def with_application_name(url: str, name: str) -> str:
    """The URL with ``application_name``: what ``pg_stat_activity`` shows for its sessions."""
    return (
        make_url(url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )


def terminate_backends(url: str, application_name: str) -> int:
    """``pg_terminate_backend`` every session of ``application_name`` in the URL's database."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND application_name = :name"
                ),
                {"name": application_name},
            ).all()
    finally:
        engine.dispose()
    return sum(1 for (ok,) in rows if ok)


def job_spec(workload: str, trials: int, steps: int, **extra: Any) -> dict[str, Any]:
    """A small job: ``trials`` trials of ``steps`` steps, evaluated twice per trial."""
    return {
        "workload": workload,
        "seed": 5,
        "budget": {"trials": trials, "steps_per_trial": steps, "eval_every": max(1, steps // 2)},
        "sweep": {"steps": 20},
        **extra,
    }


# ------------------------------------------- fixtures: import faults_fixture, store_fixture


@pytest.fixture(name="faults")
def faults_fixture(
    migrated_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[FaultService]:
    """API and workers with the fault workloads installed; logs printed when the test fails."""
    svc = FaultService(migrated_url, tmp_path / "logs", tmp_path / "site")
    try:
        yield svc
    finally:
        svc.stop()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed or os.environ.get("ADAMTUNE_E2E_LOGS") == "1":
            print(svc.all_logs())


@pytest.fixture(name="store")
def store_fixture(migrated_url: str) -> Iterator[Store]:
    """Direct, read-only looks at the test's database."""
    looks = Store(migrated_url)
    try:
        yield looks
    finally:
        looks.close()
