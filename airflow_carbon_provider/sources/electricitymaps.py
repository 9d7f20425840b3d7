"""Electricity Maps API v3: request builders, response parsers, and a flow per endpoint.

Endpoints: ``/v3/carbon-intensity/latest``, ``/forecast`` (``horizonHours``), ``/history``
(the last 24 hours) and ``/past-range`` (at most 10 days per request at hourly granularity;
longer ranges are split). The key travels in the ``auth-token`` header. Values are average
(attributional) intensities in gCO2eq/kWh, lifecycle by default or direct on request;
``isEstimated`` is kept on each interval. Nulls and gaps follow the rule in
:mod:`airflow_carbon_provider.sources._parsing`.

A rate-limited call has been seen to come back as HTTP 401, not 429
(electricitymaps-contrib issue #8047); :func:`classify_error` reads the body to tell a
limit from bad credentials, and only the former is retried.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind
from airflow_carbon_provider.exceptions import (
    CarbonAPIError,
    CarbonAuthError,
    CarbonRateLimitError,
    CarbonRequestError,
)
from airflow_carbon_provider.sources._flow import Flow, Secret, get_json
from airflow_carbon_provider.sources._http import (
    ApiRequest,
    ApiResponse,
    default_error,
    error_message,
    parse_retry_after,
)
from airflow_carbon_provider.sources._parsing import (
    Point,
    Reader,
    format_iso,
    join_series,
    series_from_points,
    split_range,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EMISSION_FACTOR_TYPES",
    "FORECAST_HORIZONS",
    "PROVIDER",
    "EMOptions",
    "ElectricityMaps",
    "classify_error",
    "forecast_request",
    "history_request",
    "latest_request",
    "locate_request",
    "parse_forecast",
    "parse_history",
    "parse_latest",
    "parse_locate",
    "parse_past_range",
    "past_range_chunks",
    "past_range_request",
    "pick_horizon",
]

PROVIDER = "electricitymaps"
DEFAULT_BASE_URL = "https://api.electricitymaps.com"
EMISSION_FACTOR_TYPES = ("lifecycle", "direct")
FORECAST_HORIZONS = (6, 24, 48, 72)
GRANULARITIES = {
    "5_minutes": timedelta(minutes=5),
    "15_minutes": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
}
PAST_RANGE_MAX = timedelta(days=10)
_RATE_LIMIT_WORDS = ("rate limit", "rate-limit", "ratelimit", "too many requests", "quota", "limit exceeded")


class EMOptions:
    """Query options every carbon-intensity request carries.

    :param emission_factor_type: ``lifecycle`` (the API's default) or ``direct``.
    :param disable_estimations: ask the API to leave estimated values out.
    :param granularity: ``hourly`` (default), ``15_minutes`` or ``5_minutes`` (plan-dependent).
    """

    def __init__(
        self,
        emission_factor_type: str = "lifecycle",
        disable_estimations: bool = False,
        granularity: str = "hourly",
    ) -> None:
        if emission_factor_type not in EMISSION_FACTOR_TYPES:
            raise CarbonRequestError(
                f"emission_factor_type {emission_factor_type!r} is not one of {EMISSION_FACTOR_TYPES}",
                provider=PROVIDER,
            )
        if granularity not in GRANULARITIES:
            raise CarbonRequestError(
                f"granularity {granularity!r} is not one of {tuple(GRANULARITIES)}", provider=PROVIDER
            )
        self.emission_factor_type = emission_factor_type
        self.disable_estimations = disable_estimations
        self.granularity = granularity

    @property
    def resolution(self) -> timedelta:
        """Length of one interval at the chosen granularity."""
        return GRANULARITIES[self.granularity]

    def params(self, zone: str) -> dict[str, str]:
        """Return the query parameters shared by every carbon-intensity endpoint."""
        params = {"zone": zone, "emissionFactorType": self.emission_factor_type}
        if self.disable_estimations:
            params["disableEstimations"] = "true"
        if self.granularity != "hourly":
            params["temporalGranularity"] = self.granularity
        return params


def _headers(api_key: str) -> dict[str, str]:
    return {"auth-token": api_key}


def latest_request(zone: str, api_key: str, options: EMOptions) -> ApiRequest:
    """Build ``GET /v3/carbon-intensity/latest``."""
    return ApiRequest("/v3/carbon-intensity/latest", options.params(zone), _headers(api_key), zone=zone)


def locate_request(latitude: float, longitude: float, api_key: str) -> ApiRequest:
    """Build ``GET /v3/carbon-intensity/latest`` for a location (its answer names the zone).

    The API resolves ``lat``/``lon`` to the zone that covers them; without a resolvable zone
    it would fall back to the caller's IP location, which ``disableCallerLookup`` turns off.
    """
    params = {"lat": str(latitude), "lon": str(longitude), "disableCallerLookup": "true"}
    return ApiRequest("/v3/carbon-intensity/latest", params, _headers(api_key), zone=f"{latitude},{longitude}")


def parse_locate(body: Any, latitude: float, longitude: float) -> str:
    """Return the zone key an answer to :func:`locate_request` names."""
    reader = Reader(PROVIDER, f"{latitude},{longitude}")
    obj = reader.mapping(body, "<body>")
    return reader.string(reader.get(obj, "zone", "zone"), "zone")


def forecast_request(zone: str, api_key: str, options: EMOptions, horizon_hours: int) -> ApiRequest:
    """Build ``GET /v3/carbon-intensity/forecast`` with ``horizonHours``."""
    params = {**options.params(zone), "horizonHours": str(horizon_hours)}
    return ApiRequest("/v3/carbon-intensity/forecast", params, _headers(api_key), zone=zone)


def history_request(zone: str, api_key: str, options: EMOptions) -> ApiRequest:
    """Build ``GET /v3/carbon-intensity/history`` (the last 24 hours)."""
    return ApiRequest("/v3/carbon-intensity/history", options.params(zone), _headers(api_key), zone=zone)


def past_range_request(
    zone: str, api_key: str, options: EMOptions, start: datetime, end: datetime
) -> ApiRequest:
    """Build ``GET /v3/carbon-intensity/past-range`` for ``[start, end)`` (at most 10 days)."""
    params = {**options.params(zone), "start": format_iso(start), "end": format_iso(end)}
    return ApiRequest("/v3/carbon-intensity/past-range", params, _headers(api_key), zone=zone)


def past_range_chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into pieces the API accepts (10 days each at most)."""
    return split_range(start, end, PAST_RANGE_MAX)


def pick_horizon(needed: timedelta | None, default: int = 24) -> int:
    """Return the smallest horizon the API offers (6, 24, 48, 72 h) covering ``needed``."""
    if needed is None:
        return default
    hours = needed.total_seconds() / 3600
    for horizon in FORECAST_HORIZONS:
        if hours <= horizon:
            return horizon
    return FORECAST_HORIZONS[-1]


def classify_error(response: ApiResponse, zone: str | None) -> CarbonAPIError:
    """Map an error response to a typed error, telling a 401 rate limit from bad credentials."""
    if response.status == 401:
        message = error_message(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        lowered = message.lower()
        if retry_after is not None or any(word in lowered for word in _RATE_LIMIT_WORDS):
            return CarbonRateLimitError(
                f"rate limited (answered as 401): {message}",
                retry_after=retry_after,
                provider=PROVIDER,
                status=401,
                zone=zone,
            )
        return CarbonAuthError(
            f"credentials rejected: {message}; check the API key in the connection's password",
            provider=PROVIDER,
            status=401,
            zone=zone,
        )
    return default_error(PROVIDER, response, zone)


def _check_envelope(reader: Reader, body: Any, zone: str, options: EMOptions | None) -> Mapping[str, Any]:
    obj = reader.mapping(body, "<body>")
    body_zone = obj.get("zone")
    if body_zone is not None and (not isinstance(body_zone, str) or body_zone.upper() != zone.upper()):
        raise reader.error("zone", f"answer is for zone {body_zone!r}, not the requested {zone!r}")
    return obj


def _point(reader: Reader, item: Any, field: str, options: EMOptions | None) -> Point:
    obj = reader.mapping(item, field)
    start = reader.timestamp(reader.get(obj, "datetime", f"{field}.datetime"), f"{field}.datetime")
    value = reader.number(
        reader.get(obj, "carbonIntensity", f"{field}.carbonIntensity", required=False),
        f"{field}.carbonIntensity",
        nullable=True,
    )
    if options is not None and obj.get("emissionFactorType") not in (None, options.emission_factor_type):
        raise reader.error(
            f"{field}.emissionFactorType",
            f"is {obj.get('emissionFactorType')!r}, but {options.emission_factor_type!r} was requested",
        )
    estimated = reader.boolean(obj.get("isEstimated"), f"{field}.isEstimated")
    return Point(start, value, estimated=estimated, field=field)


def parse_latest(body: Any, zone: str, options: EMOptions | None = None) -> IntensitySeries:
    """Parse ``/latest`` into a one-interval series for the current period."""
    reader = Reader(PROVIDER, zone)
    obj = _check_envelope(reader, body, zone, options)
    point = _point(reader, obj, "<body>", options)
    if point.value is None:
        raise reader.error("carbonIntensity", "is null: no current value for this zone")
    resolution = options.resolution if options else timedelta(hours=1)
    return series_from_points(
        reader,
        [point],
        field="<body>",
        zone=zone,
        kind=SignalKind.AVERAGE,
        resolution=resolution,
        source=PROVIDER,
    )


def _parse_list(
    body: Any, zone: str, options: EMOptions | None, key: str, *, is_forecast: bool
) -> IntensitySeries:
    reader = Reader(PROVIDER, zone)
    obj = _check_envelope(reader, body, zone, options)
    items = reader.sequence(reader.get(obj, key, key), key)
    points = [_point(reader, item, f"{key}[{i}]", options) for i, item in enumerate(items)]
    issued_at = None
    if is_forecast and obj.get("updatedAt") is not None:
        issued_at = reader.timestamp(obj["updatedAt"], "updatedAt")
    return series_from_points(
        reader,
        points,
        field=key,
        value_field=f"{key}[*].carbonIntensity",
        zone=zone,
        kind=SignalKind.AVERAGE,
        resolution=options.resolution if options else timedelta(hours=1),
        source=PROVIDER,
        issued_at=issued_at,
        is_forecast=is_forecast,
    )


def parse_forecast(body: Any, zone: str, options: EMOptions | None = None) -> IntensitySeries:
    """Parse ``/forecast``; ``updatedAt`` becomes the series' ``issued_at``."""
    return _parse_list(body, zone, options, "forecast", is_forecast=True)


def parse_history(body: Any, zone: str, options: EMOptions | None = None) -> IntensitySeries:
    """Parse ``/history`` (the last 24 hours)."""
    return _parse_list(body, zone, options, "history", is_forecast=False)


def parse_past_range(body: Any, zone: str, options: EMOptions | None = None) -> IntensitySeries:
    """Parse ``/past-range``."""
    return _parse_list(body, zone, options, "data", is_forecast=False)


def join_pieces(zone: str, pieces: list[IntensitySeries]) -> IntensitySeries:
    """Join the series of consecutive range requests into one, under the null/gap rule."""
    return join_series(pieces, provider=PROVIDER, resolution=timedelta(hours=1))


@dataclass(frozen=True)
class ElectricityMaps:
    """The flows of the carbon-intensity endpoints, for one API key and one set of options.

    Each method is a flow (see :mod:`~airflow_carbon_provider.sources._flow`): run it with a
    driver, ``driver.run(ElectricityMaps(key).latest("DE"))``.

    :param api_key: the ``auth-token``.
    :param options: the query options every request carries.
    """

    api_key: str = field(repr=False)
    options: EMOptions = field(default_factory=lambda: EMOptions())

    def __post_init__(self) -> None:
        if not self.api_key:
            raise CarbonAuthError("no API key: put it in the connection's password", provider=PROVIDER)

    def _get(self, request: ApiRequest) -> Flow[Any]:
        yield Secret(self.api_key, mask=False)  # never in an error, whatever the server echoes
        return (yield from get_json(request, PROVIDER))

    def latest(self, zone: str) -> Flow[IntensitySeries]:
        """Return the current intensity of ``zone``."""
        body = yield from self._get(latest_request(zone, self.api_key, self.options))
        return parse_latest(body, zone, self.options)

    def locate(self, latitude: float, longitude: float) -> Flow[str]:
        """Return the zone that covers a location."""
        body = yield from self._get(locate_request(latitude, longitude, self.api_key))
        return parse_locate(body, latitude, longitude)

    def forecast(self, zone: str, horizon_hours: int = 24) -> Flow[IntensitySeries]:
        """Return the forecast for ``zone`` over ``horizon_hours``."""
        body = yield from self._get(forecast_request(zone, self.api_key, self.options, horizon_hours))
        return parse_forecast(body, zone, self.options)

    def history(self, zone: str) -> Flow[IntensitySeries]:
        """Return the last 24 hours for ``zone``."""
        body = yield from self._get(history_request(zone, self.api_key, self.options))
        return parse_history(body, zone, self.options)

    def past_range(self, zone: str, start: datetime, end: datetime) -> Flow[IntensitySeries]:
        """Return ``[start, end)`` for ``zone``, in 10-day requests."""
        pieces = []
        for s, e in past_range_chunks(start, end):
            body = yield from self._get(past_range_request(zone, self.api_key, self.options, s, e))
            pieces.append(parse_past_range(body, zone, self.options))
        return pieces[0] if len(pieces) == 1 else join_pieces(zone, pieces)
