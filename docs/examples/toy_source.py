"""A fifth carbon source, written as docs/howto/adding-a-source.rst says: one source module, one hook.

The "Toy Grid" API is made up: ``GET /intensity/{zone}/current``, ``.../forecast?hours=N``
and ``.../history?start=...&end=...`` (seven days at most per request) answer
``{"zone": "DE", "issued_at": "...", "points": [{"start": "...", "value": 312}, ...]}`` in
gCO2eq/kWh per half-hour, with the key in an ``x-api-key`` header.
``tests/unit/test_adding_a_source.py`` runs this file's flows and hook in both modes over
loopback HTTP. In the provider, the first part would be ``airflow_carbon_provider/sources/toygrid.py``
and the second ``airflow_carbon_provider/hooks/toygrid.py``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, ClassVar

# [START source]
# airflow_carbon_provider/sources/toygrid.py: builders, parsers and flows; no Airflow, no I/O.
from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind
from airflow_carbon_provider.sources._flow import Flow, Secret, get_json
from airflow_carbon_provider.sources._http import ApiRequest, path_segment
from airflow_carbon_provider.sources._parsing import (
    Point,
    Reader,
    format_iso,
    join_series,
    series_from_points,
    split_range,
)

PROVIDER = "toygrid"
DEFAULT_BASE_URL = "https://api.toygrid.example"
RESOLUTION = timedelta(minutes=30)
HISTORY_MAX = timedelta(days=7)


def intensity_request(zone: str, what: str, api_key: str, **params: str) -> ApiRequest:
    """Build ``GET /intensity/{zone}/{what}`` (the zone is named by the request's errors)."""
    path = f"/intensity/{path_segment(zone)}/{what}"
    return ApiRequest(path, params, {"x-api-key": api_key}, zone=zone)


def parse_points(body: Any, zone: str, *, forecast: bool = False) -> IntensitySeries:
    """Parse an answer; every failure is a CarbonParseError naming the JSON path at fault."""
    reader = Reader(PROVIDER, zone)
    obj = reader.mapping(body, "<body>")
    points = []
    for i, item in enumerate(reader.sequence(reader.get(obj, "points", "points"), "points")):
        path = f"points[{i}]"
        row = reader.mapping(item, path)
        start = reader.timestamp(reader.get(row, "start", f"{path}.start"), f"{path}.start")
        raw = reader.get(row, "value", f"{path}.value", required=False)
        points.append(Point(start, reader.number(raw, f"{path}.value", nullable=True), field=path))
    issued_at = reader.timestamp(reader.get(obj, "issued_at", "issued_at"), "issued_at") if forecast else None
    return series_from_points(
        reader, points, field="points", zone=zone, kind=SignalKind.AVERAGE, resolution=RESOLUTION,
        source=PROVIDER, issued_at=issued_at, is_forecast=forecast,
    )  # fmt: skip


def current_flow(zone: str, api_key: str) -> Flow[IntensitySeries]:
    """Return the half-hour in force now."""
    yield Secret(api_key, mask=False)  # never in an error message, whatever the server echoes
    body = yield from get_json(intensity_request(zone, "current", api_key), PROVIDER)
    return parse_points(body, zone)


def forecast_flow(zone: str, api_key: str, hours: int) -> Flow[IntensitySeries]:
    """Return the forecast for the next ``hours``."""
    yield Secret(api_key, mask=False)
    body = yield from get_json(intensity_request(zone, "forecast", api_key, hours=str(hours)), PROVIDER)
    return parse_points(body, zone, forecast=True)


def history_flow(zone: str, api_key: str, start: datetime, end: datetime) -> Flow[IntensitySeries]:
    """Return measured values over ``[start, end)``, one request per seven days."""
    yield Secret(api_key, mask=False)
    pieces = []
    for s, e in split_range(start, end, HISTORY_MAX):
        request = intensity_request(zone, "history", api_key, start=format_iso(s), end=format_iso(e))
        pieces.append(parse_points((yield from get_json(request, PROVIDER)), zone))
    return join_series(pieces, provider=PROVIDER, resolution=RESOLUTION)


# [END source]

# [START hook]
# airflow_carbon_provider/hooks/toygrid.py: the Airflow connection; each operation once, as a flow.
from airflow_carbon_provider.exceptions import CarbonAuthError  # noqa: E402
from airflow_carbon_provider.hooks.base import BaseCarbonHook, HookConfig  # noqa: E402


class ToyGridHook(BaseCarbonHook):
    """Read average carbon intensity from the Toy Grid API (the key in the password)."""

    conn_name_attr = "toygrid_conn_id"
    default_conn_name = "toygrid_default"
    conn_type = "toygrid"
    hook_name = "Toy Grid"

    provider = PROVIDER
    default_base_url = DEFAULT_BASE_URL
    hidden_fields = ("schema", "port", "login", "extra")
    relabeling: ClassVar[dict[str, str]] = {"password": "API key", "host": "API base URL"}

    def __init__(self, toygrid_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(toygrid_conn_id, **kwargs)

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        if not config.password:
            raise CarbonAuthError(f"connection {self.conn_id!r} has no API key", provider=PROVIDER)
        config.signal = "average"

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        return current_flow(zone, str(config.password))

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> int:
        return 24 if end is None else max(1, min(48, math.ceil((end - now).total_seconds() / 3600)))

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        return forecast_flow(zone, str(config.password), request)

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        return history_flow(zone, str(config.password), start, end)

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        series = yield from current_flow("DE", str(config.password))
        return f"Connected: DE is at {series.values[-1]:.0f} gCO2eq/kWh"


# [END hook]
