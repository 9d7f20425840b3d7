"""The protocol every carbon-intensity hook implements, and the base class they share.

A hook reads its Airflow connection lazily, on the first call that needs it (never in
``__init__``, which may run inside the triggerer's event loop), with the async getter in the
``aget_*`` methods. A provider's hook implements each operation once, as a flow
(:mod:`~airflow_carbon_provider.sources._flow`): ``_current``, ``_forecast``, ``_history``,
``_test_flow``. The base class plans each call once (cache key, lifetime, staleness,
clipping) and runs the flow with the sync driver in ``get_*`` and the async one in
``aget_*``. Answers go through the shared :class:`~airflow_carbon_provider.hooks.cache.IntensityCache`;
current values and forecasts are checked for staleness before they are returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from airflow.sdk import BaseHook

from airflow_carbon_provider.core.durations import parse_duration
from airflow_carbon_provider.core.signals import IntensitySeries, SignalError, ensure_utc
from airflow_carbon_provider.exceptions import (
    CarbonConfigError,
    CarbonDataError,
    CarbonNoDataError,
    CarbonUnsupportedError,
    CarbonUsageError,
)
from airflow_carbon_provider.hooks._compat import (
    amask_secret,
    is_connection_not_found,
    mask_secret,
    mask_secrets,
)
from airflow_carbon_provider.hooks._config import HookConfig, base_url_from, resolve_config
from airflow_carbon_provider.hooks._fields import (
    COMMON_FIELDS,
    ConnField,
    extra_bool,
    extra_choice,
    extra_duration,
    extra_number,
    form_widgets,
)
from airflow_carbon_provider.hooks.cache import CacheKey, IntensityCache, check_fresh, is_fresh, shared_cache
from airflow_carbon_provider.sources._drivers import AsyncDriver, SyncDriver
from airflow_carbon_provider.sources._flow import Flow
from airflow_carbon_provider.sources._http import ErrorClassifier, RetryPolicy

if TYPE_CHECKING:
    import aiohttp
    import requests

__all__ = [
    "BaseCarbonHook",
    "CarbonIntensitySource",
    "ConnField",
    "HookConfig",
    "extra_bool",
    "extra_choice",
    "extra_duration",
    "extra_number",
]


@runtime_checkable
class CarbonIntensitySource(Protocol):
    """What the operators, sensors and triggers need from any carbon-intensity source.

    Every method returns an :class:`~airflow_carbon_provider.core.signals.IntensitySeries` in
    gCO2eq/kWh with its signal kind (average or marginal), which starts and ends with known
    data and marks what the source did not know as gaps, or raises a subclass of
    :class:`~airflow_carbon_provider.exceptions.CarbonDataError`. Datetimes must be
    timezone-aware.
    """

    def get_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now."""
        ...

    def get_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, clipped to ``[start, end)`` when given."""
        ...

    def get_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)``."""
        ...

    async def aget_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now, without blocking the event loop."""
        ...

    async def aget_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, without blocking the event loop."""
        ...

    async def aget_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)``, without blocking the event loop."""
        ...


class BaseCarbonHook(BaseHook):
    """Shared machinery of the carbon-intensity hooks; see :class:`CarbonIntensitySource`.

    :param conn_id: the Airflow connection to read (lazily, at the first call).
    :param cache: the cache to use; ``None`` disables caching (every call is a request).
    :param clock: returns the current UTC time (injectable for tests and replays).
    :param retry_policy: overrides the timeouts and retries the connection configures.
    :param max_staleness: overrides the connection's ``max_staleness``; ``timedelta(0)`` is
        strict, ``None`` keeps the connection's (or the provider's default).
    :param aiohttp_session: a session owned by the caller, reused by the async methods.
    :param requests_session: a session owned by the caller, reused by the sync methods.
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]

    provider: ClassVar[str]
    default_base_url: ClassVar[str] = ""
    default_max_staleness: ClassVar[timedelta | None] = timedelta(hours=2)
    default_ttl: ClassVar[dict[str, float]] = {"current": 300, "forecast": 900, "history": 3600}
    provider_fields: ClassVar[tuple[ConnField, ...]] = ()
    common_fields: ClassVar[tuple[str, ...]] = tuple(spec.name for spec in COMMON_FIELDS)
    hidden_fields: ClassVar[tuple[str, ...]] = ("schema", "port", "extra")
    relabeling: ClassVar[dict[str, str]] = {}
    placeholders: ClassVar[dict[str, str]] = {}
    connection_optional: ClassVar[bool] = False

    def __init__(
        self,
        conn_id: str | None = None,
        *,
        cache: IntensityCache | None = shared_cache,
        clock: Callable[[], datetime] | None = None,
        retry_policy: RetryPolicy | None = None,
        max_staleness: timedelta | str | None = None,
        aiohttp_session: aiohttp.ClientSession | None = None,
        requests_session: requests.Session | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name
        setattr(self, self.conn_name_attr, self.conn_id)
        self.cache = cache
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.retry_policy = retry_policy
        self.max_staleness = (
            parse_duration(max_staleness) if isinstance(max_staleness, str) else max_staleness
        )
        self.aiohttp_session = aiohttp_session
        self.requests_session = requests_session
        self._config: HookConfig | None = None
        self._config_lock: asyncio.Lock | None = None
        self._driver: SyncDriver | None = None

    # -- connection form ---------------------------------------------------------------

    @classmethod
    def conn_fields(cls) -> tuple[ConnField, ...]:
        """Return every extra field of this connection type's form: its own, then the common ones it shows."""
        return (*cls.provider_fields, *(spec for spec in COMMON_FIELDS if spec.name in cls.common_fields))

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return connection widgets to add to the connection form (Airflow before 3.2)."""
        return form_widgets(cls.conn_fields())

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return custom field behaviour: hidden standard fields, labels and placeholders."""
        return {
            "hidden_fields": list(cls.hidden_fields),
            "relabeling": dict(cls.relabeling),
            "placeholders": dict(cls.placeholders),
        }

    # -- reading the connection -----------------------------------------------------------

    def _read_config(
        self,
        host: str | None,
        port: int | None,
        login: str | None,
        password: str | None,
        schema: str | None,
        extras: Mapping[str, Any],
    ) -> HookConfig:
        """Resolve the connection's fields and extras into a :class:`HookConfig`."""
        # A common extra the form does not show (a timeout on a trace file) is not read.
        unshown = {spec.name for spec in COMMON_FIELDS} - set(self.common_fields)
        extras = {key: value for key, value in extras.items() if key not in unshown}
        config = resolve_config(
            self.conn_id,
            self.provider,
            base_url=base_url_from(host, port, self.default_base_url),
            login=login,
            password=password,
            extras=extras,
            retry_policy=self.retry_policy,
            max_staleness=self.max_staleness,
            default_max_staleness=self.default_max_staleness,
            default_ttl=self.default_ttl,
        )
        self._configure(config, extras)
        return config

    def _configure(self, config: HookConfig, extras: dict[str, Any]) -> None:
        """Fill the provider-specific part of ``config`` from the connection's extras."""
        raise NotImplementedError

    def get_config(self) -> HookConfig:
        """Return the connection's settings, reading the connection on first use."""
        if self._config is None:
            try:
                conn = self.get_connection(self.conn_id)
            except Exception as exc:
                self._config = self._config_without_connection(exc)
            else:
                config = self._read_config(
                    conn.host, conn.port, conn.login, conn.password, conn.schema, conn.extra_dejson
                )
                mask_secrets(config.secrets)  # before anything can log or raise with them
                self._config = config
        return self._config

    async def aget_config(self) -> HookConfig:
        """Return the connection's settings, reading it with the async getter on first use.

        Concurrent first callers of one hook (many triggers sharing it) wait for a single read.
        """
        if self._config is None:
            from airflow_carbon_provider.hooks._compat import aget_connection_and_extras, amask_secrets

            if self._config_lock is None:
                self._config_lock = asyncio.Lock()
            async with self._config_lock:
                if self._config is None:
                    try:
                        conn, extras = await aget_connection_and_extras(self, self.conn_id)
                    except Exception as exc:
                        self._config = self._config_without_connection(exc)
                    else:
                        config = self._read_config(
                            conn.host, conn.port, conn.login, conn.password, conn.schema, extras
                        )
                        await amask_secrets(config.secrets)
                        self._config = config
        assert self._config is not None
        return self._config

    def _config_without_connection(self, exc: Exception) -> HookConfig:
        """Use the defaults when an optional default connection is absent; else raise typed."""
        if not is_connection_not_found(exc):
            raise exc
        if self.connection_optional and self.conn_id == self.default_conn_name:
            return self._read_config(None, None, None, None, None, {})
        raise CarbonConfigError(
            f"connection {self.conn_id!r} is not defined; create it (type {self.conn_type!r}) in the UI, "
            f"or as the environment variable AIRFLOW_CONN_{self.conn_id.upper()}",
            provider=self.provider,
        ) from exc

    def classify(self) -> ErrorClassifier | None:
        """Return the provider's error classifier (None: the shared default)."""
        return None

    def driver(self, config: HookConfig) -> SyncDriver:
        """Return the hook's synchronous driver, created once (so its requests session is reused)."""
        if self._driver is None:
            self._driver = SyncDriver(
                session=self.requests_session, on_secret=mask_secret, **self._driving(config)
            )
        return self._driver

    def adriver(self, config: HookConfig) -> AsyncDriver:
        """Return an asynchronous driver (cheap; sessions are per attempt, or the caller's)."""
        return AsyncDriver(session=self.aiohttp_session, on_secret=amask_secret, **self._driving(config))

    def _driving(self, config: HookConfig) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "base_url": config.base_url,
            "policy": config.policy,
            "classify": self.classify(),
            "secrets": config.secrets,
        }

    # -- what each provider implements, once: flows --------------------------------------

    def _current(self, config: HookConfig, zone: str, now: datetime) -> Flow[IntensitySeries]:
        """Return the flow that fetches the interval in force at ``now``."""
        raise NotImplementedError

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> Any:
        """Return the hashable request parameter that selects the forecast to fetch."""
        raise NotImplementedError

    def _forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> Flow[IntensitySeries]:
        """Return the flow that fetches the forecast ``request`` selects."""
        raise NotImplementedError

    def _history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> Flow[IntensitySeries]:
        """Return the flow that fetches measured values over ``[start, end)``."""
        raise NotImplementedError

    def _test_flow(self, config: HookConfig) -> Flow[str]:
        """Return the flow of one cheap real call, whose result is the test's message."""
        raise NotImplementedError

    def _locate(self, config: HookConfig, latitude: float, longitude: float) -> Flow[str]:
        """Return the flow that asks the source which of its zones covers a location."""
        raise CarbonUnsupportedError(
            f"{self.hook_name} has no location lookup; name the zone by its key", provider=self.provider
        )

    # -- the protocol: each call planned once, run by either driver -----------------------

    def _now(self) -> datetime:
        return ensure_utc(self.clock(), "clock()")

    def _key(self, config: HookConfig, zone: str, endpoint: str, range_: Any = None) -> CacheKey:
        return CacheKey(config.connection_key, zone, config.signal, endpoint, range_)

    @staticmethod
    def _usable(config: HookConfig, now: datetime) -> Callable[[IntensitySeries], bool]:
        """Return the test that makes the cache fetch a stale entry again (see the cache docs)."""
        return lambda series: is_fresh(series, now=now, max_age=config.max_staleness)

    def _fresh(
        self, series: IntensitySeries, config: HookConfig, what: str, now: datetime
    ) -> IntensitySeries:
        return check_fresh(series, now=now, max_age=config.max_staleness, what=what, provider=self.provider)

    def _plan_current(self, config: HookConfig, now: datetime, zone: str) -> _Call:
        return _Call(
            key=self._key(config, zone, "current"),
            ttl=config.ttl["current"],
            flow=lambda: self._current(config, zone, now),
            finish=lambda series: self._fresh(series, config, "current", now),
            usable=self._usable(config, now),
        )

    def _plan_forecast(
        self, config: HookConfig, now: datetime, zone: str, start: datetime | None, end: datetime | None
    ) -> _Call:
        start, end = _aware(start, "start"), _aware(end, "end")
        request = self._forecast_range(config, now, end)
        return _Call(
            key=self._key(config, zone, "forecast", request),
            ttl=config.ttl["forecast"],
            flow=lambda: self._forecast(config, zone, now, request),
            finish=lambda series: _clip(
                self._fresh(series, config, "forecast", now), start, end, self.provider
            ),
            usable=self._usable(config, now),
        )

    def _plan_history(
        self, config: HookConfig, now: datetime, zone: str, start: datetime, end: datetime
    ) -> _Call:
        start, end = _range(start, end)
        return _Call(
            key=self._key(config, zone, "history", (start.isoformat(), end.isoformat())),
            ttl=config.ttl["history"],
            flow=lambda: self._history(config, zone, now, start, end),
            finish=lambda series: _clip(series, start, end, self.provider),
        )

    def _cache(self) -> IntensityCache | _Uncached:
        return _UNCACHED if self.cache is None else self.cache  # an empty cache is falsy (len 0)

    def _call(self, zone: str, plan: Callable[..., _Call], *args: Any) -> IntensitySeries:
        with self._typed_errors(zone):
            config = self.get_config()
            call, driver = plan(config, self._now(), zone, *args), self.driver(config)
            series = self._cache().get(
                call.key,
                lambda: self._fetched(config, call, driver.run(call.flow())),
                call.ttl,
                usable=call.usable,
            )
            return call.finish(series)

    async def _acall(self, zone: str, plan: Callable[..., _Call], *args: Any) -> IntensitySeries:
        with self._typed_errors(zone):
            config = await self.aget_config()
            call, driver = plan(config, self._now(), zone, *args), self.adriver(config)

            async def fetch() -> IntensitySeries:
                return self._fetched(config, call, await driver.run(call.flow()))

            return call.finish(await self._cache().aget(call.key, fetch, call.ttl, usable=call.usable))

    def _fetched(self, config: HookConfig, call: _Call, series: IntensitySeries) -> IntensitySeries:
        """Hand a forecast just fetched (once per fetch, not per caller) to the ledger's recorder."""
        if call.key.endpoint == "forecast":
            from airflow_carbon_provider.ledger.forecasts import recorder

            recorder.record(series, source=config.conn_id, provider=self.provider, signal=config.signal)
        return series

    #: Seconds a location lookup's answer is kept: grid zones do not move.
    LOCATION_TTL: ClassVar[float] = 86400.0

    def _location_key(self, config: HookConfig, latitude: float, longitude: float) -> CacheKey:
        return self._key(config, f"{latitude},{longitude}", "location")

    def locate(self, latitude: float, longitude: float) -> str:
        """Return the source's key for the zone that covers a location (cached for a day).

        Raises :class:`~airflow_carbon_provider.exceptions.CarbonUnsupportedError` for a source
        without a location lookup.
        """
        where = f"{latitude},{longitude}"
        with self._typed_errors(where):
            config = self.get_config()
            driver = self.driver(config)
            return self._cache().get(
                self._location_key(config, latitude, longitude),
                lambda: driver.run(self._locate(config, latitude, longitude)),
                self.LOCATION_TTL,
            )

    async def alocate(self, latitude: float, longitude: float) -> str:
        """Return the key for the zone that covers a location, without blocking the event loop."""
        where = f"{latitude},{longitude}"
        with self._typed_errors(where):
            config = await self.aget_config()
            driver = self.adriver(config)

            async def fetch() -> str:
                return await driver.run(self._locate(config, latitude, longitude))

            return await self._cache().aget(
                self._location_key(config, latitude, longitude), fetch, self.LOCATION_TTL
            )

    def get_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now (cached; raises StaleDataError if too old)."""
        return self._call(zone, self._plan_current)

    async def aget_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now, without blocking the event loop."""
        return await self._acall(zone, self._plan_current)

    def get_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, clipped to ``[start, end)`` when given."""
        return self._call(zone, self._plan_forecast, start, end)

    async def aget_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, without blocking the event loop."""
        return await self._acall(zone, self._plan_forecast, start, end)

    async def aforecast_error(self) -> tuple[Callable[[float], float], str] | None:
        """Return this source's forecast error by lead (relative, seconds) and its origin; ``None``: unknown.

        Unknown means planning uses the skill recorded in the ledger, else the calibrated default.
        """
        return None

    def get_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)`` (cached by range; never stale-checked)."""
        return self._call(zone, self._plan_history, start, end)

    async def aget_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)``, without blocking the event loop."""
        return await self._acall(zone, self._plan_history, start, end)

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap real call with the connection; return (success, message)."""
        try:
            with self._typed_errors(None):
                config = self.get_config()
                return True, self.driver(config).run(self._test_flow(config))
        except CarbonDataError as exc:
            return False, str(exc)

    @contextmanager
    def _typed_errors(self, zone: str | None) -> Iterator[None]:
        """Turn the core's ValueErrors (invalid datetimes, series, durations) into typed errors."""
        try:
            yield
        except CarbonDataError:
            raise
        except SignalError as exc:
            raise CarbonNoDataError(str(exc), provider=self.provider, zone=zone) from exc
        except OverflowError as exc:  # a number no check caught: still a typed error, so callers fail open
            raise CarbonDataError(
                f"a number is out of range ({exc}); check the connection's extras and the API's answer",
                provider=self.provider,
                zone=zone,
            ) from exc
        except ValueError as exc:
            if type(exc).__module__.startswith("airflow_carbon_provider.core"):
                raise CarbonConfigError(str(exc), provider=self.provider, zone=zone) from exc
            raise


