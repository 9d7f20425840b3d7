"""UK Carbon Intensity API (NESO): request builders, response parsers, and a flow per endpoint.

No account or key. Half-hour periods, gCO2/kWh, **average** operational (direct) intensity
of Great Britain. Zones, as this provider names them:

* ``GB``: the national series (``/intensity...``), which carries a ``forecast`` and, for
  past periods, an ``actual``;
* ``GB-<n>`` with ``n`` a region id from 1 to 17 (``GB-13`` is London): a regional series;
* ``GB-<outward postcode>`` (``GB-RG10``): the region that covers the postcode.

Regional endpoints publish forecasts only, so every regional series is marked
``is_forecast=True``, for the past too. The national ``forecast`` and ``actual`` fields are
never mixed: :func:`parse_national` takes the one to read, and a null ``actual`` is a null
(a gap, or left out at an end, under the rule in
:mod:`airflow_carbon_provider.sources._parsing`), never replaced by the forecast.
``/intensity/{from}/{to}`` accepts at most 14 days, so longer ranges are split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind, ensure_utc
from airflow_carbon_provider.exceptions import CarbonParseError, CarbonRequestError
from airflow_carbon_provider.sources._flow import Flow, get_json
from airflow_carbon_provider.sources._http import ApiRequest, path_segment
from airflow_carbon_provider.sources._parsing import (
    Point,
    Reader,
    join_series,
    series_from_points,
    split_range,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "PROVIDER",
    "UKZone",
    "current_flow",
    "current_request",
    "forecast_flow",
    "forecast_request",
    "history_chunks",
    "history_flow",
    "history_request",
    "parse_answer",
    "parse_current",
    "parse_national",
    "parse_regional",
    "parse_zone",
]

PROVIDER = "ukcarbonintensity"
DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
RANGE_MAX = timedelta(days=14)
PERIOD = timedelta(minutes=30)
REGION_IDS = range(1, 19)
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")
NATIONAL_FIELDS = ("actual", "forecast")


@dataclass(frozen=True)
class UKZone:
    """A parsed zone: national, a region id, or an outward postcode."""

    zone: str
    region_id: int | None = None
    postcode: str | None = None

    @property
    def national(self) -> bool:
        """Return whether this is the national (GB) series."""
        return self.region_id is None and self.postcode is None


def parse_zone(zone: str) -> UKZone:
    """Parse ``GB``, ``GB-<region id>`` or ``GB-<outward postcode>``."""
    text = zone.strip().upper()
    if text == "GB":
        return UKZone(zone)
    if text.startswith("GB-"):
        rest = text[3:]
        if rest.isdigit() and int(rest) in REGION_IDS:
            return UKZone(zone, region_id=int(rest))
        if _POSTCODE.match(rest):
            return UKZone(zone, postcode=rest)
    raise CarbonRequestError(
        f"zone {zone!r} is not 'GB', 'GB-<region id 1..17>' or 'GB-<outward postcode>' (e.g. 'GB-RG10')",
        provider=PROVIDER,
        zone=zone,
    )


def _minute(moment: datetime) -> str:
    return ensure_utc(moment).strftime("%Y-%m-%dT%H:%MZ")


def _regional_suffix(where: UKZone) -> str:
    if where.region_id is not None:
        return f"/regionid/{where.region_id}"
    return f"/postcode/{path_segment(where.postcode or '')}"


def current_request(zone: str) -> ApiRequest:
    """Build the request for the current half-hour of ``zone``."""
    where = parse_zone(zone)
    if where.national:
        return ApiRequest("/intensity", zone=zone)
    return ApiRequest("/regional" + _regional_suffix(where), zone=zone)


def forecast_request(zone: str, start: datetime) -> ApiRequest:
    """Build the 48-hour forecast request from the half-hour containing ``start``."""
    where = parse_zone(zone)
    if where.national:
        return ApiRequest(f"/intensity/{_minute(start)}/fw48h", zone=zone)
    return ApiRequest(f"/regional/intensity/{_minute(start)}/fw48h" + _regional_suffix(where), zone=zone)


def history_request(zone: str, start: datetime, end: datetime) -> ApiRequest:
    """Build ``/intensity/{from}/{to}`` (or its regional twin) for at most 14 days."""
    where = parse_zone(zone)
    if ensure_utc(end) - ensure_utc(start) > RANGE_MAX:
        raise CarbonRequestError(
            "a single range request may span 14 days at most", provider=PROVIDER, zone=zone
        )
    path = f"/intensity/{_minute(start)}/{_minute(end)}"
    if where.national:
        return ApiRequest(path, zone=zone)
    return ApiRequest("/regional" + path + _regional_suffix(where), zone=zone)


def history_chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into ranges of at most 14 days."""
    return split_range(start, end, RANGE_MAX)


