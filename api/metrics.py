"""Prometheus metrics at ``/metrics``: the store's state, read at scrape time, and API latency.

Jobs, trials and workers are counted from the database when Prometheus scrapes, not kept
in process memory, so every API replica behind a load balancer reports the same numbers
and a restart loses nothing. Each app gets its own ``CollectorRegistry`` (tests build many).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import DateTime, String, cast, column, func, inspect, select, table
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.dashboard import is_dashboard_path
from tuner.db import workers
from tuner.db.models import JOB_STATUSES, Job

log = logging.getLogger(__name__)

TRIAL_DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FINISHED_TRIAL_STATES = ("COMPLETE", "PRUNED", "FAIL")

# Optuna's own trials table (it shares the database); only the columns read here. Its
# state is an enum type on PostgreSQL, hence the casts to text.
optuna_trials = table(
    "trials",
    column("state", String),
    column("datetime_start", DateTime),
    column("datetime_complete", DateTime),
)


def histogram_buckets(values: Iterable[float], bounds: Iterable[float]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ending with ``+Inf``, as Prometheus expects."""
    data = sorted(values)
    buckets = [(repr(float(b)), float(sum(1 for v in data if v <= b))) for b in bounds]
    return buckets + [("+Inf", float(len(data)))]


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


class StoreCollector(Collector):
    """Reads jobs by status, trials by state and their durations, and live workers."""

    def __init__(self, session_factory: Callable[[], Session], grace_seconds: float) -> None:
        self.session_factory = session_factory
        self.grace_seconds = grace_seconds

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("adamtune_store_up", "1 if the database answered this scrape")
        try:
            with self.session_factory() as s:
                metrics = [self._jobs(s), *self._trials(s), *self._workers(s)]
        except Exception:  # a scrape must answer even while the database is down
            log.exception("metrics: cannot read the store")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from metrics

    def _jobs(self, s: Session) -> Metric:
        counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        gauge = GaugeMetricFamily("adamtune_jobs", "Jobs by status", labels=["status"])
        for status in JOB_STATUSES:
            gauge.add_metric([status], float(counts.get(status, 0)))
        return gauge

    def _trials(self, s: Session) -> list[Metric]:
        finished = CounterMetricFamily(
            "adamtune_trials_finished",
            "Finished trials of every study, by final state (complete, pruned, fail)",
            labels=["state"],
        )
        running = GaugeMetricFamily("adamtune_trials_running", "Trials being trained now")
        has_table = inspect(s.connection()).has_table("trials")
        counts: dict[str, int] = {}
        durations: list[float] = []
        if has_table:
            by_state = select(optuna_trials.c.state, func.count()).group_by(optuna_trials.c.state)
            counts = {str(getattr(k, "name", k)): int(n) for k, n in s.execute(by_state).all()}
            durations = self._durations(s)
        for state in FINISHED_TRIAL_STATES:
            finished.add_metric([state.lower()], float(counts.get(state, 0)))
        running.add_metric([], float(counts.get("RUNNING", 0)))
        duration = HistogramMetricFamily(
            "adamtune_trial_duration_seconds",
            "Wall time of completed and pruned trials (start to end, as Optuna recorded it)",
        )
        duration.add_metric(
            [], histogram_buckets(durations, TRIAL_DURATION_BUCKETS), sum_value=sum(durations)
        )
        return [finished, running, duration]

    def _durations(self, s: Session) -> list[float]:
        rows = s.execute(
            select(optuna_trials.c.datetime_start, optuna_trials.c.datetime_complete).where(
                cast(optuna_trials.c.state, String).in_(("COMPLETE", "PRUNED"))
            )
        )
        seconds = (_seconds(start, end) for start, end in rows)
        return [d for d in seconds if d is not None]

    def _workers(self, s: Session) -> list[Metric]:
        states = workers.list_workers(s, grace_seconds=self.grace_seconds)
        live = GaugeMetricFamily(
            "adamtune_workers_live",
            "Workers that sent a heartbeat within the grace period, by device",
            labels=["device"],
        )
        by_device: dict[str, int] = {}
        for w in states:
            if w.alive:
                by_device[w.device] = by_device.get(w.device, 0) + 1
        for device, n in sorted(by_device.items()):
            live.add_metric([device], float(n))
        total = GaugeMetricFamily("adamtune_workers_live_total", "Live workers, all devices")
        total.add_metric([], float(sum(by_device.values())))
        return [live, total, *device_gauges(w for w in states if w.alive)]


