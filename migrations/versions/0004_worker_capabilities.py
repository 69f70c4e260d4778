"""Add workers.device_info and workers.programs: what each worker's device is and runs.

``device_info`` (JSON, nullable) holds the device's name, memory and utilisation, refreshed
by every heartbeat. ``programs`` (JSON list, default ``[]``) names the users' training
scripts the worker was configured to run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"


def upgrade() -> None:
    # Plain ADD COLUMNs (nullable, or with a constant default) on both backends: no table
    # rebuild on SQLite, so existing worker rows keep their ids and heartbeats.
    op.add_column("workers", sa.Column("device_info", sa.JSON(), nullable=True))
    op.add_column(
        "workers", sa.Column("programs", sa.JSON(), server_default="[]", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("workers", "programs")  # SQLite >= 3.35 drops a column in place
    op.drop_column("workers", "device_info")
