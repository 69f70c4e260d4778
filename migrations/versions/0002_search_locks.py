"""Add search_locks: one short lease per searching job that serialises handing out trials.

Workers take it (compare-and-set on the database clock) around the few statements that
count a study's trials and ask a new one, so a study never gets more than its budget.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    op.create_table(
        "search_locks",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_search_locks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_search_locks")),
    )


def downgrade() -> None:
    op.drop_table("search_locks")
