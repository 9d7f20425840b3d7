"""Airflow hook for the UK Carbon Intensity API (connection type ``ukcarbonintensity``).

.. seealso:: :ref:`howto/connection:ukcarbonintensity`
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.hooks.base import BaseCarbonHook, HookConfig
from airflow_carbon_provider.sources import ukcarbonintensity as uk
from airflow_carbon_provider.sources._flow import Flow

__all__ = ["UKCarbonIntensityHook"]


class UKCarbonIntensityHook(BaseCarbonHook):
    """Read Great Britain's average carbon intensity (national or regional) from NESO's API.

    No account or key is needed. Zones are ``GB``, ``GB-<region id>`` (``GB-13`` London) or
    ``GB-<outward postcode>`` (``GB-RG10``). The host, when set, replaces
    ``https://api.carbonintensity.org.uk``.

    :param ukcarbonintensity_conn_id: the connection to use (it may not exist: the defaults
        need none).
    """

    conn_name_attr = "ukcarbonintensity_conn_id"
    default_conn_name = "ukcarbonintensity_default"
    conn_type = "ukcarbonintensity"
    hook_name = "UK Carbon Intensity (NESO)"

    provider = uk.PROVIDER
    default_base_url = uk.DEFAULT_BASE_URL
    default_max_staleness: ClassVar[timedelta | None] = timedelta(hours=2)
    default_ttl: ClassVar[dict[str, float]] = {"current": 300, "forecast": 900, "history": 1800}
    hidden_fields = ("schema", "port", "login", "password", "extra")
    relabeling: ClassVar[dict[str, str]] = {"host": "API base URL"}
    placeholders: ClassVar[dict[str, str]] = {"host": uk.DEFAULT_BASE_URL}

    connection_optional = True

    def __init__(self, ukcarbonintensity_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(ukcarbonintensity_conn_id, **kwargs)

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        config.signal = "average"

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        return uk.current_flow(zone)

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> str:
        return "fw48h"

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        return uk.forecast_flow(zone, now, issued_at=now)

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        return uk.history_flow(zone, start, end)

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        series = yield from uk.current_flow("GB")
        what = "forecast" if series.is_forecast else "measured"
        return f"Connected: GB is at {series.values[-1]:.0f} gCO2/kWh ({what})"
