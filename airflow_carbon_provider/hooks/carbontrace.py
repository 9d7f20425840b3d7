"""Airflow hook that replays a trace file as if it were a live API (connection type ``carbontrace``).

.. seealso:: :ref:`howto/connection:carbontrace`
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from airflow_carbon_provider.core.signals import IntensitySeries, SignalError, SignalKind
from airflow_carbon_provider.core.traces import parse_utc
from airflow_carbon_provider.exceptions import CarbonConfigError
from airflow_carbon_provider.hooks._compat import carbon_conf
from airflow_carbon_provider.hooks.base import (
    BaseCarbonHook,
    ConnField,
    HookConfig,
    extra_bool,
    extra_choice,
    extra_duration,
)
from airflow_carbon_provider.sources import carbontrace as ct
from airflow_carbon_provider.sources._flow import Flow, local

__all__ = ["TRACE_ALLOWED_DIRS", "CarbonTraceHook", "trace_allowed_dirs"]

TRACE_ALLOWED_DIRS = "trace_allowed_dirs"


class CarbonTraceHook(BaseCarbonHook):
    """Serve carbon intensity from a normalized trace file, mapped onto the wall clock.

    The embedded default: no account, no network. Without a connection (or with an empty
    one) it replays the trace bundled with the package, with perfect forecasts. See
    :mod:`airflow_carbon_provider.sources.carbontrace` for how "now" maps onto the trace.

    :param carbontrace_conn_id: the connection to use (it may not exist).
    """

    conn_name_attr = "carbontrace_conn_id"
    default_conn_name = "carbontrace_default"
    conn_type = "carbontrace"
    hook_name = "Carbon trace replay"

    provider = ct.PROVIDER
    default_max_staleness: ClassVar[timedelta | None] = timedelta(hours=2)
    default_ttl: ClassVar[dict[str, float]] = {"current": 60, "forecast": 60, "history": 300}
    provider_fields = (
        ConnField(
            "path",
            "Trace file",
            "string",
            None,
            "Normalized CSV (timestamp_utc,zone,gco2_per_kwh); empty: the trace bundled with the package.",
        ),
        ConnField(
            "forecast",
            "Forecast model",
            "string",
            "perfect",
            "perfect, noisy:<MAPE percent>[:<seed>] (e.g. noisy:10:1) or archive:<file>.",
        ),
        ConnField(
            "replay_start",
            "Replay start",
            "string",
            None,
            "The trace instant (ISO-8601 UTC) that the anchor replays; empty: the trace's start.",
        ),
        ConnField(
            "anchor",
            "Anchor",
            "string",
            ct.DEFAULT_ANCHOR.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "The wall-clock instant (ISO-8601 UTC) that replays the replay start.",
        ),
        ConnField("loop", "Loop", "boolean", True, "Wrap around in whole-day laps instead of running out."),
        ConnField("horizon", "Forecast horizon", "string", "48h", "How far forecasts reach, e.g. '48h'."),
        ConnField(
            "signal_kind",
            "Signal kind",
            "string",
            "average",
            "What the trace measures: average, or marginal (e.g. a WattTime MOER trace).",
            enum=("average", "marginal"),
        ),
    )
    hidden_fields = ("schema", "port", "host", "login", "password", "extra")
    common_fields = ("max_staleness", "cache_ttl")  # a file has no request timeout and nothing to retry

    connection_optional = True

    def __init__(self, carbontrace_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(carbontrace_conn_id, **kwargs)

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        kind = extra_choice(extras, "signal_kind", ("average", "marginal"), self.provider)
        horizon = extra_duration(
            extras, "horizon", ct.DEFAULT_HORIZON, self.provider, minimum=ct.MIN_HORIZON, maximum=ct.MAX_HORIZON
        )
        replay = ct.load_replay(
            extras.get("path") or None,
            allowed_dirs=trace_allowed_dirs(),
            forecast=str(extras.get("forecast") or "perfect"),
            replay_start=_instant(extras, "replay_start"),
            anchor=_instant(extras, "anchor") or ct.DEFAULT_ANCHOR,
            loop=extra_bool(extras, "loop", True, self.provider),
            horizon=horizon,
            kind=SignalKind(kind),
        )
        config.base_url = f"file:{extras.get('path') or 'bundled'}"
        config.signal = f"{kind}:{replay.forecast_spec}"
        config.options = {"replay": replay, "horizon": horizon}

    @staticmethod
    def replay_of(config: HookConfig) -> ct.TraceReplay:
        """Return the trace replay a config holds."""
        return config.options["replay"]

    async def aforecast_error(self) -> tuple[Callable[[float], float], str] | None:
        """Return the replayed forecast model's error by lead (zero for ``perfect``)."""
        replay = self.replay_of(await self.aget_config())
        sigma = getattr(replay.model, "sigma", None)
        return None if sigma is None else (sigma, f"the replayed forecast model {replay.forecast_spec}")

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        return local(lambda: self.replay_of(config).current(zone, now))

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> Any:
        horizon = config.options["horizon"]
        if end is not None:
            horizon = min(max(end - now, timedelta(minutes=5)), horizon)
        # Forecasts are issued at the replayed "now"; one per minute keeps the cache useful.
        return (now.replace(second=0, microsecond=0).isoformat(), horizon.total_seconds())

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        return local(lambda: self.replay_of(config).forecast(zone, now, timedelta(seconds=request[1])))

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        return local(lambda: self.replay_of(config).history(zone, now, start, end))

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        return local(lambda: self._describe(self.replay_of(config)))

    def _describe(self, replay: ct.TraceReplay) -> str:
        now = self._now()
        zone = replay.zones[0]
        value = replay.current(zone, now).values[0]
        return (
            f"Trace has zones {', '.join(replay.zones)}; now replays {replay.clock.replayed(now).isoformat()} "
            f"({zone} at {value:.0f} gCO2eq/kWh)"
        )


def trace_allowed_dirs() -> list[str]:
    """Return the directories of ``[carbon] trace_allowed_dirs`` (comma-separated); empty: no limit.

    Whatever the option says, a trace must be a regular ``.csv`` file, and the bundled trace
    is always allowed; see :func:`airflow_carbon_provider.sources.carbontrace.check_trace_path`.
    """
    raw = carbon_conf(TRACE_ALLOWED_DIRS)
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def _instant(extras: dict[str, Any], name: str) -> datetime | None:
    raw = extras.get(name)
    if raw in (None, ""):
        return None
    try:
        return parse_utc(str(raw))
    except (ValueError, SignalError) as exc:
        raise CarbonConfigError(f"extra {name!r} = {raw!r}: {exc}", provider=ct.PROVIDER) from None
