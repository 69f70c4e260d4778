"""Load test: concurrent clients submit and poll jobs while real workers run them.

Starts ``adamtune api`` (uvicorn, a free loopback port, API keys on) and ``adamtune worker``
processes on a fresh database, then ``--clients`` threads submit ``--jobs`` tiny jobs in
all (each with an ``Idempotency-Key``), poll them for ``--poll-seconds``, and cancel what
is still running. It prints:

- errors: 5xx, refused connections, unexpected statuses, a job whose status went backwards
  (goal 0);
- lost jobs: a submitted id that the API no longer returns, or that its listing misses
  (goal 0);
- p50 / p99 / max latency per route (route templates, as the client saw them).

Loopback only, bounded in count (``--jobs``) and time (``--poll-seconds``, ``--time-limit``).

    .venv/bin/python benchmarks/load.py                      # SQLite, 500 jobs, 20 clients
    .venv/bin/python benchmarks/load.py --postgres           # a fresh PostgreSQL database
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from adamtune.cli.processes import Children, adamtune_command, free_port, wait_http_ok
from tuner.db import keys
from tuner.db.engine import temporary_postgres_database, upgrade

log = logging.getLogger("load")

# The smallest job the spec allows: a 10-step sweep, 2 trials of 10 steps.
TINY_JOB: dict[str, Any] = {
    "workload": "regression_mlp",
    "name": "load test",
    "budget": {"trials": 2, "steps_per_trial": 10, "eval_every": 10},
    "sweep": {"steps": 10},
}
STATUS_RANK = {"queued": 0, "sweeping": 1, "searching": 2}
FINAL = {"completed", "failed", "cancelled"}
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REQUEST_TIMEOUT_S = 60.0
LIST_EVERY = 10  # every tenth poll of a client lists its jobs instead of reading one


@dataclass
class Recorder:
    """Latencies per route and every error, from all client threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sample(self, route: str, seconds: float) -> None:
        with self.lock:
            self.latencies[route].append(seconds)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


@dataclass
class JobTrace:
    """What one client saw of one job: its statuses in order."""

    job_id: str
    statuses: list[str] = field(default_factory=list)

    @property
    def last(self) -> str:
        return self.statuses[-1] if self.statuses else "queued"

    def see(self, status: str) -> str | None:
        """Record ``status``; a message when it contradicts what was seen before."""
        previous = self.last
        self.statuses.append(status)
        if previous in FINAL and status != previous:
            return f"job {self.job_id} left final status {previous} for {status}"
        if status not in FINAL and STATUS_RANK.get(status, -1) < STATUS_RANK.get(previous, 0):
            return f"job {self.job_id} went back from {previous} to {status}"
        return None


