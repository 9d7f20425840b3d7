"""Checked access to decoded JSON, and the one rule for nulls and gaps.

Every failure becomes a :class:`~airflow_carbon_provider.exceptions.CarbonParseError` that
names the JSON path of the field at fault; no ``KeyError``/``TypeError``/``ValueError``
escapes a parser.

Nulls and gaps. The APIs return nulls (the UK ``actual`` of a half-hour not yet measured,
an Electricity Maps hour without data) and gaps (an hour missing from a history). The rule,
the same for every source: **every known interval is kept**, and what lies between two of
them unknown (a null, or no point at all) becomes a gap of the series
(:attr:`~airflow_carbon_provider.core.signals.IntensitySeries.gaps`), which nothing reads a
value from and the planner never plans a run over. Nulls before the first known point and
after the last are left out: a series starts and ends with known data. Gaps are logged at
warning level. A response with no points at all, or only nulls, is a ``CarbonParseError``
naming the field. Two points with the same start keep the last one when their values
agree and are a ``CarbonParseError`` when they do not.

Bounds. Every number must be finite, and an intensity, once converted to gCO2eq/kWh, at
most :data:`~airflow_carbon_provider.core.signals.MAX_INTENSITY`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.signals import (
    MAX_INTENSITY,
    IntensitySeries,
    Interval,
    SignalError,
    SignalKind,
    Unit,
    ensure_utc,
    to_g_per_kwh,
)
from airflow_carbon_provider.exceptions import CarbonParseError

log = logging.getLogger(__name__)

__all__ = ["Point", "Reader", "format_iso", "join_series", "series_from_points", "shift_series", "split_range"]


@dataclass(frozen=True)
class Point:
    """One parsed data point; ``value`` is None when the API sent null."""

    start: datetime
    value: float | None
    end: datetime | None = None
    estimated: bool = False
    field: str = ""


class Reader:
    """Typed, path-aware getters over decoded JSON for one provider and zone."""

    def __init__(self, provider: str, zone: str | None = None) -> None:
        self.provider = provider
        self.zone = zone

    def error(self, field: str, message: str) -> CarbonParseError:
        """Return the parse error for ``field``."""
        return CarbonParseError(message, field=field, provider=self.provider, zone=self.zone)

    def mapping(self, value: Any, field: str) -> Mapping[str, Any]:
        """Return ``value`` if it is a JSON object."""
        if not isinstance(value, Mapping):
            raise self.error(field, f"expected an object, got {_kind(value)}")
        return value

    def sequence(self, value: Any, field: str, *, non_empty: bool = True) -> Sequence[Any]:
        """Return ``value`` if it is a JSON array (non-empty unless told otherwise)."""
        if not isinstance(value, list):
            raise self.error(field, f"expected an array, got {_kind(value)}")
        if non_empty and not value:
            raise self.error(field, "is empty: the API returned no data points")
        return value

    def get(self, obj: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> Any:
        """Return ``obj[key]``; raise if it is missing (or null) and ``required``."""
        if key not in obj:
            if required:
                raise self.error(field, "is missing")
            return None
        value = obj[key]
        if value is None and required:
            raise self.error(field, "is null")
        return value

    def string(self, value: Any, field: str) -> str:
        """Return ``value`` if it is a non-empty string."""
        if not isinstance(value, str) or not value:
            raise self.error(field, f"expected a non-empty string, got {_kind(value)}")
        return value

    def number(self, value: Any, field: str, *, nullable: bool = False) -> float | None:
        """Return ``value`` as a finite float (or None when null and ``nullable``)."""
        if value is None:
            if nullable:
                return None
            raise self.error(field, "is null")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(field, f"expected a number, got {_kind(value)}")
        try:
            result = float(value)
        except OverflowError:  # an integer of hundreds of digits: not representable
            raise self.error(field, "is a number too large to represent") from None
        if math.isnan(result) or math.isinf(result):
            raise self.error(field, f"is {result}, not a finite number")
        return result

    def boolean(self, value: Any, field: str, *, default: bool = False) -> bool:
        """Return ``value`` if it is a boolean; ``default`` when it is null or absent."""
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(field, f"expected true or false, got {_kind(value)}")
        return value

    def timestamp(self, value: Any, field: str) -> datetime:
        """Parse an ISO-8601 timestamp with a time zone (``Z``, ``+00:00``) to UTC."""
        text = self.string(value, field)
        normalized = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        try:
            moment = datetime.fromisoformat(normalized)
        except ValueError:
            raise self.error(field, f"{text!r} is not an ISO-8601 timestamp") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise self.error(field, f"{text!r} has no time zone")
        try:
            return moment.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise self.error(field, f"{text!r} is out of range") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        text = repr(value) if isinstance(value, float) or abs(value) < 10**30 else "with more than 30 digits"
        return f"the number {text}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def series_from_points(
    reader: Reader,
    points: Sequence[Point],
    *,
    field: str,
    zone: str,
    kind: SignalKind,
    resolution: timedelta,
    source: str,
    unit: Unit = Unit.G_PER_KWH,
    issued_at: datetime | None = None,
    is_forecast: bool = False,
    value_field: str | None = None,
) -> IntensitySeries:
    """Build a series from parsed points under the module's rule for nulls and gaps.

    :param field: the JSON path of the array the points came from, for error messages.
    :param value_field: the JSON path of the values (``forecast[*].carbonIntensity``),
        named when every value is null; defaults to ``field``.
    :param resolution: the interval length when a point carries no explicit end.
    """
    if not points:
        raise reader.error(field, "is empty: the API returned no data points")
    by_start: dict[datetime, Point] = {}
    for point in points:
        earlier = by_start.get(point.start)
        if earlier is not None and earlier.value != point.value and None not in (earlier.value, point.value):
            raise reader.error(
                point.field, f"two data points start at {point.start.isoformat()} with different values"
            )
        if earlier is None or point.value is not None:
            by_start[point.start] = point
    ordered = sorted(by_start.values(), key=lambda p: p.start)
    present = [p for p in ordered if p.value is not None]
    if not present:
        raise reader.error(value_field or field, "every value is null: no usable data")

    intervals: list[tuple[Interval, str]] = []
    for index, point in enumerate(ordered):
        if point.value is None:
            continue
        following = ordered[index + 1].start if index + 1 < len(ordered) else None
        try:
            end = point.end or point.start + resolution
        except OverflowError:
            raise reader.error(point.field, f"{point.start.isoformat()} is out of range") from None
        if point.end is None and following is not None and following < end:
            end = following  # resolution longer than the spacing: the next point wins
        if following is not None and end > following:
            raise reader.error(point.field, f"interval {point.start.isoformat()} overlaps the next one")
        try:
            value = to_g_per_kwh(point.value, unit)
            intervals.append((Interval(point.start, end, value, point.estimated), point.field))
        except SignalError as exc:
            raise reader.error(point.field, str(exc)) from None
        if value > MAX_INTENSITY:
            raise reader.error(
                point.field,
                f"intensity {point.value:g} {Unit(unit).value} ({value:g} gCO2eq/kWh) is above the plausible "
                f"maximum of {MAX_INTENSITY:g} gCO2eq/kWh: the answer is broken",
            )

    try:
        series = IntensitySeries(
            zone,
            kind,
            tuple(interval for interval, _ in intervals),
            source=source,
            issued_at=issued_at,
            is_forecast=is_forecast,
            allow_gaps=True,
        )
    except SignalError as exc:
        raise reader.error(field, str(exc)) from None
    if series.has_gaps:
        log.warning(
            "%s zone %s: %s has %d unknown stretch(es) (null or missing points), kept as gaps: %s",
            source,
            zone,
            field,
            len(series.gaps),
            ", ".join(f"{format_iso(lo)} to {format_iso(hi)}" for lo, hi in series.gaps[:5]),
        )
    return series


def shift_series(series: IntensitySeries, delta: timedelta) -> IntensitySeries:
    """Return ``series`` with every instant moved by ``delta`` (values and gaps unchanged)."""
    seconds = delta.total_seconds()
    return IntensitySeries.from_arrays(
        series.zone,
        series.kind,
        [b + seconds for b in series.bounds],
        series.values,
        source=series.source,
        issued_at=series.issued_at + delta if series.issued_at is not None else None,
        is_forecast=series.is_forecast,
        estimated=series.estimated_flags,
        allow_gaps=series.has_gaps,
    )


def format_iso(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` in UTC."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_range(start: datetime, end: datetime, most: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into consecutive ranges of at most ``most`` (one request each)."""
    start, end = ensure_utc(start, "start"), ensure_utc(end, "end")
    while start < end:
        stop = min(start + most, end)
        yield start, stop
        start = stop


def join_series(
    pieces: Sequence[IntensitySeries], *, provider: str, resolution: timedelta, value_field: str | None = None
) -> IntensitySeries:
    """Join the series of consecutive range requests into one, under the null/gap rule.

    The joined series has the zone, kind, issue time and forecast flag of the first piece;
    where two pieces overlap (an end-inclusive API), the rule for duplicate starts applies.
    """
    first = pieces[0]
    points = [
        Point(iv.start, iv.value, end=iv.end, estimated=iv.estimated, field=f"data (request {n})")
        for n, piece in enumerate(pieces)
        for iv in piece.intervals
    ]
    return series_from_points(
        Reader(provider, first.zone),
        points,
        field="data",
        value_field=value_field,
        zone=first.zone,
        kind=first.kind,
        resolution=resolution,
        source=provider,
        issued_at=first.issued_at,
        is_forecast=first.is_forecast,
    )
