"""Record the signal kind (average/marginal) and the basis (realised/forecast) of every row.

Reports, objectives, the UI and metrics never add rows of different kinds or bases into one
number ("Green Mirage", arXiv 2402.03550); they group by these columns. Rows recorded before
this revision keep NULL, which reads as ``unknown``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-07-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``signal_kind`` to both tables and ``basis`` to ``carbon_outcomes`` (nullable)."""
    with op.batch_alter_table("carbon_decisions") as batch:
        batch.add_column(sa.Column("signal_kind", sa.String(16), nullable=True))
    with op.batch_alter_table("carbon_outcomes") as batch:
        batch.add_column(sa.Column("signal_kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("basis", sa.String(16), nullable=True))
    op.create_index("ix_carbon_outcomes_signal_kind_basis", "carbon_outcomes", ["signal_kind", "basis"])


def downgrade() -> None:
    """Drop the columns again."""
    op.drop_index("ix_carbon_outcomes_signal_kind_basis", "carbon_outcomes")
    with op.batch_alter_table("carbon_outcomes") as batch:
        batch.drop_column("basis")
        batch.drop_column("signal_kind")
    with op.batch_alter_table("carbon_decisions") as batch:
        batch.drop_column("signal_kind")
