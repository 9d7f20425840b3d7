"""Keep every forecast the hooks fetch: ``carbon_forecasts``, one row per (source, zone, kind, issue).

Feeds ``airflow-carbon report --forecast-skill`` (forecast error by lead time, per zone) and
``airflow-carbon backtest --forecast archive:ledger``. Rows older than ``[carbon]
forecast_retention`` days (counted from the fetch) are deleted on write.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``carbon_forecasts`` with its unique key and indexes on the issue and fetch times."""
    op.create_table(
        "carbon_forecasts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(250), nullable=False),
        sa.Column("zone", sa.String(100), nullable=False),
        sa.Column("signal_kind", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
        sa.Column("provider", sa.String(64)),
        sa.Column("signal", sa.String(64)),
        sa.Column("start", sa.DateTime, nullable=False),
        sa.Column("end", sa.DateTime, nullable=False),
        sa.Column("intervals", sa.Integer, nullable=False),
        sa.Column("offsets_s", sa.JSON, nullable=False),
        sa.Column("values", sa.JSON, nullable=False),
        sa.UniqueConstraint("source", "zone", "signal_kind", "issued_at", name="uq_carbon_forecasts_key"),
    )
    op.create_index("ix_carbon_forecasts_issued_at", "carbon_forecasts", ["issued_at"])
    op.create_index("ix_carbon_forecasts_fetched_at", "carbon_forecasts", ["fetched_at"])


def downgrade() -> None:
    """Drop the table."""
    op.drop_index("ix_carbon_forecasts_fetched_at", "carbon_forecasts")
    op.drop_index("ix_carbon_forecasts_issued_at", "carbon_forecasts")
    op.drop_table("carbon_forecasts")
