"""SQLAlchemy 2 models of the ledger: one decision and one outcome per task try.

Both tables are keyed by (dag_id, run_id, task_id, map_index, try_number). The queried
fields are columns; everything else the decision holds is kept in the ``details`` JSON
column. Table names carry a ``carbon_`` prefix (and the migration history its own version
table) so the ledger can share a database with Airflow's metadata.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "FORECAST_KEY",
    "KEY_COLUMNS",
    "Base",
    "DecisionRecord",
    "ForecastRecord",
    "OutcomeRecord",
    "ReservationRecord",
    "UTCDateTime",
]

KEY_COLUMNS = ("dag_id", "run_id", "task_id", "map_index", "try_number")
FORECAST_KEY = ("source", "zone", "signal_kind", "issued_at")
UTC = timezone.utc


class UTCDateTime(TypeDecorator[datetime]):
    """Store an aware datetime as naive UTC; read it back aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert to naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores UTC instants only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Mark as UTC."""
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of the ledger's tables."""


class _Keyed:
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    try_number: Mapped[int] = mapped_column(Integer, default=1)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DecisionRecord(_Keyed, Base):
    """What the operator decided (the XCom ``carbon_decision``) for one task try."""

    __tablename__ = "carbon_decisions"
    __table_args__ = (
        UniqueConstraint(*KEY_COLUMNS, name="uq_carbon_decisions_key"),
        Index("ix_carbon_decisions_decided_at", "decided_at"),
    )

    phase: Mapped[str | None] = mapped_column(String(32))
    policy: Mapped[str | None] = mapped_column(String(64))
    chosen_cluster: Mapped[str | None] = mapped_column(String(250))
    zone: Mapped[str | None] = mapped_column(String(100))
    home_cluster: Mapped[str | None] = mapped_column(String(250))
    home_zone: Mapped[str | None] = mapped_column(String(100))
    arrival: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    planned_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latest_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    waited: Mapped[bool | None] = mapped_column(Boolean)
    fail_open: Mapped[bool | None] = mapped_column(Boolean)
    expected_intensity: Mapped[float | None] = mapped_column(Float)
    baseline_intensity: Mapped[float | None] = mapped_column(Float)
    expected_saving_pct: Mapped[float | None] = mapped_column(Float)
    power_watts: Mapped[float | None] = mapped_column(Float)
    expected_duration_s: Mapped[float | None] = mapped_column(Float)
    expected_emissions_g: Mapped[float | None] = mapped_column(Float)
    baseline_emissions_g: Mapped[float | None] = mapped_column(Float)
    expected_saving_g: Mapped[float | None] = mapped_column(Float)
    signal_kind: Mapped[str | None] = mapped_column(String(16))
    """``average`` or ``marginal`` (the planner's ``signal``); NULL when the decision had none."""
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutcomeRecord(_Keyed, Base):
    """How one task try ran: where, when, what it emitted and what it saved."""

    __tablename__ = "carbon_outcomes"
    __table_args__ = (
        UniqueConstraint(*KEY_COLUMNS, name="uq_carbon_outcomes_key"),
        Index("ix_carbon_outcomes_actual_start", "actual_start"),
        Index("ix_carbon_outcomes_signal_kind_basis", "signal_kind", "basis"),
    )

    state: Mapped[str | None] = mapped_column(String(32))
    cluster: Mapped[str | None] = mapped_column(String(250))
    zone: Mapped[str | None] = mapped_column(String(100))
    home_cluster: Mapped[str | None] = mapped_column(String(250))
    home_zone: Mapped[str | None] = mapped_column(String(100))
    arrival: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actual_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actual_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latest_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_s: Mapped[float | None] = mapped_column(Float)
    delay_s: Mapped[float | None] = mapped_column(Float)
    power_watts: Mapped[float | None] = mapped_column(Float)
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    realised_intensity: Mapped[float | None] = mapped_column(Float)
    baseline_intensity: Mapped[float | None] = mapped_column(Float)
    emissions_g: Mapped[float | None] = mapped_column(Float)
    baseline_emissions_g: Mapped[float | None] = mapped_column(Float)
    saving_g: Mapped[float | None] = mapped_column(Float)
    intensity_source: Mapped[str | None] = mapped_column(String(32))
    signal_kind: Mapped[str | None] = mapped_column(String(16))
    """``average``, ``marginal`` or ``unknown``: which emission rate the figures measure."""
    basis: Mapped[str | None] = mapped_column(String(16))
    """``realised`` (the source's history), ``forecast`` or ``none`` (no figures); NULL before 0002."""
    started_by_latest_start: Mapped[bool | None] = mapped_column(Boolean)
    deadline_met: Mapped[bool | None] = mapped_column(Boolean)
    fallback_used: Mapped[bool | None] = mapped_column(Boolean)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ForecastRecord(Base):
    """One forecast as a hook fetched it: who issued it for which zone when, and its values.

    One row per forecast, its intervals as two JSON arrays (``offsets_s``: the ``n + 1``
    interval boundaries in seconds after ``start``; ``values``: the ``n`` values in g/kWh,
    ``null`` for a gap). A row per interval would repeat source, zone, kind and issue time
    about 100 times per forecast and cost 100 inserts per fetch; the skill report reads whole
    forecasts anyway (it pairs each forecast's intervals with later forecasts' lead-0 values),
    so it selects rows by (source, zone, kind, issue time) through the unique index and never
    filters inside the arrays. Keyed by (source, zone, signal_kind, issued_at): the same
    forecast fetched many times is stored once.
    """

    __tablename__ = "carbon_forecasts"
    __table_args__ = (
        UniqueConstraint(*FORECAST_KEY, name="uq_carbon_forecasts_key"),
        Index("ix_carbon_forecasts_issued_at", "issued_at"),
        Index("ix_carbon_forecasts_fetched_at", "fetched_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(250))
    """The carbon connection id the forecast came through (never its URL or a secret)."""
    zone: Mapped[str] = mapped_column(String(100))
    signal_kind: Mapped[str] = mapped_column(String(16))
    """``average`` or ``marginal``: skill is never computed across the two."""
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """When the source issued it (the fetch time when the source does not say)."""
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    """When this process fetched it: retention counts from here."""
    provider: Mapped[str | None] = mapped_column(String(64))
    signal: Mapped[str | None] = mapped_column(String(64))
    """The connection's signal variant (``lifecycle``, ``co2_moer``...)."""
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    intervals: Mapped[int] = mapped_column(Integer)
    offsets_s: Mapped[list[int]] = mapped_column(JSON)
    values: Mapped[list[float | None]] = mapped_column(JSON)


class ReservationRecord(Base):
    """Load one holder has reserved on one candidate cluster: ``resources`` over ``[start, end)``.

    One row per holder (unique ``holder``): a task try, whose key is also kept in the key
    columns, or a free-form name (the backtest, a test). Moving a reservation updates the row.
    A row whose ``expires_at`` has passed counts for nobody and is deleted by the next write.
    """

    __tablename__ = "carbon_reservations"
    __table_args__ = (
        UniqueConstraint("holder", name="uq_carbon_reservations_holder"),
        # "active reservations of these clusters overlapping [a, b) at now": cluster =, end > a, start < b
        Index("ix_carbon_reservations_cluster_end", "cluster", "end", "start"),
        Index("ix_carbon_reservations_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    holder: Mapped[str] = mapped_column(String(1000))
    """``task:<dag_id>/<run_id>/<task_id>/<map_index>/<try_number>`` (parts URL-quoted) or a free-form name."""
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    task_id: Mapped[str | None] = mapped_column(String(250))
    map_index: Mapped[int | None] = mapped_column(Integer)
    try_number: Mapped[int | None] = mapped_column(Integer)
    cluster: Mapped[str] = mapped_column(String(250))
    """The candidate key (``k8s_gb``, ``k8s@ctx[pool=a]``)."""
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime] = mapped_column(UTCDateTime())
    resources: Mapped[dict[str, float]] = mapped_column(JSON)
    """Resource name to amount in base units (:data:`~airflow_carbon_provider.core.resources.Resources`)."""
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
