"""The API's latency for ``benchmarks/overhead.py``: p50/p99 of ``GET /v1/jobs/{id}`` with a
key, from concurrent clients against a real ``adamtune api``, and the API's own histogram."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from adamtune.cli.processes import Children, adamtune_command, free_port, wait_http_ok
from tuner.db import jobs, keys
from tuner.db.engine import make_engine, make_session_factory, transaction, upgrade
from tuner.spec import JobSpec

CLIENTS = 50
POLL_INTERVAL_S = 0.5  # each polling client asks twice a second: 100 requests/s in all
REQUEST_TIME_LIMIT_S = 60.0


async def _clients(
    url: str,
    requests: int,
    clients: int,
    limit_s: float,
    interval: float | None,
    headers: dict[str, str],
) -> tuple[list[float], list[str]]:
    """``clients`` concurrent clients GET ``url`` until ``requests`` are done or time is up.

    ``interval`` None: each client sends its next request as soon as the last one is answered
    (saturation: latency = queueing). Otherwise each polls once per ``interval`` seconds,
    staggered, as clients waiting for their jobs do.
    """
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + limit_s
    remaining = [requests]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, headers=headers) as http:

        async def client(index: int) -> None:
            if interval is not None:
                await asyncio.sleep(interval * index / clients)
            while remaining[0] > 0 and time.perf_counter() < deadline:
                remaining[0] -= 1
                start = time.perf_counter()
                try:
                    response = await http.get(url)
                    response.raise_for_status()
                except httpx.HTTPStatusError as exc:  # counted, never hidden in a percentile
                    errors.append(f"HTTP {exc.response.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                else:
                    latencies.append(time.perf_counter() - start)
                if interval is not None:
                    await asyncio.sleep(max(0.0, start + interval - time.perf_counter()))

        await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


def _summary(latencies: list[float], errors: list[str], wall: float) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"requests": len(latencies) + len(errors), "errors": len(errors),
            "p50_ms": 1000 * cuts[49], "p99_ms": 1000 * cuts[98],
            "requests_per_s": len(latencies) / wall, "load_1m": os.getloadavg()[0],
            "error_kinds": {kind: errors.count(kind) for kind in sorted(set(errors))}}


def _server_buckets(base: str) -> dict[float, float]:
    """The API's own latency histogram for ``GET /v1/jobs/{job_id}`` (200s), cumulative."""
    text = httpx.get(f"{base}/metrics", timeout=30.0).text
    buckets = {}
    for line in text.splitlines():
        if (line.startswith("adamtune_http_request_duration_seconds_bucket")
                and 'route="/v1/jobs/{job_id}"' in line and 'status="200"' in line):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _server_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the histogram bucket holding quantile ``q`` of the requests
    observed between two scrapes: the time inside the app, without the HTTP server's and
    the clients' queueing."""
    counts = {b: n - before.get(b, 0.0) for b, n in sorted(after.items())}
    total = counts.get(float("inf"), 0.0)
    for bound, n in counts.items():
        if total and n >= q * total:
            return 1000 * bound
    return float("nan")


def api_latency(
    url: str, requests: int, api_workers: int, spec: JobSpec
) -> dict[str, dict[str, Any]]:
    """p50/p99 of GET /v1/jobs/{id}, with a key, from 50 clients against a real ``adamtune
    api`` (``api_workers`` uvicorn processes; 1: the plain single process)."""
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_session_factory(engine)) as s:
        _, key = keys.create_key(s, "bench")
        job_id = jobs.create_job(s, spec=spec, tenant="bench").id
    engine.dispose()
    port = free_port()
    env = {"ADAMTUNE_DATABASE_URL": url, "ADAMTUNE_AUTH": "enabled",
           "ADAMTUNE_LOG_LEVEL": "WARNING"}
    headers = {"Authorization": f"Bearer {key}"}
    command = ["api", "--port", str(port)]
    if api_workers > 1:
        command += ["--workers", str(api_workers)]
    results = {}
    with Children(env=env, log_dir=Path(tempfile.mkdtemp(prefix="adamtune-bench-api-"))) as kids:
        api = kids.start("api", adamtune_command(*command))
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/readyz", 60, [api])
        target = f"{base}/v1/jobs/{job_id}"
        warm_up_clients = CLIENTS * max(1, api_workers)  # every worker process serves some
        asyncio.run(_clients(target, warm_up_clients, CLIENTS, REQUEST_TIME_LIMIT_S, None,
                             headers))
        for name, interval in (("polling", POLL_INTERVAL_S), ("saturated", None)):
            before = _server_buckets(base)
            start = time.perf_counter()
            latencies, errors = asyncio.run(
                _clients(target, requests, CLIENTS, REQUEST_TIME_LIMIT_S, interval, headers)
            )
            results[name] = _summary(latencies, errors, time.perf_counter() - start)
            if api_workers == 1:  # with more, each scrape reads one process's histogram
                after = _server_buckets(base)
                for q in (50, 99):
                    results[name][f"server_p{q}_ms"] = _server_quantile(before, after, q / 100)
    return results
