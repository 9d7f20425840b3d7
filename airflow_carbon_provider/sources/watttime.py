"""WattTime API v3: login, request builders, response parsers, and one flow per endpoint.

``GET /login`` with HTTP Basic auth returns a bearer token valid for 30 minutes. The flows
of :class:`WattTime` renew it 5 minutes before it expires and, once, when a data call
answers 401: login, renewal and chunked history are one flow, so the synchronous and the
asynchronous driver do exactly the same. The token is a
:class:`~airflow_carbon_provider.sources._flow.Secret`: the driver hands it to its masker
(the hooks pass Airflow's ``mask_secret``) the moment it is parsed, before anything can log
it, and redacts it from every error message.

Signals: ``co2_moer`` is a **marginal** rate, ``co2_aoer`` an **average** one (historical
only: WattTime publishes no ``co2_aoer`` forecast). Values come in lbs/MWh and are converted
to g/kWh. Data are 5-minute points (``meta.data_point_period_seconds``).
"""

from __future__ import annotations

import base64
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind, Unit
from airflow_carbon_provider.exceptions import CarbonAPIError, CarbonAuthError, CarbonUnsupportedError
from airflow_carbon_provider.sources._flow import Flow, Secret, Shared, get_json
from airflow_carbon_provider.sources._http import ApiRequest, ApiResponse, default_error, error_message
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
    "PROVIDER",
    "SIGNAL_KINDS",
    "RegionInfo",
    "SignalIndex",
    "TokenState",
    "WattTime",
    "classify_error",
    "forecast_request",
    "historical_request",
    "login_request",
    "login_secrets",
    "my_access_request",
    "parse_forecast",
    "parse_historical",
    "parse_login",
    "parse_my_access",
    "parse_region_from_loc",
    "parse_signal_index",
    "region_from_loc_request",
    "signal_index_request",
]

PROVIDER = "watttime"
DEFAULT_BASE_URL = "https://api.watttime.org"
SIGNAL_KINDS = {"co2_moer": SignalKind.MARGINAL, "co2_aoer": SignalKind.AVERAGE}
TOKEN_LIFETIME = timedelta(minutes=30)
TOKEN_RENEW_MARGIN = timedelta(minutes=5)
MAX_FORECAST_HOURS = 72
HISTORICAL_MAX = timedelta(days=30)
_UNITS = {
    "lbs_co2_per_mwh": Unit.LBS_PER_MWH,
    "kg_co2_per_mwh": Unit.KG_PER_MWH,
    "g_co2_per_kwh": Unit.G_PER_KWH,
}


def signal_kind(signal_type: str) -> SignalKind:
    """Return the kind of a WattTime signal: ``co2_moer`` marginal, ``co2_aoer`` average."""
    try:
        return SIGNAL_KINDS[signal_type]
    except KeyError:
        raise CarbonUnsupportedError(
            f"signal_type {signal_type!r} is not a CO2 intensity; use one of {sorted(SIGNAL_KINDS)}",
            provider=PROVIDER,
        ) from None


def login_secrets(username: str, password: str) -> tuple[str, ...]:
    """Return what a login reveals: the username, the password, and the Basic credentials."""
    basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return tuple(s for s in (username, password, basic) if s)


def login_request(username: str, password: str) -> ApiRequest:
    """Build ``GET /login`` with HTTP Basic auth."""
    return ApiRequest("/login", basic_auth=(username, password))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def forecast_request(region: str, signal_type: str, token: str, horizon_hours: int) -> ApiRequest:
    """Build ``GET /v3/forecast`` (``horizon_hours`` 0..72; 0 gives only the current value)."""
    horizon = max(0, min(MAX_FORECAST_HOURS, int(horizon_hours)))
    params = {"region": region, "signal_type": signal_type, "horizon_hours": str(horizon)}
    return ApiRequest("/v3/forecast", params, _bearer(token), zone=region)


def historical_request(
    region: str, signal_type: str, token: str, start: datetime, end: datetime
) -> ApiRequest:
    """Build ``GET /v3/historical`` for ``[start, end]``."""
    params = {
        "region": region,
        "signal_type": signal_type,
        "start": format_iso(start),
        "end": format_iso(end),
    }
    return ApiRequest("/v3/historical", params, _bearer(token), zone=region)


