"""Create the decisions and outcomes tables.

Revision ID: 0001
Revises:
Create Date: 2026-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

KEY = ("dag_id", "run_id", "task_id", "map_index", "try_number")


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    ]


def upgrade() -> None:
    """Create ``carbon_decisions`` and ``carbon_outcomes``."""
    op.create_table(
        "carbon_decisions",
        *_key_columns(),
        sa.Column("phase", sa.String(32)),
        sa.Column("policy", sa.String(64)),
        sa.Column("chosen_cluster", sa.String(250)),
        sa.Column("zone", sa.String(100)),
        sa.Column("home_cluster", sa.String(250)),
        sa.Column("home_zone", sa.String(100)),
        sa.Column("arrival", sa.DateTime),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("planned_start", sa.DateTime),
        sa.Column("latest_start", sa.DateTime),
        sa.Column("deadline", sa.DateTime),
        sa.Column("waited", sa.Boolean),
        sa.Column("fail_open", sa.Boolean),
        sa.Column("expected_intensity", sa.Float),
        sa.Column("baseline_intensity", sa.Float),
        sa.Column("expected_saving_pct", sa.Float),
        sa.Column("power_watts", sa.Float),
        sa.Column("expected_duration_s", sa.Float),
        sa.Column("expected_emissions_g", sa.Float),
        sa.Column("baseline_emissions_g", sa.Float),
        sa.Column("expected_saving_g", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON),
        sa.UniqueConstraint(*KEY, name="uq_carbon_decisions_key"),
    )
    op.create_table(
        "carbon_outcomes",
        *_key_columns(),
        sa.Column("state", sa.String(32)),
        sa.Column("cluster", sa.String(250)),
        sa.Column("zone", sa.String(100)),
        sa.Column("home_cluster", sa.String(250)),
        sa.Column("home_zone", sa.String(100)),
        sa.Column("arrival", sa.DateTime),
        sa.Column("actual_start", sa.DateTime),
        sa.Column("actual_end", sa.DateTime),
        sa.Column("latest_start", sa.DateTime),
        sa.Column("deadline", sa.DateTime),
        sa.Column("duration_s", sa.Float),
        sa.Column("delay_s", sa.Float),
        sa.Column("power_watts", sa.Float),
        sa.Column("energy_kwh", sa.Float),
        sa.Column("realised_intensity", sa.Float),
        sa.Column("baseline_intensity", sa.Float),
        sa.Column("emissions_g", sa.Float),
        sa.Column("baseline_emissions_g", sa.Float),
        sa.Column("saving_g", sa.Float),
        sa.Column("intensity_source", sa.String(32)),
        sa.Column("started_by_latest_start", sa.Boolean),
        sa.Column("deadline_met", sa.Boolean),
        sa.Column("fallback_used", sa.Boolean),
        sa.Column("details", sa.JSON),
        sa.UniqueConstraint(*KEY, name="uq_carbon_outcomes_key"),
    )
    op.create_index("ix_carbon_outcomes_actual_start", "carbon_outcomes", ["actual_start"])
    op.create_index("ix_carbon_decisions_decided_at", "carbon_decisions", ["decided_at"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_carbon_decisions_decided_at", "carbon_decisions")
    op.drop_index("ix_carbon_outcomes_actual_start", "carbon_outcomes")
    op.drop_table("carbon_outcomes")
    op.drop_table("carbon_decisions")