class LoadClient:
    """One simulated user: its own connection, its own share of the jobs."""

    def __init__(self, index: int, base: str, key: str, recorder: Recorder):
        self.index = index
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT_S
        )
        self.recorder = recorder
        self.jobs: list[JobTrace] = []

    def call(self, method: str, route: str, path: str, ok: set[int], **kw: Any) -> Any:
        """One timed request; an unexpected outcome is recorded as an error (returns None)."""
        start = time.perf_counter()
        try:
            response = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.recorder.error(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        self.recorder.sample(f"{method} {route}", time.perf_counter() - start)
        if response.status_code not in ok:
            self.recorder.error(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return None
        return response.json()

    def submit(self, count: int) -> None:
        for i in range(count):
            headers = {"Idempotency-Key": f"load-{self.index}-{i}"}
            job = self.call("POST", "/v1/jobs", "/v1/jobs", {202}, json=TINY_JOB, headers=headers)
            if job is not None:
                self.jobs.append(JobTrace(job["id"]))

    def poll(self, deadline: float) -> None:
        """Read the client's active jobs round-robin (and list now and then) until the
        deadline or until all are final."""
        n = 0
        while time.monotonic() < deadline:
            active = [t for t in self.jobs if t.last not in FINAL]
            if not active:
                return
            for trace in active:
                if time.monotonic() >= deadline:
                    return
                n += 1
                if n % LIST_EVERY == 0:
                    self.call("GET", "/v1/jobs", "/v1/jobs", {200}, params={"limit": 50})
                path = f"/v1/jobs/{trace.job_id}"
                job = self.call("GET", "/v1/jobs/{job_id}", path, {200})
                if job is not None and (problem := trace.see(job["status"])):
                    self.recorder.error(problem)

    def cancel_active(self) -> None:
        for trace in self.jobs:
            if trace.last in FINAL:
                continue
            path = f"/v1/jobs/{trace.job_id}/cancel"
            job = self.call("POST", "/v1/jobs/{job_id}/cancel", path, {200, 409})
            if job is not None and "status" in job and (problem := trace.see(job["status"])):
                self.recorder.error(problem)

    def close(self) -> None:
        self.http.close()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def listed_ids(http: httpx.Client) -> tuple[set[str], Counter[str]]:
    """Every job id the API lists for this tenant, and the count per status."""
    ids: set[str] = set()
    statuses: Counter[str] = Counter()
    offset = 0
    while True:
        page = http.get("/v1/jobs", params={"limit": 500, "offset": offset}).json()
        ids.update(j["id"] for j in page["data"])
        statuses.update(j["status"] for j in page["data"])
        offset += len(page["data"])
        if not page["data"] or offset >= page["count"]:
            return ids, statuses


def audit(base: str, key: str, traces: list[JobTrace]) -> tuple[list[str], Counter[str]]:
    """Lost jobs (not readable or not listed) and the final count per status."""
    lost = []
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as http:
        ids, statuses = listed_ids(http)
        unknown = ids - {t.job_id for t in traces}
        if unknown:  # a fresh database: only the submitted jobs may exist
            lost.append(f"{len(unknown)} listed jobs were never submitted, e.g. {min(unknown)}")
        for trace in traces:
            r = http.get(f"/v1/jobs/{trace.job_id}")
            if r.status_code != 200 or trace.job_id not in ids:
                lost.append(f"{trace.job_id}: GET {r.status_code}, listed {trace.job_id in ids}")
    return lost, statuses


@contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    """The database to load: a fresh SQLite file, a fresh PostgreSQL database (dropped
    afterwards), or the URL given."""
    if args.database_url:
        yield args.database_url
        return
    if not args.postgres:
        yield f"sqlite:///{workdir / 'load.db'}"
        return
    with temporary_postgres_database(POSTGRES_SERVER, "adamtune_load") as url:
        yield url


def wait_workers(base: str, key: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as http:
        while time.monotonic() < deadline:
            alive = [w for w in http.get("/v1/workers").json()["data"] if w["alive"]]
            if len(alive) >= count:
                return
            time.sleep(0.5)
    raise RuntimeError(f"{count} workers did not register within {timeout:.0f}s")


def run_clients(args: argparse.Namespace, base: str, key: str, recorder: Recorder) -> dict:
    """Submit, poll, cancel; returns the phase durations and every client's traces."""
    clients = [LoadClient(i, base, key, recorder) for i in range(args.clients)]
    shares = [
        args.jobs // args.clients + (i < args.jobs % args.clients) for i in range(args.clients)
    ]
    timings: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        start = time.monotonic()
        list(pool.map(LoadClient.submit, clients, shares))
        timings["submit_s"] = time.monotonic() - start
        deadline = time.monotonic() + args.poll_seconds
        list(pool.map(lambda c: c.poll(deadline), clients))
        timings["poll_s"] = time.monotonic() - deadline + args.poll_seconds
        start = time.monotonic()
        list(pool.map(LoadClient.cancel_active, clients))
        timings["cancel_s"] = time.monotonic() - start
    for c in clients:
        c.close()
    timings["traces"] = [t for c in clients for t in c.jobs]
    return timings


def report(
    args: argparse.Namespace,
    recorder: Recorder,
    timings: dict,
    lost: list[str],
    statuses: Counter[str],
) -> None:
    traces: list[JobTrace] = timings["traces"]
    requests = sum(len(v) for v in recorder.latencies.values())
    busy = timings["submit_s"] + timings["poll_s"] + timings["cancel_s"]
    print(
        f"\nload: {args.jobs} jobs, {args.clients} clients, {args.workers} workers, "
        f"database {args.backend}"
    )
    print(
        f"submitted {len(traces)} jobs in {timings['submit_s']:.1f}s "
        f"({len(traces) / max(timings['submit_s'], 1e-9):.0f} jobs/s); polled "
        f"{timings['poll_s']:.1f}s; {requests} requests in {busy:.1f}s "
        f"({requests / max(busy, 1e-9):.0f} req/s)"
    )
    furthest = Counter(
        t.statuses[-2] if t.last == "cancelled" and t.statuses[:-1] else t.last for t in traces
    )
    print(f"furthest status seen before the final cancel: {dict(sorted(furthest.items()))}")
    print(f"final statuses: {dict(sorted(statuses.items()))}")
    print(f"\n{'route':<34}{'n':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for route, values in sorted(recorder.latencies.items()):
        print(
            f"{route:<34}{len(values):>7}{percentile(values, 50) * 1e3:>10.1f}"
            f"{percentile(values, 99) * 1e3:>10.1f}{max(values) * 1e3:>10.1f}"
        )
    print(f"\nerrors: {len(recorder.errors)} (goal 0)")
    for message in recorder.errors[:20]:
        print(f"  {message}")
    print(f"lost jobs: {len(lost)} (goal 0)")
    for message in lost[:20]:
        print(f"  {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll-seconds", type=float, default=60.0)
    parser.add_argument("--time-limit", type=float, default=600.0, help="abort after this")
    parser.add_argument(
        "--postgres", action="store_true", help="a fresh database on " + POSTGRES_SERVER
    )
    parser.add_argument("--database-url", default=None, help="an existing, empty database")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    watchdog = threading.Timer(args.time_limit, lambda: os._exit(124))
    watchdog.daemon = True
    watchdog.start()
    with (
        tempfile.TemporaryDirectory(prefix="adamtune-load-") as tmp,
        database(args, Path(tmp)) as url,
    ):
        args.backend = make_url(url).get_backend_name()
        upgrade(url)
        key = keys.create_key_at(url, "load")
        env = {
            "ADAMTUNE_DATABASE_URL": url,
            "ADAMTUNE_AUTH": "enabled",
            "ADAMTUNE_LOG_LEVEL": "INFO" if args.log_dir else "WARNING",
            "ADAMTUNE_POLL_INTERVAL": "0.5",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        with Children(env=env, log_dir=args.log_dir or Path(tmp) / "logs") as children:
            port = free_port()
            api = children.start("api", adamtune_command("api", "--port", str(port)))
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{base}/healthz", 60, [api])
            for i in range(args.workers):
                children.start(
                    f"worker-{i}", adamtune_command("worker", "--worker-id", f"load-{i}")
                )
            wait_workers(base, key, args.workers, 120)
            log.info(
                "api at %s, %d workers alive; %d clients start", base, args.workers, args.clients
            )
            recorder = Recorder()
            timings = run_clients(args, base, key, recorder)
            lost, statuses = audit(base, key, timings["traces"])
            dead = [c.name for c in children.exited()]
            if dead:
                recorder.error(f"processes exited during the run: {', '.join(dead)}")
        report(args, recorder, timings, lost, statuses)
    watchdog.cancel()
    return 0 if not recorder.errors and not lost and len(timings["traces"]) == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
