"""The workers table: who is running, on what device, and when each last proved it was alive.

Liveness uses the database clock (``db_now``), never a worker's own clock, so skewed
clocks across GPU nodes cannot make a live worker look dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from tuner.db.models import WORKER_STATUSES, Worker
from tuner.db.types import db_now
from tuner.db.upsert import insert_for


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()


@dataclass(frozen=True)
class WorkerState:
    """A worker row and whether its last heartbeat is within the grace period."""

    id: str
    hostname: str
    pid: int
    device: str
    workloads: list[str]
    status: str
    current_job_id: str | None
    started_at: datetime
    last_heartbeat: datetime
    alive: bool
    device_info: dict[str, Any] | None = None
    programs: list[dict[str, Any]] = field(default_factory=list)


def register_worker(
    s: Session,
    *,
    worker_id: str,
    hostname: str,
    pid: int,
    device: str,
    workloads: list[str],
    device_info: dict[str, Any] | None = None,
    programs: list[dict[str, Any]] | None = None,
) -> None:
    """Insert the worker, or revive its row when a worker restarts under the same id.

    ``device_info``: the device's name, memory and utilisation (``workers.devices``);
    ``programs``: what it advertises of its programs (``Program.describe()``: name and time
    limit, never the command)."""
    now = db_now()
    values = {
        "hostname": hostname,
        "pid": pid,
        "device": device,
        "workloads": list(workloads),
        "device_info": device_info,
        "programs": list(programs or []),
        "status": "running",
        "current_job_id": None,
        "started_at": now,
        "last_heartbeat": now,
    }
    stmt = insert_for(s, Worker).values(id=worker_id, **values)
    s.execute(stmt.on_conflict_do_update(index_elements=[Worker.id], set_=values))


def heartbeat(
    s: Session,
    worker_id: str,
    current_job_id: str | None = UNCHANGED,
    device_info: dict[str, Any] | None = UNCHANGED,
) -> bool:
    """Stamp the worker alive now (database clock); False if it is not registered.

    ``current_job_id`` is left as is unless given (``None`` means: idle), and so is
    ``device_info`` (the device's memory and utilisation now). A worker that was marked
    ``lost`` and beats again is ``running`` again.
    """
    values: dict[str, Any] = {
        "last_heartbeat": db_now(),
        "status": case((Worker.status == "lost", "running"), else_=Worker.status),
    }
    if current_job_id is not UNCHANGED:
        values["current_job_id"] = current_job_id
    if device_info is not UNCHANGED:
        values["device_info"] = device_info
    return _update_worker(s, worker_id, values)


def _update_worker(s: Session, worker_id: str, values: dict[str, Any]) -> bool:
    """Write ``values`` to the worker's row; False if it is not registered."""
    stmt = (
        update(Worker)
        .where(Worker.id == worker_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return s.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


def set_status(s: Session, worker_id: str, status: str) -> bool:
    """Set ``running``/``stopping``/``stopped``/``lost``; stopped or lost frees its job."""
    if status not in WORKER_STATUSES:
        raise ValueError(
            f"unknown worker status {status!r}; statuses: {', '.join(WORKER_STATUSES)}"
        )
    values: dict[str, Any] = {"status": status}
    if status in ("stopped", "lost"):
        values["current_job_id"] = None
    return _update_worker(s, worker_id, values)


def mark_stopped(s: Session, worker_id: str) -> bool:
    return set_status(s, worker_id, "stopped")


def mark_lost_workers(s: Session, grace_seconds: float) -> list[str]:
    """Mark ``running``/``stopping`` workers silent for longer than the grace period as lost."""
    silent = select(Worker.id).where(
        Worker.status.in_(("running", "stopping")),
        Worker.last_heartbeat < db_now(-grace_seconds),
    )
    ids = list(s.scalars(silent))
    if ids:
        s.execute(
            update(Worker)
            .where(Worker.id.in_(ids), Worker.last_heartbeat < db_now(-grace_seconds))
            .values(status="lost", current_job_id=None)
            .execution_options(synchronize_session=False)
        )
    return ids


def list_workers(s: Session, *, grace_seconds: float) -> list[WorkerState]:
    """Every worker, most recently seen first, with ``alive`` judged by the database clock."""
    alive = (Worker.status.in_(("running", "stopping"))) & (
        Worker.last_heartbeat >= db_now(-grace_seconds)
    )
    rows = s.execute(select(Worker, alive.label("alive")).order_by(Worker.last_heartbeat.desc()))
    return [_state(worker, bool(is_alive)) for worker, is_alive in rows]


def _state(w: Worker, alive: bool) -> WorkerState:
    return WorkerState(
        id=w.id,
        hostname=w.hostname,
        pid=w.pid,
        device=w.device,
        workloads=list(w.workloads or []),
        status=w.status,
        current_job_id=w.current_job_id,
        started_at=w.started_at,
        last_heartbeat=w.last_heartbeat,
        alive=alive,
        device_info=w.device_info,
        programs=list(w.programs or []),
    )


def live_programs(s: Session, *, grace_seconds: float) -> list[str]:
    """The program names that live workers offer, sorted (what a program job may name)."""
    alive = Worker.status.in_(("running", "stopping")) & (
        Worker.last_heartbeat >= db_now(-grace_seconds)
    )
    names = {
        str(p["name"])
        for programs in s.scalars(select(Worker.programs).where(alive))
        for p in programs or []
        if isinstance(p, dict) and "name" in p
    }
    return sorted(names)


def get_worker(s: Session, worker_id: str) -> Worker | None:
    return s.get(Worker, worker_id, populate_existing=True)
