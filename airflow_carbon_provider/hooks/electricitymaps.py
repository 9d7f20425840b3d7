"""Airflow hook for the Electricity Maps API v3 (connection type ``electricitymaps``).

.. seealso:: :ref:`howto/connection:electricitymaps`
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.exceptions import CarbonAuthError, CarbonNoAccessError
from airflow_carbon_provider.hooks.base import (
    BaseCarbonHook,
    ConnField,
    HookConfig,
    extra_bool,
    extra_choice,
    extra_number,
)
from airflow_carbon_provider.sources import electricitymaps as em
from airflow_carbon_provider.sources._flow import Flow
from airflow_carbon_provider.sources._http import ErrorClassifier

__all__ = ["ElectricityMapsHook"]

HISTORY_WINDOW = timedelta(hours=24)


class ElectricityMapsHook(BaseCarbonHook):
    """Read average carbon intensity (lifecycle or direct) from Electricity Maps.

    The API key goes in the connection's password (or an ``api_key`` extra, which Airflow
    masks too). The host, when set, replaces ``https://api.electricitymaps.com``.

    :param electricitymaps_conn_id: the connection to use.
    """

    conn_name_attr = "electricitymaps_conn_id"
    default_conn_name = "electricitymaps_default"
    conn_type = "electricitymaps"
    hook_name = "Electricity Maps"

    provider = em.PROVIDER
    default_base_url = em.DEFAULT_BASE_URL
    default_max_staleness: ClassVar[timedelta | None] = timedelta(hours=3)
    default_ttl: ClassVar[dict[str, float]] = {"current": 300, "forecast": 900, "history": 3600}
    provider_fields = (
        ConnField(
            "emission_factor_type",
            "Emission factor type",
            "string",
            "lifecycle",
            "lifecycle (the API's default, includes upstream emissions) or direct (combustion only).",
            enum=em.EMISSION_FACTOR_TYPES,
        ),
        ConnField(
            "disable_estimations",
            "Disable estimations",
            "boolean",
            False,
            "Ask the API to leave estimated values out.",
        ),
        ConnField(
            "horizon_hours",
            "Forecast horizon (hours)",
            "integer",
            24,
            "Default forecast horizon: 6, 24, 48 or 72, as the plan allows.",
        ),
        ConnField(
            "test_zone",
            "Zone for 'Test'",
            "string",
            "DE",
            "The zone the connection test asks for (free keys may cover a single zone).",
        ),
    )
    hidden_fields = ("schema", "port", "login", "extra")
    relabeling: ClassVar[dict[str, str]] = {"password": "API key (auth-token)", "host": "API base URL"}
    placeholders: ClassVar[dict[str, str]] = {"host": em.DEFAULT_BASE_URL}

    def __init__(self, electricitymaps_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(electricitymaps_conn_id, **kwargs)

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        api_key = config.password or extras.get("api_key")
        if not api_key:
            raise CarbonAuthError(
                f"connection {self.conn_id!r} has no API key: put it in the password field",
                provider=self.provider,
            )
        config.password = str(api_key)
        emission = extra_choice(extras, "emission_factor_type", em.EMISSION_FACTOR_TYPES, self.provider)
        horizon = int(
            extra_number(
                extras, "horizon_hours", 24, self.provider, minimum=1, maximum=em.FORECAST_HORIZONS[-1], integer=True
            )
        )
        config.options = {
            "em_options": em.EMOptions(
                emission_factor_type=emission,
                disable_estimations=extra_bool(extras, "disable_estimations", False, self.provider),
            ),
            "horizon_hours": em.pick_horizon(timedelta(hours=horizon)),
            "test_zone": str(extras.get("test_zone") or "DE"),
        }
        config.signal = emission + ("-measured" if config.options["em_options"].disable_estimations else "")

    def classify(self) -> ErrorClassifier:
        """Return the classifier that tells a 401 rate limit from bad credentials."""
        return em.classify_error

    def _source(self, config: HookConfig) -> em.ElectricityMaps:
        return em.ElectricityMaps(str(config.password), config.options["em_options"])

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        return self._source(config).latest(zone)

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> int:
        if end is None:
            return config.options["horizon_hours"]
        return em.pick_horizon(end - now)

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        return self._source(config).forecast(zone, request)

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        # /history (free tier) covers the last 24 hours; older ranges need /past-range.
        if start >= now - HISTORY_WINDOW:
            return self._source(config).history(zone)
        return self._source(config).past_range(zone, start, end)

    def _locate(self, config: HookConfig, latitude: float, longitude: float) -> Flow[str]:
        return self._source(config).locate(latitude, longitude)

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        zone = config.options["test_zone"]
        try:
            series = yield from self._source(config).latest(zone)
        except CarbonNoAccessError as exc:
            return f"API key accepted, but the plan does not cover zone {zone}: {exc.message}"
        return f"Connected: {zone} is at {series.values[-1]:.0f} gCO2eq/kWh"
