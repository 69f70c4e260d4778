"""Create adamtune's tables: jobs, lr_sweeps, recommendations, workers, api_keys, job_events."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tuner.db.types import db_now

revision: str = "0001"
down_revision: str | None = None

JOB_STATUSES = "status IN ('queued', 'sweeping', 'searching', 'completed', 'failed', 'cancelled')"
WORKER_STATUSES = "status IN ('running', 'stopping', 'stopped', 'lost')"


def _time(name: str, *, nullable: bool = False, now: bool = True) -> sa.Column:
    default = db_now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def _job_fk(name: str = "job_id", *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(32), nullable=nullable)


def _create_per_job_table(name: str, *columns: sa.Column) -> None:
    """A table of at most one row per job, keyed by ``job_id`` and deleted with its job."""
    op.create_table(
        name,
        _job_fk(),
        *columns,
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f(f"fk_{name}_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("workload", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("study_name", sa.String(64), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("trials_completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("best_objective", sa.Float(), nullable=True),
        sa.Column("baseline_objective", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("sweep_worker_id", sa.String(200), nullable=True),
        _time("sweep_lease_expires_at", nullable=True, now=False),
        _time("created_at"),
        _time("updated_at"),
        _time("started_at", nullable=True, now=False),
        _time("finished_at", nullable=True, now=False),
        sa.CheckConstraint(JOB_STATUSES, name=op.f("ck_jobs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("study_name", name=op.f("uq_jobs_study_name")),
        sa.UniqueConstraint(
            "tenant", "idempotency_key", name=op.f("uq_jobs_tenant_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])
    op.create_index(op.f("ix_jobs_tenant"), "jobs", ["tenant"])
    op.create_index("ix_jobs_tenant_created_at", "jobs", ["tenant", "created_at"])

    _create_per_job_table(
        "lr_sweeps",
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        _time("created_at"),
    )
    _create_per_job_table(
        "recommendations",
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("final", sa.Boolean(), server_default=sa.false(), nullable=False),
        _time("updated_at"),
    )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("workloads", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _job_fk("current_job_id", nullable=True),
        _time("started_at"),
        _time("last_heartbeat"),
        sa.CheckConstraint(WORKER_STATUSES, name=op.f("ck_workers_status")),
        sa.ForeignKeyConstraint(
            ["current_job_id"],
            ["jobs.id"],
            name=op.f("fk_workers_current_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index(op.f("ix_workers_last_heartbeat"), "workers", ["last_heartbeat"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        _time("created_at"),
        _time("revoked_at", nullable=True, now=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"])

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _job_fk(),
        _time("at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index(op.f("ix_job_events_job_id"), "job_events", ["job_id"])


def downgrade() -> None:
    op.drop_table("job_events")
    op.drop_table("api_keys")
    op.drop_table("workers")
    op.drop_table("recommendations")
    op.drop_table("lr_sweeps")
    op.drop_table("jobs")