@dataclass(frozen=True)
class _Call:
    """One protocol call, planned: its cache entry, the flow that fetches it, and its last check.

    :param key: what identifies the answer in the cache.
    :param ttl: seconds the answer stays cached.
    :param flow: makes the flow that fetches the answer (run by the sync or the async driver).
    :param finish: checks and trims the answer (staleness, clipping to the asked range).
    :param usable: whether a cached answer may still be served (see the cache docs).
    """

    key: CacheKey
    ttl: float
    flow: Callable[[], Flow[IntensitySeries]]
    finish: Callable[[IntensitySeries], IntensitySeries]
    usable: Callable[[IntensitySeries], bool] | None = None


class _Uncached:
    """Stands in for the cache when a hook has none: every call fetches."""

    @staticmethod
    def get(key: CacheKey, fetch: Callable[[], Any], ttl: float, *, usable: Any = None) -> Any:
        return fetch()

    @staticmethod
    async def aget(key: CacheKey, fetch: Callable[[], Any], ttl: float, *, usable: Any = None) -> Any:
        return await fetch()


_UNCACHED = _Uncached()


def _aware(moment: datetime | None, what: str) -> datetime | None:
    if moment is None:
        return None
    try:
        return ensure_utc(moment, what)
    except SignalError as exc:
        raise CarbonUsageError(str(exc)) from None


def _range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    lo, hi = _aware(start, "start"), _aware(end, "end")
    if lo is None or hi is None:
        raise CarbonUsageError("history needs both start and end")
    if hi <= lo:
        raise CarbonUsageError(
            f"history range is empty: end {hi.isoformat()} is not after start {lo.isoformat()}"
        )
    return lo, hi


def _clip(
    series: IntensitySeries, start: datetime | None, end: datetime | None, provider: str
) -> IntensitySeries:
    if start is None and end is None:
        return series
    lo, hi = start or series.start, end or series.end
    if lo >= series.end or hi <= series.start:
        raise CarbonNoDataError(
            f"no data between {lo.isoformat()} and {hi.isoformat()} (the answer covers "
            f"{series.start.isoformat()} to {series.end.isoformat()})",
            provider=provider,
            zone=series.zone,
        )
    return series.window(lo, hi)
