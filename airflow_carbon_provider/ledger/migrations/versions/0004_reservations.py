"""Reservations: ``carbon_reservations``, one row per holder of planned load on a candidate cluster.

Planners on several schedulers, triggerers and workers reserve capacity here before they
commit to a start, so that they do not all pick the one green cluster at the same minute.
Rows past their ``expires_at`` count for nobody and are deleted by later writes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``carbon_reservations``, unique by holder, indexed for overlap queries and expiry."""
    op.create_table(
        "carbon_reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("holder", sa.String(1000), nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("map_index", sa.Integer),
        sa.Column("try_number", sa.Integer),
        sa.Column("cluster", sa.String(250), nullable=False),
        sa.Column("start", sa.DateTime, nullable=False),
        sa.Column("end", sa.DateTime, nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("holder", name="uq_carbon_reservations_holder"),
    )
    op.create_index("ix_carbon_reservations_cluster_end", "carbon_reservations", ["cluster", "end", "start"])
    op.create_index("ix_carbon_reservations_expires_at", "carbon_reservations", ["expires_at"])


def downgrade() -> None:
    """Drop the table (reservations are short-lived coordination state: nothing to keep)."""
    op.drop_index("ix_carbon_reservations_expires_at", "carbon_reservations")
    op.drop_index("ix_carbon_reservations_cluster_end", "carbon_reservations")
    op.drop_table("carbon_reservations")
