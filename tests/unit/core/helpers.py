"""Builders for small hand-made series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.core.signals import IntensitySeries

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def hourly(zone: str, values: Sequence[float], *, start: datetime = T0, kind: str = "average",
           step: timedelta = timedelta(hours=1)) -> IntensitySeries:
    """Return a series of ``values`` on a regular grid from ``start``."""
    return IntensitySeries.from_points(zone, kind, [(start + i * step, v) for i, v in enumerate(values)],
                                       resolution=step)


def at(hours: float) -> datetime:
    """Return ``T0`` plus ``hours``."""
    return T0 + timedelta(hours=hours)
