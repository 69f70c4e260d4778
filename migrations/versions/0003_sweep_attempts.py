"""Add jobs.sweep_attempts: how many times the LR range test was claimed.

A sweep whose worker dies is claimed again once its lease expires; after
``ADAMTUNE_MAX_SWEEP_ATTEMPTS`` abandoned attempts the job fails instead of looping forever.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    # A plain ADD COLUMN (with a constant default) on both backends: no table rebuild, so the
    # rows that reference jobs (ON DELETE CASCADE) are never touched on SQLite.
    op.add_column(
        "jobs", sa.Column("sweep_attempts", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("jobs", "sweep_attempts")  # SQLite >= 3.35 drops a column in place