DEVICE_GAUGES = (
    (
        "memory_total_bytes",
        "adamtune_worker_device_memory_total_bytes",
        "Memory of each live worker's device",
    ),
    (
        "memory_used_bytes",
        "adamtune_worker_device_memory_used_bytes",
        "Memory in use on each live worker's device (CPU: the worker's resident memory)",
    ),
    (
        "utilisation_percent",
        "adamtune_worker_device_utilisation_percent",
        "Utilisation of each live worker's device at its last heartbeat (GPU busy, or CPU share)",
    ),
)


def device_gauges(states: Iterable[workers.WorkerState]) -> list[Metric]:
    """Per-worker device gauges, and ``adamtune_worker_device_info`` naming each device."""
    labels = ["worker", "device"]
    info = GaugeMetricFamily(
        "adamtune_worker_device_info", "Each live worker's device (1)", labels=[*labels, "name"]
    )
    gauges = {
        key: GaugeMetricFamily(name, what, labels=labels) for key, name, what in DEVICE_GAUGES
    }
    for w in states:
        facts = w.device_info or {}
        info.add_metric([w.id, w.device, str(facts.get("name") or "")], 1.0)
        for key, gauge in gauges.items():
            value = facts.get(key)
            if isinstance(value, int | float):
                gauge.add_metric([w.id, w.device], float(value))
    return [info, *gauges.values()]


class RequestLatencyMiddleware:
    """Observes every HTTP request's duration, labelled by route template (not raw path,
    which would give one series per job id), method and status code."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        path, start = scope["path"], time.perf_counter()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.histogram.labels(
                scope["method"], route_template(path, scope), str(status["code"])
            ).observe(time.perf_counter() - start)


def route_template(path: str, scope: Scope) -> str:
    """``/v1/jobs/{job_id}`` for ``/v1/jobs/3f2a...``: the path with its parameters put back
    as names, read from what the router matched; ``unmatched`` where no route did."""
    if is_dashboard_path(path):
        return "/dashboard (optuna-dashboard)"
    if "endpoint" not in scope and "route" not in scope:
        return "unmatched"
    params: dict[str, Any] = scope.get("path_params") or {}
    segments = path.split("/")
    for name, value in params.items():
        text = str(value)
        if "/" in text or not text:  # a mount's catch-all {path}: everything below it
            if text and path.endswith(text):
                path = path[: -len(text)] + "{" + name + "}"
                segments = path.split("/")
            continue
        segments = ["{" + name + "}" if seg == text else seg for seg in segments]
        path = "/".join(segments)
    return path


def install(app: FastAPI, session_factory: Callable[[], Session], grace_seconds: float) -> None:
    """Add ``GET /metrics`` and the latency middleware to ``app``, with a registry of its own."""
    registry = CollectorRegistry()
    registry.register(StoreCollector(session_factory, grace_seconds))
    latency = Histogram(
        "adamtune_http_request_duration_seconds",
        "API request latency by route template, method and status",
        ["method", "route", "status"],
        buckets=REQUEST_BUCKETS,
        registry=registry,
    )
    app.add_middleware(RequestLatencyMiddleware, histogram=latency)
    app.state.metrics_registry = registry
    app.add_api_route("/metrics", _exposition(registry), methods=["GET"], include_in_schema=False)


def _exposition(registry: CollectorRegistry) -> Callable[[], Response]:
    def metrics() -> Response:
        """The registry in Prometheus' text format (the database is read now)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
