"""A worker's identity and its connections: who it is, what it runs, where the store is."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from tuner.db.engine import make_engine, make_session_factory, optuna_storage
from tuner.settings import DEFAULT_MAX_SWEEP_ATTEMPTS, Settings
from tuner.workloads import registry

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


def open_optuna_storage(url: str, timing: Timing, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's storage with heartbeats and stale-trial retries.

    On a fresh database several workers starting at once race to create Optuna's tables;
    the losers get "already exists" and simply try again.
    """
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES)

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

    @classmethod
    def open(
        cls, settings: Settings, identity: Identity, population: int | None = None
    ) -> Runtime:
        quiet_optuna_warnings()
        timing = Timing.from_settings(settings)
        engine = make_engine(settings.database_url)
        storage = open_optuna_storage(settings.database_url, timing)
        return cls(engine, make_session_factory(engine), storage, identity, timing, population)

    def close(self) -> None:
        self.engine.dispose()
        self.storage.remove_session()
        self.storage.engine.dispose()

    def describe(self) -> dict[str, Any]:
        return {"worker_id": self.identity.worker_id, "device": self.identity.device}