def historical_chunks(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into requests of at most 30 days."""
    return split_range(start, end, HISTORICAL_MAX)


def signal_index_request(region: str, signal_type: str, token: str) -> ApiRequest:
    """Build ``GET /v3/signal-index``."""
    params = {"region": region, "signal_type": signal_type}
    return ApiRequest("/v3/signal-index", params, _bearer(token), zone=region)


def region_from_loc_request(latitude: float, longitude: float, signal_type: str, token: str) -> ApiRequest:
    """Build ``GET /v3/region-from-loc``."""
    params = {"latitude": str(latitude), "longitude": str(longitude), "signal_type": signal_type}
    return ApiRequest("/v3/region-from-loc", params, _bearer(token))


def my_access_request(token: str) -> ApiRequest:
    """Build ``GET /v3/my-access``."""
    return ApiRequest("/v3/my-access", {}, _bearer(token))


def classify_error(response: ApiResponse, zone: str | None) -> CarbonAPIError:
    """Map an error response to a typed error (401 is an expired or invalid token)."""
    if response.status == 401:
        return CarbonAuthError(
            f"token or credentials rejected: {error_message(response)}",
            provider=PROVIDER,
            status=401,
            zone=zone,
        )
    return default_error(PROVIDER, response, zone)


def parse_login(body: Any) -> str:
    """Return the token from a ``/login`` answer."""
    reader = Reader(PROVIDER)
    obj = reader.mapping(body, "<body>")
    return reader.string(reader.get(obj, "token", "token"), "token")


def _meta(reader: Reader, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return reader.mapping(reader.get(obj, "meta", "meta"), "meta")


def _resolution(reader: Reader, meta: Mapping[str, Any]) -> timedelta:
    raw = meta.get("data_point_period_seconds", 300)
    seconds = reader.number(raw, "meta.data_point_period_seconds")
    if seconds is None or not 60 <= seconds <= 3600:
        raise reader.error("meta.data_point_period_seconds", f"{raw!r} is not a period from 60 to 3600 s")
    return timedelta(seconds=seconds)


def _unit(reader: Reader, meta: Mapping[str, Any]) -> Unit:
    raw = meta.get("units", "lbs_co2_per_mwh")
    if not isinstance(raw, str) or raw not in _UNITS:
        raise reader.error("meta.units", f"{raw!r} is not a CO2 intensity unit this parser knows")
    return _UNITS[raw]


def _check_meta(reader: Reader, meta: Mapping[str, Any], region: str, signal_type: str) -> None:
    for key, expected in (("region", region), ("signal_type", signal_type)):
        got = meta.get(key)
        if got is not None and got != expected:
            raise reader.error(f"meta.{key}", f"answer is for {got!r}, not the requested {expected!r}")


def _points(reader: Reader, items: Any, field: str) -> list[Point]:
    points = []
    for i, item in enumerate(reader.sequence(items, field)):
        path = f"{field}[{i}]"
        obj = reader.mapping(item, path)
        start = reader.timestamp(reader.get(obj, "point_time", f"{path}.point_time"), f"{path}.point_time")
        value = reader.number(
            reader.get(obj, "value", f"{path}.value", required=False), f"{path}.value", nullable=True
        )
        estimated = reader.boolean(obj.get("imputed_data_used"), f"{path}.imputed_data_used")
        points.append(Point(start, value, estimated=estimated, field=path))
    return points


def _parse_series(body: Any, region: str, signal_type: str, *, forecast: bool) -> IntensitySeries:
    reader = Reader(PROVIDER, region)
    obj = reader.mapping(body, "<body>")
    meta = _meta(reader, obj)
    _check_meta(reader, meta, region, signal_type)
    kind = signal_kind(signal_type)
    issued_at = None
    if forecast and meta.get("generated_at") is not None:
        issued_at = reader.timestamp(meta["generated_at"], "meta.generated_at")
    return series_from_points(
        reader,
        _points(reader, reader.get(obj, "data", "data"), "data"),
        field="data",
        value_field="data[*].value",
        zone=region,
        kind=kind,
        resolution=_resolution(reader, meta),
        unit=_unit(reader, meta),
        source=PROVIDER,
        issued_at=issued_at,
        is_forecast=forecast,
    )


def parse_forecast(body: Any, region: str, signal_type: str = "co2_moer") -> IntensitySeries:
    """Parse ``/v3/forecast``; ``meta.generated_at`` becomes ``issued_at``."""
    return _parse_series(body, region, signal_type, forecast=True)


def parse_historical(body: Any, region: str, signal_type: str = "co2_moer") -> IntensitySeries:
    """Parse ``/v3/historical``; ``imputed_data_used`` becomes ``Interval.estimated``."""
    return _parse_series(body, region, signal_type, forecast=False)


@dataclass(frozen=True)
class SignalIndex:
    """Where the current value sits among the region's recent values (0 cleanest, 100 dirtiest)."""

    region: str
    signal_type: str
    point_time: datetime
    percentile: float


def parse_signal_index(body: Any, region: str, signal_type: str = "co2_moer") -> SignalIndex:
    """Parse ``/v3/signal-index`` (a percentile, not an intensity)."""
    reader = Reader(PROVIDER, region)
    obj = reader.mapping(body, "<body>")
    meta = _meta(reader, obj)
    _check_meta(reader, meta, region, signal_type)
    if meta.get("units", "percentile") != "percentile":
        raise reader.error("meta.units", f"{meta.get('units')!r} is not 'percentile'")
    points = _points(reader, reader.get(obj, "data", "data"), "data")
    latest = max(points, key=lambda p: p.start)
    if latest.value is None or not 0 <= latest.value <= 100:
        raise reader.error(latest.field + ".value", f"{latest.value!r} is not a percentile from 0 to 100")
    return SignalIndex(region, signal_type, latest.start, latest.value)


@dataclass(frozen=True)
class RegionInfo:
    """The WattTime region that covers a location."""

    region: str
    region_full_name: str
    signal_type: str


def parse_region_from_loc(body: Any) -> RegionInfo:
    """Parse ``/v3/region-from-loc``."""
    reader = Reader(PROVIDER)
    obj = reader.mapping(body, "<body>")
    region = reader.string(reader.get(obj, "region", "region"), "region")
    name = obj.get("region_full_name") or region
    signal_type = obj.get("signal_type") or ""
    return RegionInfo(
        region, reader.string(name, "region_full_name"), str(signal_type) if signal_type else ""
    )


def parse_my_access(body: Any) -> dict[str, dict[str, tuple[str, ...]]]:
    """Parse ``/v3/my-access`` into ``{signal_type: {region: (endpoint, ...)}}``."""
    reader = Reader(PROVIDER)
    obj = reader.mapping(body, "<body>")
    result: dict[str, dict[str, tuple[str, ...]]] = {}
    for i, signal in enumerate(
        reader.sequence(reader.get(obj, "signal_types", "signal_types"), "signal_types", non_empty=False)
    ):
        path = f"signal_types[{i}]"
        signal_obj = reader.mapping(signal, path)
        name = reader.string(
            reader.get(signal_obj, "signal_type", f"{path}.signal_type"), f"{path}.signal_type"
        )
        regions: dict[str, tuple[str, ...]] = {}
        raw_regions = reader.get(signal_obj, "regions", f"{path}.regions")
        for j, region in enumerate(reader.sequence(raw_regions, f"{path}.regions", non_empty=False)):
            rpath = f"{path}.regions[{j}]"
            region_obj = reader.mapping(region, rpath)
            region_name = reader.string(
                reader.get(region_obj, "region", f"{rpath}.region"), f"{rpath}.region"
            )
            endpoints = []
            raw_endpoints = region_obj.get("endpoints") or []
            for k, endpoint in enumerate(
                reader.sequence(raw_endpoints, f"{rpath}.endpoints", non_empty=False)
            ):
                epath = f"{rpath}.endpoints[{k}]"
                endpoint_obj = reader.mapping(endpoint, epath)
                endpoints.append(
                    reader.string(
                        reader.get(endpoint_obj, "endpoint", f"{epath}.endpoint"), f"{epath}.endpoint"
                    )
                )
            regions[region_name] = tuple(endpoints)
        result[name] = regions
    return result


class TokenState:
    """The current WattTime token of one account and when it was obtained.

    Logins are serialised by the drivers, which run :meth:`WattTime.login` single-flight on
    this object (see :class:`~airflow_carbon_provider.sources._flow.Shared`).

    :param monotonic: the clock used for the token's age (injectable for tests).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.token: str | None = None
        self.obtained_at: float = 0.0
        self.generation = 0
        self._monotonic = monotonic

    def valid_token(self) -> str | None:
        """Return the token if it has more than the renewal margin left, else None."""
        if self.token is None:
            return None
        age = self._monotonic() - self.obtained_at
        if age >= (TOKEN_LIFETIME - TOKEN_RENEW_MARGIN).total_seconds():
            return None
        return self.token

    def store(self, token: str) -> int:
        """Remember a freshly obtained token; return its generation."""
        self.token = token
        self.obtained_at = self._monotonic()
        self.generation += 1
        return self.generation

    def discard(self, generation: int) -> None:
        """Forget the token of ``generation`` (the one a 401 was answered to)."""
        if self.generation == generation:
            self.token = None


_TOKENS: dict[tuple[str, str, int], TokenState] = {}
_TOKENS_LOCK = threading.Lock()


def shared_token_state(base_url: str, username: str, password: str) -> TokenState:
    """Return the process-wide token state of one account, so hooks share one login."""
    key = (base_url, username, hash(password))
    with _TOKENS_LOCK:
        return _TOKENS.setdefault(key, TokenState())


class WattTime:
    """The flows of every endpoint, for one account and signal type, sharing one token.

    Each data flow obtains a token first (logging in when there is none or it is about to
    expire, once for all concurrent callers of the account in the process), and logs in
    again once when the call is answered 401. The token is a
    :class:`~airflow_carbon_provider.sources._flow.Secret`: masked the moment it is parsed,
    before anything can log it, and redacted from every error.

    :param username: the WattTime username.
    :param password: the WattTime password.
    :param signal_type: ``co2_moer`` (marginal) or ``co2_aoer`` (average, history only).
    :param tokens: the token state to share (the hooks share one per account).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        signal_type: str = "co2_moer",
        tokens: TokenState | None = None,
    ) -> None:
        if not username or not password:
            raise CarbonAuthError(
                "no WattTime username or password: put them in the connection's login and password",
                provider=PROVIDER,
            )
        signal_kind(signal_type)
        self.username = username
        self.password = password
        self.signal_type = signal_type
        self.tokens = tokens or TokenState()

    def __repr__(self) -> str:
        return f"WattTime(signal_type={self.signal_type!r})"

    def login(self) -> Flow[tuple[str, int]]:
        """Log in; return the fresh token (masked before anything else sees it) and its generation."""
        try:
            body = yield from get_json(login_request(self.username, self.password), PROVIDER)
        except CarbonAPIError as exc:
            if exc.status in (401, 403):
                raise CarbonAuthError(
                    f"login refused: {exc.message}", provider=PROVIDER, status=exc.status
                ) from None
            raise
        token = parse_login(body)
        yield Secret(token)
        return token, self.tokens.store(token)

    def token(self) -> Flow[tuple[str, int]]:
        """Return a token with time left and its generation, logging in when there is none."""
        for secret in login_secrets(self.username, self.password):
            yield Secret(secret, mask=False)
        token = self.tokens.valid_token()
        if token is None:
            return (yield Shared(self.tokens, self.login()))
        yield Secret(token, mask=False)  # masked when it was obtained; redacted by this driver too
        return token, self.tokens.generation

    def call(self, build: Callable[[str], ApiRequest]) -> Flow[Any]:
        """Send the request ``build(token)`` makes and return its JSON; on a 401, log in once more."""
        token, generation = yield from self.token()
        try:
            return (yield from get_json(build(token), PROVIDER))
        except CarbonAuthError:
            self.tokens.discard(generation)  # expired early or revoked: log in again, once
            token, _ = yield from self.token()
            return (yield from get_json(build(token), PROVIDER))

    def forecast(self, region: str, horizon_hours: int = 24) -> Flow[IntensitySeries]:
        """Return the forecast of ``region`` (the first point is the current 5 minutes)."""
        if self.signal_type == "co2_aoer":
            raise CarbonUnsupportedError(
                "WattTime publishes no co2_aoer forecast; use co2_moer for forecasts",
                provider=PROVIDER,
                zone=region,
            )
        build = functools.partial(forecast_request, region, self.signal_type, horizon_hours=horizon_hours)
        return parse_forecast((yield from self.call(build)), region, self.signal_type)

    def historical(self, region: str, start: datetime, end: datetime) -> Flow[IntensitySeries]:
        """Return measured values of ``region`` over ``[start, end)``, in 30-day requests."""
        pieces = []
        for s, e in historical_chunks(start, end):
            build = functools.partial(historical_request, region, self.signal_type, start=s, end=e)
            pieces.append(parse_historical((yield from self.call(build)), region, self.signal_type))
        return pieces[0] if len(pieces) == 1 else _join(region, self.signal_type, pieces)

    def signal_index(self, region: str) -> Flow[SignalIndex]:
        """Return the current percentile of ``region``."""
        build = functools.partial(signal_index_request, region, self.signal_type)
        return parse_signal_index((yield from self.call(build)), region, self.signal_type)

    def region_from_loc(self, latitude: float, longitude: float) -> Flow[RegionInfo]:
        """Return the region that covers a location."""
        build = functools.partial(region_from_loc_request, latitude, longitude, self.signal_type)
        return parse_region_from_loc((yield from self.call(build)))

    def my_access(self) -> Flow[dict[str, dict[str, tuple[str, ...]]]]:
        """Return which signals, regions and endpoints the account may use."""
        return parse_my_access((yield from self.call(my_access_request)))


def _join(region: str, signal_type: str, pieces: list[IntensitySeries]) -> IntensitySeries:
    return join_series(pieces, provider=PROVIDER, resolution=timedelta(minutes=5), value_field="data[*].value")