def _periods(reader: Reader, items: Any, field: str, value_key: str) -> list[Point]:
    points = []
    for i, item in enumerate(reader.sequence(items, field)):
        path = f"{field}[{i}]"
        obj = reader.mapping(item, path)
        start = reader.timestamp(reader.get(obj, "from", f"{path}.from"), f"{path}.from")
        end = reader.timestamp(reader.get(obj, "to", f"{path}.to"), f"{path}.to")
        intensity = reader.mapping(reader.get(obj, "intensity", f"{path}.intensity"), f"{path}.intensity")
        value_path = f"{path}.intensity.{value_key}"
        if value_key not in intensity:
            raise reader.error(value_path, "is missing")
        value = reader.number(intensity[value_key], value_path, nullable=True)
        points.append(Point(start, value, end=end, field=path))
    return points


def parse_national(
    body: Any, zone: str = "GB", *, field: str = "actual", issued_at: datetime | None = None
) -> IntensitySeries:
    """Parse a national ``/intensity...`` answer, reading only ``intensity.<field>``.

    :param field: ``actual`` (measured; null for periods not yet measured) or ``forecast``.
    :param issued_at: when the forecast was fetched, for ``field='forecast'`` (the API
        does not say when it was made).
    """
    if field not in NATIONAL_FIELDS:
        raise ValueError(f"field must be one of {NATIONAL_FIELDS}")
    reader = Reader(PROVIDER, zone)
    obj = reader.mapping(body, "<body>")
    points = _periods(reader, reader.get(obj, "data", "data"), "data", field)
    is_forecast = field == "forecast"
    return series_from_points(
        reader,
        points,
        field=f"data[*].intensity.{field}",
        zone=zone,
        kind=SignalKind.AVERAGE,
        resolution=PERIOD,
        source=PROVIDER,
        issued_at=issued_at if is_forecast else None,
        is_forecast=is_forecast,
    )


def parse_regional(body: Any, zone: str, *, issued_at: datetime | None = None) -> IntensitySeries:
    """Parse a regional answer, whose ``data`` is an object or a one-element list of one."""
    reader = Reader(PROVIDER, zone)
    obj = reader.mapping(body, "<body>")
    data = reader.get(obj, "data", "data")
    field = "data"
    if isinstance(data, list):
        reader.sequence(data, "data")
        if len(data) != 1:
            raise reader.error("data", f"holds {len(data)} regions; expected one")
        data, field = data[0], "data[0]"
    region = reader.mapping(data, field)
    where = parse_zone(zone)
    if where.region_id is not None and region.get("regionid") not in (None, where.region_id):
        raise reader.error(f"{field}.regionid", f"is {region.get('regionid')!r}, not {where.region_id}")
    points = _periods(reader, reader.get(region, "data", f"{field}.data"), f"{field}.data", "forecast")
    return series_from_points(
        reader,
        points,
        field=f"{field}.data[*].intensity.forecast",
        zone=zone,
        kind=SignalKind.AVERAGE,
        resolution=PERIOD,
        source=PROVIDER,
        issued_at=issued_at,
        is_forecast=True,
    )


def parse_answer(body: Any, zone: str, *, field: str, issued_at: datetime | None = None) -> IntensitySeries:
    """Parse any answer for ``zone``: national with ``field``, or regional (forecast only)."""
    if parse_zone(zone).national:
        return parse_national(body, zone, field=field, issued_at=issued_at)
    return parse_regional(body, zone, issued_at=issued_at)


def parse_current(body: Any, zone: str, *, now: datetime | None = None) -> IntensitySeries:
    """Parse the current half-hour: the national ``actual`` if measured, else the forecast.

    The national ``actual`` of the running half-hour is null until it has been measured.
    Then the ``forecast`` value is returned instead, as its own series marked
    ``is_forecast=True`` with ``issued_at`` set, never blended with actuals. Regional
    answers are forecasts anyway.
    """
    if not parse_zone(zone).national:
        return parse_regional(body, zone, issued_at=now or _now())
    try:
        return parse_national(body, zone, field="actual")
    except CarbonParseError as exc:
        if exc.field != "data[*].intensity.actual":
            raise
    return parse_national(body, zone, field="forecast", issued_at=now or _now())


def _join(zone: str, pieces: list[IntensitySeries]) -> IntensitySeries:
    return join_series(pieces, provider=PROVIDER, resolution=PERIOD)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def current_flow(zone: str, *, now: datetime | None = None) -> Flow[IntensitySeries]:
    """Return the current half-hour; see :func:`parse_current`."""
    body = yield from get_json(current_request(zone), PROVIDER)
    return parse_current(body, zone, now=now)


def forecast_flow(zone: str, start: datetime, *, issued_at: datetime | None = None) -> Flow[IntensitySeries]:
    """Return the 48-hour forecast from the half-hour containing ``start``."""
    body = yield from get_json(forecast_request(zone, start), PROVIDER)
    return parse_answer(body, zone, field="forecast", issued_at=issued_at or _now())


def history_flow(zone: str, start: datetime, end: datetime, *, field: str = "actual") -> Flow[IntensitySeries]:
    """Return ``[start, end)`` (national ``actual`` by default), in 14-day requests."""
    pieces = []
    for s, e in history_chunks(start, end):
        body = yield from get_json(history_request(zone, s, e), PROVIDER)
        pieces.append(parse_answer(body, zone, field=field))
    return pieces[0] if len(pieces) == 1 else _join(zone, pieces)
