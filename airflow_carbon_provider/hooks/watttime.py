"""Airflow hook for the WattTime API v3 (connection type ``watttime``).

.. seealso:: :ref:`howto/connection:watttime`
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, ClassVar

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.exceptions import CarbonAuthError
from airflow_carbon_provider.hooks.base import (
    BaseCarbonHook,
    ConnField,
    HookConfig,
    extra_choice,
    extra_number,
)
from airflow_carbon_provider.sources import watttime as wt
from airflow_carbon_provider.sources._flow import Client, Flow
from airflow_carbon_provider.sources._http import ErrorClassifier

__all__ = ["WattTimeHook"]

SIGNAL_TYPES = ("co2_moer", "co2_aoer")


class WattTimeHook(BaseCarbonHook):
    """Read marginal (``co2_moer``) or average (``co2_aoer``) emission rates from WattTime.

    Login name and password go in the connection's login and password; the short-lived
    token obtained from ``/login`` is masked the moment it arrives, shared by every hook of
    the same account in the process, renewed 5 minutes before it expires and once on a 401.
    The host, when set, replaces ``https://api.watttime.org``.

    :param watttime_conn_id: the connection to use.
    """

    conn_name_attr = "watttime_conn_id"
    default_conn_name = "watttime_default"
    conn_type = "watttime"
    hook_name = "WattTime"

    provider = wt.PROVIDER
    default_base_url = wt.DEFAULT_BASE_URL
    default_max_staleness: ClassVar[timedelta | None] = timedelta(minutes=30)
    default_ttl: ClassVar[dict[str, float]] = {"current": 60, "forecast": 300, "history": 3600}
    provider_fields = (
        ConnField(
            "signal_type",
            "Signal type",
            "string",
            "co2_moer",
            "co2_moer: marginal emission rate (forecasts and history); co2_aoer: average (history only).",
            enum=SIGNAL_TYPES,
        ),
        ConnField(
            "horizon_hours",
            "Forecast horizon (hours)",
            "integer",
            24,
            "Default forecast horizon, 1 to 72 hours.",
        ),
    )
    hidden_fields = ("schema", "port", "extra")
    relabeling: ClassVar[dict[str, str]] = {"login": "Username", "host": "API base URL"}
    placeholders: ClassVar[dict[str, str]] = {"host": wt.DEFAULT_BASE_URL}

    def __init__(self, watttime_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(watttime_conn_id, **kwargs)

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        if not config.login or not config.password:
            raise CarbonAuthError(
                f"connection {self.conn_id!r} needs the WattTime username in login and the password "
                "in password",
                provider=self.provider,
            )
        # The username is a credential too, and so is the Basic header built from the pair.
        config.secrets = (*config.secrets, *wt.login_secrets(config.login, config.password))
        signal = extra_choice(extras, "signal_type", SIGNAL_TYPES, self.provider)
        horizon = int(
            extra_number(
                extras, "horizon_hours", 24, self.provider, minimum=1, maximum=wt.MAX_FORECAST_HOURS, integer=True
            )
        )
        config.signal = signal
        config.options = {"signal_type": signal, "horizon_hours": horizon}

    def classify(self) -> ErrorClassifier:
        """Return WattTime's error classifier."""
        return wt.classify_error

    def _source(self, config: HookConfig) -> wt.WattTime:
        tokens = wt.shared_token_state(config.base_url, str(config.login), str(config.password))
        return wt.WattTime(
            str(config.login), str(config.password), signal_type=config.options["signal_type"], tokens=tokens
        )

    def client(self) -> Client:
        """Return a synchronous client for the endpoints outside the protocol (my-access...).

        ``hook.client().region_from_loc(lat, lon)`` runs the flow of
        :class:`~airflow_carbon_provider.sources.watttime.WattTime` of that name.
        """
        config = self.get_config()
        return Client(self.driver(config), self._source(config))

    async def aclient(self) -> Client:
        """Return an asynchronous client for the same endpoints (each call returns an awaitable)."""
        config = await self.aget_config()
        return Client(self.adriver(config), self._source(config))

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        source = self._source(config)
        if config.options["signal_type"] == "co2_aoer":
            return _last((yield from source.historical(zone, now - timedelta(hours=1), now)))
        return _first((yield from source.forecast(zone, horizon_hours=0)))

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> int:
        if end is None:
            return config.options["horizon_hours"]
        hours = math.ceil((end - now).total_seconds() / 3600)
        return max(1, min(hours, wt.MAX_FORECAST_HOURS))

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        return self._source(config).forecast(zone, horizon_hours=request)

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        return self._source(config).historical(zone, start, end)

    def _locate(self, config: HookConfig, latitude: float, longitude: float) -> Flow[str]:
        info = yield from self._source(config).region_from_loc(latitude, longitude)
        return info.region

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        access = yield from self._source(config).my_access()
        regions = sum(len(r) for r in access.values())
        return f"Connected: the account may use {regions} region/signal combinations"


def _first(series: IntensitySeries) -> IntensitySeries:
    return series.window_ts(series.bounds[0], series.bounds[1])


def _last(series: IntensitySeries) -> IntensitySeries:
    return series.window_ts(series.bounds[-2], series.bounds[-1])
