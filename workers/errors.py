"""Which errors a worker survives (the database went away for a while) and how it backs off."""

from __future__ import annotations

import random

import optuna
from sqlalchemy.exc import DBAPIError, OperationalError

from tuner.db.engine import StoreError

# StoreError: our transactions (StoreUnavailable when the connection was lost);
# StorageInternalError: Optuna's RDB storage wraps every SQLAlchemy error in it;
# OperationalError/DBAPIError: a driver error that escaped both (e.g. during pool pre-ping).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    StoreError,
    optuna.exceptions.StorageInternalError,
    OperationalError,
    DBAPIError,
    ConnectionError,
)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


def describe(exc: BaseException) -> str:
    """One line for a log: the error and, for wrapped driver errors, its cause."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause):
        text += f" (cause: {str(cause).splitlines()[0]})"
    return text


class Backoff:
    """Exponential back-off with jitter, reset by the first success."""

    def __init__(self, start: float = BACKOFF_START_S, cap: float = BACKOFF_MAX_S):
        self.start = start
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.cap, self.start * 2 ** (self.failures - 1))
        return delay * random.uniform(0.75, 1.25)

    def reset(self) -> None:
        self.failures = 0
