"""A worker's identity and its connections: who it is, what it runs, where the store is."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from tuner.db.engine import make_engine, make_session_factory, optuna_storage
from tuner.db.optuna_store import (
    REASON_ATTR,
    create_trial_from,
    rdb_storage,
    record_reason_of_finished_trial,
    trial_id,
)
from tuner.settings import DEFAULT_MAX_SWEEP_ATTEMPTS, Settings, default_program_log_dir
from tuner.spec import program_target
from tuner.workloads import registry
from workers.programs import Program

log = logging.getLogger(__name__)

# A trial whose worker went silent is re-run at most this many times (it might be the trial
# that kills workers, e.g. by running out of memory); after that it counts as failed.
MAX_STALE_RETRIES = 3


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def check_device(device: str) -> str:
    """``cpu`` or ``cuda:N`` (``cuda`` means ``cuda:0``); raises ValueError saying what to pass."""
    if device == "cpu":
        return device
    if device == "cuda":
        device = "cuda:0"
    index = device.removeprefix("cuda:")
    if not device.startswith("cuda:") or not index.isdigit():
        raise ValueError(f"--device must be cpu or cuda:N (e.g. cuda:0), got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    if int(index) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


def quiet_optuna_warnings() -> None:
    """Heartbeats with ask/tell are what this worker is for; Optuna warns about both."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class RetryStaleTrial:
    """Re-enqueue a failed trial with the same parameters and record why it failed.

    The storage calls it for every trial that its stale-trial check fails (the worker stopped
    heartbeating: killed, out of memory, node lost); ``TrialRunner.hand_back`` calls it too.
    Like Optuna's ``RetryHeartbeatStaleTrialCallback`` (same ``failed_trial`` and
    ``retry_history`` system attributes, at most ``max_retry`` re-runs), but the retry does
    not inherit the failed trial's ``reason``, and a trial failed without one gets
    "its worker W stopped heartbeating; re-run as trial N" for ``GET /v1/jobs/{id}/trials``.
    """

    def __init__(self, max_retry: int = MAX_STALE_RETRIES):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        retry = self.enqueue_retry(study, trial)
        if trial.user_attrs.get(REASON_ATTR) is None:  # hand_back wrote its own reason
            reason = stale_reason(trial, retry)
            record_reason_of_finished_trial(rdb_storage(study), trial_id(trial), reason)

    def enqueue_retry(self, study: optuna.Study, trial: FrozenTrial) -> int | None:
        """The number of the WAITING retry of ``trial``; None once it was re-run max_retry times."""
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > self.max_retry:
            return None
        system_attrs = {"failed_trial": trial.number, **trial.system_attrs,
                        "retry_history": history}
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != REASON_ATTR}
        template = optuna.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=user_attrs, system_attrs=system_attrs,
        )
        return create_trial_from(study, template)


def stale_reason(trial: FrozenTrial, retry: int | None) -> str:
    worker = trial.user_attrs.get("worker_id", "(unknown)")
    stopped = f"its worker {worker} stopped heartbeating"
    if retry is not None:
        return f"{stopped}; re-run as trial {retry}"
    runs = len(trial.system_attrs.get("retry_history", [])) + 1
    return (f"{stopped}; not re-run: its parameters ran {runs} times and every worker died "
            "(out of memory? see the workers' logs)")


def open_optuna_storage(url: str, timing: Timing, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage with heartbeats and stale-trial retries (:class:`RetryStaleTrial`).

    On a fresh database several workers starting at once race to create Optuna's tables;
    the losers get "already exists" and simply try again.
    """
    callback = RetryStaleTrial(MAX_STALE_RETRIES)

    def open_storage() -> optuna.storages.RDBStorage:
        return optuna_storage(url, heartbeat_interval=timing.heartbeat_interval,
                              grace_period=timing.grace_period, callback=callback)

    for attempt in range(1, attempts):
        try:
            return open_storage()
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            log.info("opening Optuna's storage raced another process (%s); retrying", exc)
            time.sleep(0.2 * attempt)
    return open_storage()


@dataclass(frozen=True)
class Identity:
    """What the workers table says about this worker."""

    worker_id: str
    device: str
    hostname: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    workloads: tuple[str, ...] = field(default_factory=lambda: tuple(registry.names()))
    programs: tuple[Program, ...] = ()  # adamtune worker --program/--programs

    def program(self, name: str) -> Program | None:
        return next((p for p in self.programs if p.name == name), None)

    def claimable(self) -> list[str]:
        """The jobs-table ``workload`` values this worker runs: its workloads and programs."""
        return [*self.workloads, *(program_target(p.name) for p in self.programs)]


@dataclass(frozen=True)
class Timing:
    """Liveness settings: heartbeats, how long silence is tolerated, how often to poll, and
    how many abandoned attempts an LR range test gets."""

    heartbeat_interval: int
    grace_period: int
    poll_interval: float
    max_sweep_attempts: int = DEFAULT_MAX_SWEEP_ATTEMPTS

    @property
    def sweep_lease(self) -> float:
        """A sweep lease lasts one grace period and is renewed every heartbeat."""
        return float(self.grace_period)

    @property
    def lock_ttl(self) -> float:
        """The search lock is held for milliseconds; its lease only matters if a holder dies."""
        return float(max(2 * self.grace_period, 20))

    @classmethod
    def from_settings(cls, settings: Settings) -> Timing:
        return cls(settings.heartbeat_interval, settings.grace_period, settings.poll_interval,
                   settings.max_sweep_attempts)


@dataclass
class Runtime:
    """The store connections a worker uses: our tables and Optuna's storage, one database."""

    engine: Engine
    sessions: sessionmaker[Session]
    storage: optuna.storages.RDBStorage
    identity: Identity
    timing: Timing
    population: int | None = None
    program_log_dir: Path = field(default_factory=default_program_log_dir)

    @classmethod
    def open(
        cls, settings: Settings, identity: Identity, population: int | None = None
    ) -> Runtime:
        quiet_optuna_warnings()
        timing = Timing.from_settings(settings)
        engine = make_engine(settings.database_url)
        storage = open_optuna_storage(settings.database_url, timing)
        return cls(engine, make_session_factory(engine), storage, identity, timing, population,
                   settings.program_logs())

    def close(self) -> None:
        self.engine.dispose()
        self.storage.remove_session()
        self.storage.engine.dispose()
