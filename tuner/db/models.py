"""adamtune's own tables. Created only by the Alembic migrations in ``migrations/``.

Optuna's tables (studies, trials, ...) share the database but are not declared here.
Times are timezone-aware UTC and default to the database clock.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tuner.db.status import ACTIVE_JOB_STATUSES as ACTIVE_JOB_STATUSES  # re-exported
from tuner.db.status import FINISHED_JOB_STATUSES as FINISHED_JOB_STATUSES
from tuner.db.status import JOB_STATUSES as JOB_STATUSES
from tuner.db.status import JobStatus as JobStatus
from tuner.db.types import UTCDateTime, db_now

WORKER_STATUSES: tuple[str, ...] = ("running", "stopping", "stopped", "lost")
DEFAULT_TENANT = "default"

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def all_tables() -> MetaData:
    """The metadata with every table that any ``tuner.db`` module declares on :class:`Base`.

    Some tables belong to the module that owns their queries (e.g. claims' search locks);
    importing every module here lets Alembic compare all of them, not only this file's.
    """
    import tuner.db as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return Base.metadata


def new_job_id() -> str:
    return uuid.uuid4().hex


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}
    # Read server-side defaults (db clock times) back at flush, so rows stay usable after commit.
    __mapper_args__ = {"eager_defaults": True}


class Job(Base):
    """A tuning job: its spec, its status (moved only by compare-and-set) and its progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key"),
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    tenant: Mapped[str] = mapped_column(
        String(64), index=True, default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    name: Mapped[str | None] = mapped_column(String(200))
    workload: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.QUEUED)
    study_name: Mapped[str] = mapped_column(String(64), unique=True)
    trials_total: Mapped[int] = mapped_column(Integer)
    trials_completed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_objective: Mapped[float | None] = mapped_column(Float)
    baseline_objective: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    sweep_worker_id: Mapped[str | None] = mapped_column(String(200))
    sweep_lease_expires_at: Mapped[datetime | None]
    sweep_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=db_now())
    updated_at: Mapped[datetime] = mapped_column(server_default=db_now(), onupdate=db_now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class LRSweep(Base):
    """The LR range test of a job: ``SweepResult.to_dict()`` as one JSON document."""

    __tablename__ = "lr_sweeps"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]]
    worker_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=db_now())


class Recommendation(Base):
    """The recommended configuration: partial while the search runs, then final."""

    __tablename__ = "recommendations"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[dict[str, Any]]
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(server_default=db_now(), onupdate=db_now())


class Worker(Base):
    """A worker process: what it can run and when it last proved it was alive."""

    __tablename__ = "workers"
    __table_args__ = (CheckConstraint(_in("status", WORKER_STATUSES), name="status"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    workloads: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(String(16), default="running")
    current_job_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime] = mapped_column(server_default=db_now())
    last_heartbeat: Mapped[datetime] = mapped_column(server_default=db_now(), index=True)
    # The device's name, memory and utilisation (workers.devices.DeviceProbe), refreshed by
    # every heartbeat; None for a worker that never reported them.
    device_info: Mapped[dict[str, Any] | None]
    # The programs (users' training scripts) this worker was configured to run, by name.
    programs: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")


class ApiKey(Base):
    """An API key of a tenant. Only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(server_default=db_now())
    revoked_at: Mapped[datetime | None]


class JobEvent(Base):
    """Something that happened to a job (claimed, swept, failed, ...), for humans to read."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(server_default=db_now())
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    worker_id: Mapped[str | None] = mapped_column(String(200))
