"""Helpers shared by the API tests: a small valid job body and direct store access."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from tuner.db.engine import make_engine, make_session_factory, transaction


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "digits quick",
        "workload": "digits_mlp",
        "budget": {"trials": 4, "steps_per_trial": 20, "eval_every": 10},
    }
    body.update(overrides)
    return body


@contextmanager
def store_session(url: str) -> Iterator[Session]:
    """One committed transaction on the same database as the app under test."""
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def in_store(url: str, func: Callable[[Session], Any]) -> Any:
    with store_session(url) as session:
        return func(session)
