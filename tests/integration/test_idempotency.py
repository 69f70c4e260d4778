"""``Idempotency-Key`` on ``POST /v1/jobs`` against a real uvicorn on loopback, on SQLite and
PostgreSQL: a retry gets the first job back (200), another body under the same key is a
409, and racing requests from many threads still make exactly one job.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner.db import keys
from tuner.settings import Settings

RACERS = 12


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """uvicorn serving ``create_app(settings)`` in a thread, on a loopback socket bound
    here first (no race for the port); yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", limit_concurrency=200)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Api:
    base: str
    acme: dict[str, str]
    other: dict[str, str]

    def post(self, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.base}/v1/jobs", json=body, headers=headers, timeout=60)

    def count(self, headers: dict[str, str]) -> int:
        return int(httpx.get(f"{self.base}/v1/jobs", headers=headers, timeout=30).json()["count"])


@pytest.fixture
def api(migrated_url: str) -> Iterator[Api]:
    _, acme = in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
    _, other = in_store(migrated_url, lambda s: keys.create_key(s, "other"))
    with live_server(Settings(database_url=migrated_url)) as base:
        yield Api(base, {"X-API-Key": acme}, {"X-API-Key": other})


def race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls at once: every thread waits at a barrier, then sends."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_retry_returns_the_first_job(api: Api) -> None:
    headers = {**api.acme, "Idempotency-Key": "retry-1"}
    first = api.post(job_body(), headers)
    again = api.post(job_body(), headers)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    spelled_out = job_body(preset="default", seed=0, population=1)  # the defaults, written out
    assert api.post(spelled_out, headers).json()["id"] == first.json()["id"]
    assert api.count(api.acme) == 1


def test_same_key_other_body_is_409(api: Api) -> None:
    headers = {**api.acme, "Idempotency-Key": "k-409"}
    job_id = api.post(job_body(), headers).json()["id"]
    r = api.post(job_body(seed=7), headers)
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert "'k-409' was already used for job " + job_id in detail
    assert "send the same body" in detail and "use a new key" in detail
    assert api.count(api.acme) == 1


def test_keys_are_per_tenant_and_optional(api: Api) -> None:
    mine = api.post(job_body(), {**api.acme, "Idempotency-Key": "shared"})
    theirs = api.post(job_body(seed=3), {**api.other, "Idempotency-Key": "shared"})
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    without = [api.post(job_body(), api.acme).json()["id"] for _ in range(2)]
    assert len(set(without)) == 2


def test_racing_retries_make_one_job(api: Api) -> None:
    headers = {**api.acme, "Idempotency-Key": "race-same"}
    responses = race([lambda: api.post(job_body(), headers)] * RACERS)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (RACERS - 1) + [202], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert api.count(api.acme) == 1


def test_racing_different_bodies_one_wins_the_rest_409(api: Api) -> None:
    headers = {**api.acme, "Idempotency-Key": "race-mixed"}
    bodies = [job_body(seed=i % 2) for i in range(RACERS)]
    responses = race([lambda body=body: api.post(body, headers) for body in bodies])
    assert {r.status_code for r in responses} <= {200, 202, 409}, [r.text for r in responses]
    winners = [(b, r) for b, r in zip(bodies, responses, strict=True) if r.status_code != 409]
    assert sum(r.status_code == 202 for _, r in winners) == 1
    assert len({r.json()["id"] for _, r in winners}) == 1
    assert len({b["seed"] for b, _ in winners}) == 1  # only the winning body was accepted
    losers = [r for r in responses if r.status_code == 409]
    assert len(losers) == RACERS // 2  # every request with the other body
    assert all("different body" in r.json()["detail"] for r in losers)
    assert api.count(api.acme) == 1
