"""The protocol every carbon-intensity hook implements, and the base class they share.

A hook reads its Airflow connection lazily, on the first call that needs it (never in
``__init__``, which may run inside the triggerer's event loop), with the async connection
getter in the ``aget_*`` methods. Answers go through the shared
:class:`~airflow_carbon_provider.hooks.cache.IntensityCache`; current values and forecasts
are checked for staleness before they are returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from airflow.sdk import BaseHook

from airflow_carbon_provider.core.durations import format_duration, parse_duration
from airflow_carbon_provider.core.signals import IntensitySeries, SignalError, ensure_utc
from airflow_carbon_provider.exceptions import (
    CarbonConfigError,
    CarbonDataError,
    CarbonNoDataError,
    CarbonUsageError,
)
from airflow_carbon_provider.hooks._compat import mask_secrets
from airflow_carbon_provider.hooks.cache import CacheKey, IntensityCache, check_fresh, is_fresh, shared_cache
from airflow_carbon_provider.sources._http import (
    AsyncHttp,
    ErrorClassifier,
    RetryPolicy,
    SyncHttp,
    strip_userinfo,
    url_credentials,
)

if TYPE_CHECKING:
    import aiohttp
    import requests

__all__ = ["BaseCarbonHook", "CarbonIntensitySource", "ConnField", "HookConfig"]


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


@dataclass(frozen=True)
class ConnField:
    """One extra field of a connection form, described once for both Airflow form APIs.

    :param name: the key in the connection's extra.
    :param label: the label shown in the form.
    :param kind: ``string``, ``password``, ``integer``, ``number`` or ``boolean``.
    :param default: the value used when the extra is absent.
    :param description: help text under the field.
    :param enum: the allowed values, for string fields that have a fixed set.
    """

    name: str
    label: str
    kind: str = "string"
    default: Any = None
    description: str | None = None
    enum: tuple[str, ...] | None = None

    def provider_info(self) -> dict[str, Any]:
        """Return this field as a ``conn-fields`` entry for ``get_provider_info()`` (Airflow 3.2+)."""
        json_type = {"password": "string"}.get(self.kind, self.kind)
        schema: dict[str, Any] = {"type": [json_type, "null"]}
        if self.kind == "password":
            schema["format"] = "password"
        if self.default is not None:
            schema["default"] = self.default
        if self.enum:
            schema["enum"] = list(self.enum)
        entry: dict[str, Any] = {"label": self.label, "schema": schema}
        if self.description:
            entry["description"] = self.description
        return entry


@dataclass
class HookConfig:
    """What a hook read from its connection, resolved and validated.

    :param connection_key: the cache's ``connection`` component (conn id and base URL).
    :param signal: the cache's ``signal`` component.
    :param options: provider-specific settings.
    """

    conn_id: str
    base_url: str = field(repr=False)  # may hold user:password@
    policy: RetryPolicy
    max_staleness: timedelta | None
    ttl: dict[str, float]
    signal: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def connection_key(self) -> str:
        """Return the connection component of cache keys (no credentials in it)."""
        return f"{self.conn_id}@{strip_userinfo(self.base_url)}"


COMMON_FIELDS: tuple[ConnField, ...] = (
    ConnField(
        "timeout",
        "Request timeout (seconds)",
        "number",
        30,
        "Seconds to wait for one HTTP answer before it counts as a timeout.",
    ),
    ConnField(
        "max_retries",
        "Retries",
        "integer",
        3,
        "Retries after a timeout, a 5xx or a short Retry-After, with exponential backoff.",
    ),
    ConnField(
        "max_staleness",
        "Maximum data age",
        "string",
        None,
        "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
    ),
    ConnField(
        "cache_ttl",
        "Cache lifetime",
        "string",
        None,
        "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
    ),
)


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
        self._sync_http: SyncHttp | None = None

    # -- connection form ---------------------------------------------------------------

    @classmethod
    def conn_fields(cls) -> tuple[ConnField, ...]:
        """Return every extra field of this connection type's form."""
        return (*cls.provider_fields, *COMMON_FIELDS)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return connection widgets to add to the connection form (Airflow before 3.2)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, PasswordField, StringField
        from wtforms.validators import Optional, any_of

        widgets: dict[str, Any] = {}
        for spec in cls.conn_fields():
            kwargs: dict[str, Any] = {"description": spec.description or ""}
            if spec.default is not None:
                kwargs["default"] = spec.default
            if spec.kind == "password":
                widgets[spec.name] = PasswordField(
                    lazy_gettext(spec.label), widget=BS3PasswordFieldWidget(), **kwargs
                )
            elif spec.kind == "boolean":
                widgets[spec.name] = BooleanField(lazy_gettext(spec.label), **kwargs)
            elif spec.kind == "integer":
                widgets[spec.name] = IntegerField(
                    lazy_gettext(spec.label), widget=BS3TextFieldWidget(), validators=[Optional()], **kwargs
                )
            else:
                validators = [Optional(), any_of(list(spec.enum))] if spec.enum else [Optional()]
                widgets[spec.name] = StringField(
                    lazy_gettext(spec.label), widget=BS3TextFieldWidget(), validators=validators, **kwargs
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return custom field behaviour: hidden standard fields, labels and placeholders."""
        return {
            "hidden_fields": list(cls.hidden_fields),
            "relabeling": dict(cls.relabeling),
            "placeholders": dict(cls.placeholders),
        }

    @classmethod
    def provider_info_entry(cls) -> dict[str, Any]:
        """Return this hook's ``connection-types`` entry as ``get_provider_info()`` declares it."""
        behaviour = cls.get_ui_field_behaviour()
        return {
            "hook-class-name": f"{cls.__module__}.{cls.__qualname__}",
            "hook-name": cls.hook_name,
            "connection-type": cls.conn_type,
            "conn-fields": {spec.name: spec.provider_info() for spec in cls.conn_fields()},
            "ui-field-behaviour": {
                "hidden-fields": behaviour["hidden_fields"],
                "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"],
            },
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
        extras = dict(extras)
        base_url = self._base_url(host, port, extras)
        low, high = TIMEOUT_RANGE
        timeout = extra_number(extras, "timeout", 30.0, self.provider, minimum=low, maximum=high)
        low, high = RETRIES_RANGE
        retries = int(extra_number(extras, "max_retries", 3, self.provider, minimum=low, maximum=high, integer=True))
        policy = self.retry_policy or RetryPolicy(
            timeout=timeout, connect_timeout=min(timeout, 10.0), max_attempts=retries + 1
        )
        if self.max_staleness is not None:
            max_staleness: timedelta | None = self.max_staleness
        elif extras.get("max_staleness") not in (None, ""):
            max_staleness = extra_duration(
                extras, "max_staleness", timedelta(0), self.provider, maximum=MAX_STALENESS_LIMIT
            )
        else:
            max_staleness = self.default_max_staleness
        ttl = dict(self.default_ttl)
        if extras.get("cache_ttl") not in (None, ""):
            seconds = extra_duration(
                extras, "cache_ttl", timedelta(0), self.provider, maximum=CACHE_TTL_LIMIT
            ).total_seconds()
            ttl = dict.fromkeys(ttl, seconds)
        api_key = extras.get("api_key")
        config = HookConfig(
            conn_id=self.conn_id,
            base_url=base_url,
            policy=policy,
            max_staleness=max_staleness,
            ttl=ttl,
            signal="",
            login=login or None,
            password=password or None,
            secrets=tuple(
                s for s in (password, api_key if isinstance(api_key, str) else None, *url_credentials(base_url)) if s
            ),
        )
        self._configure(config, extras)
        return config

    def _base_url(self, host: str | None, port: int | None, extras: Mapping[str, Any]) -> str:
        if not host:
            return self.default_base_url
        host = host.strip().rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        if port:
            authority = host.split("://", 1)[1].split("/", 1)[0]
            if ":" not in authority.rsplit("]", 1)[-1]:
                scheme, rest = host.split("://", 1)
                netloc, _, path = rest.partition("/")
                host = f"{scheme}://{netloc}:{port}" + (f"/{path}" if path else "")
        return host

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
        if not _is_not_found(exc):
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

    def sync_http(self, config: HookConfig) -> SyncHttp:
        """Return the hook's synchronous transport, created once."""
        if self._sync_http is None:
            self._sync_http = SyncHttp(
                provider=self.provider,
                base_url=config.base_url,
                policy=config.policy,
                classify=self.classify(),
                session=self.requests_session,
                secrets=config.secrets,
            )
        return self._sync_http

    def async_http(self, config: HookConfig) -> AsyncHttp:
        """Return an asynchronous transport (cheap; sessions are per request or the caller's)."""
        return AsyncHttp(
            provider=self.provider,
            base_url=config.base_url,
            policy=config.policy,
            classify=self.classify(),
            session=self.aiohttp_session,
            secrets=config.secrets,
        )

    # -- what each provider implements ---------------------------------------------------

    def _fetch_current(self, config: HookConfig, zone: str, now: datetime) -> IntensitySeries:
        raise NotImplementedError

    async def _afetch_current(self, config: HookConfig, zone: str, now: datetime) -> IntensitySeries:
        raise NotImplementedError

    def _forecast_range(self, config: HookConfig, now: datetime, end: datetime | None) -> Any:
        """Return the hashable request parameter that selects the forecast to fetch."""
        raise NotImplementedError

    def _fetch_forecast(self, config: HookConfig, zone: str, now: datetime, request: Any) -> IntensitySeries:
        raise NotImplementedError

    async def _afetch_forecast(
        self, config: HookConfig, zone: str, now: datetime, request: Any
    ) -> IntensitySeries:
        raise NotImplementedError

    def _fetch_history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> IntensitySeries:
        raise NotImplementedError

    async def _afetch_history(
        self, config: HookConfig, zone: str, now: datetime, start: datetime, end: datetime
    ) -> IntensitySeries:
        raise NotImplementedError

    def _test_call(self, config: HookConfig) -> str:
        raise NotImplementedError

    # -- the protocol --------------------------------------------------------------------

    def _now(self) -> datetime:
        return ensure_utc(self.clock(), "clock()")

    def _key(self, config: HookConfig, zone: str, endpoint: str, range_: Any = None) -> CacheKey:
        return CacheKey(config.connection_key, zone, config.signal, endpoint, range_)

    def _cached(
        self,
        key: CacheKey,
        fetch: Callable[[], IntensitySeries],
        ttl: float,
        usable: Callable[[IntensitySeries], bool] | None = None,
    ) -> IntensitySeries:
        if self.cache is None:
            return fetch()
        return self.cache.get(key, fetch, ttl, usable=usable)

    async def _acached(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[IntensitySeries]],
        ttl: float,
        usable: Callable[[IntensitySeries], bool] | None = None,
    ) -> IntensitySeries:
        if self.cache is None:
            return await fetch()
        return await self.cache.aget(key, fetch, ttl, usable=usable)

    @staticmethod
    def _usable(config: HookConfig, now: datetime) -> Callable[[IntensitySeries], bool]:
        """Return the test that makes the cache fetch a stale entry again (see the cache docs)."""
        return lambda series: is_fresh(series, now=now, max_age=config.max_staleness)

    def _fresh(
        self, series: IntensitySeries, config: HookConfig, what: str, now: datetime
    ) -> IntensitySeries:
        return check_fresh(series, now=now, max_age=config.max_staleness, what=what, provider=self.provider)

    def get_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now (cached; raises StaleDataError if too old)."""
        with self._typed_errors(zone):
            config, now = self.get_config(), self._now()
            key = self._key(config, zone, "current")
            series = self._cached(
                key, lambda: self._fetch_current(config, zone, now), config.ttl["current"], self._usable(config, now)
            )
            return self._fresh(series, config, "current", now)

    async def aget_current(self, zone: str) -> IntensitySeries:
        """Return the interval in force now, without blocking the event loop."""
        with self._typed_errors(zone):
            config, now = await self.aget_config(), self._now()
            key = self._key(config, zone, "current")
            series = await self._acached(
                key, lambda: self._afetch_current(config, zone, now), config.ttl["current"], self._usable(config, now)
            )
            return self._fresh(series, config, "current", now)

    def get_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, clipped to ``[start, end)`` when given."""
        with self._typed_errors(zone):
            config, now = self.get_config(), self._now()
            start, end = _aware(start, "start"), _aware(end, "end")
            request = self._forecast_range(config, now, end)
            key = self._key(config, zone, "forecast", request)
            series = self._cached(
                key,
                lambda: self._fetch_forecast(config, zone, now, request),
                config.ttl["forecast"],
                self._usable(config, now),
            )
            return _clip(self._fresh(series, config, "forecast", now), start, end, self.provider)

    async def aget_forecast(
        self, zone: str, start: datetime | None = None, end: datetime | None = None
    ) -> IntensitySeries:
        """Return the latest forecast, without blocking the event loop."""
        with self._typed_errors(zone):
            config, now = await self.aget_config(), self._now()
            start, end = _aware(start, "start"), _aware(end, "end")
            request = self._forecast_range(config, now, end)
            key = self._key(config, zone, "forecast", request)
            series = await self._acached(
                key,
                lambda: self._afetch_forecast(config, zone, now, request),
                config.ttl["forecast"],
                self._usable(config, now),
            )
            return _clip(self._fresh(series, config, "forecast", now), start, end, self.provider)

    def get_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)`` (cached by range; never stale-checked)."""
        with self._typed_errors(zone):
            config, now = self.get_config(), self._now()
            start, end = _range(start, end)
            key = self._key(config, zone, "history", (start.isoformat(), end.isoformat()))
            series = self._cached(
                key, lambda: self._fetch_history(config, zone, now, start, end), config.ttl["history"]
            )
            return _clip(series, start, end, self.provider)

    async def aget_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return measured values over ``[start, end)``, without blocking the event loop."""
        with self._typed_errors(zone):
            config, now = await self.aget_config(), self._now()
            start, end = _range(start, end)
            key = self._key(config, zone, "history", (start.isoformat(), end.isoformat()))
            series = await self._acached(
                key, lambda: self._afetch_history(config, zone, now, start, end), config.ttl["history"]
            )
            return _clip(series, start, end, self.provider)

    def test_connection(self) -> tuple[bool, str]:
        """Make one cheap real call with the connection; return (success, message)."""
        try:
            with self._typed_errors(None):
                return True, self._test_call(self.get_config())
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


def _is_not_found(exc: BaseException) -> bool:
    # The task SDK raises AirflowNotFoundException (or a subclass) for an unknown conn id.
    return any(cls.__name__ == "AirflowNotFoundException" for cls in type(exc).__mro__)


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


# Ranges of the shared extras: wide enough for any real use, narrow enough that every value
# converts to a datetime, a timedelta and a socket timeout without overflowing.
TIMEOUT_RANGE = (0.001, 600.0)
RETRIES_RANGE = (0, 10)
MAX_STALENESS_LIMIT = timedelta(days=30)
CACHE_TTL_LIMIT = timedelta(days=1)


def _shown(raw: Any) -> str:
    """Return a short repr of an extra's value for an error message (never hundreds of digits)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) >= 10**30:
        return "an integer of more than 30 digits"
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def extra_number(
    extras: Mapping[str, Any],
    name: str,
    default: float,
    provider: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
) -> float:
    """Return a finite numeric extra in ``[minimum, maximum]`` (a whole number if ``integer``).

    Anything else (a string that is not a number, ``inf``, ``nan``, ``1e20``, a boolean) is a
    one-line :class:`CarbonConfigError` that names the key and the accepted range.
    """
    raw = extras.get(name)
    if raw is None or raw == "":
        return float(default)
    what = "a whole number" if integer else "a number"
    fix = f"set it to {what} from {minimum:g} to {maximum:g}, or remove it for the default {default:g}"
    try:
        if isinstance(raw, bool):
            raise TypeError
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is not {what}; {fix}", provider=provider) from None
    if not minimum <= value <= maximum or (integer and value != int(value)):  # NaN fails too
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is out of range; {fix}", provider=provider)
    return value


def extra_duration(
    extras: Mapping[str, Any],
    name: str,
    default: timedelta,
    provider: str,
    *,
    maximum: timedelta,
    minimum: timedelta = timedelta(0),
) -> timedelta:
    """Return a duration extra (``'48h'``, or a number of seconds) in ``[minimum, maximum]``."""
    raw = extras.get(name)
    if raw is None or raw == "":
        return default
    fix = (
        f"write a duration from {format_duration(minimum) if minimum else '0s'} to {format_duration(maximum)} "
        "as a number and a unit s, m, h or d (e.g. '2h'), or a number of seconds"
    )
    try:
        if isinstance(raw, bool):
            raise TypeError
        if isinstance(raw, (int, float)):
            value = timedelta(seconds=float(raw))
        else:
            value = parse_duration(str(raw), f"extra {name!r}")
    except (TypeError, ValueError, OverflowError):  # DurationError is a ValueError
        raise CarbonConfigError(
            f"extra {name!r} = {_shown(raw)} is not a duration; {fix}", provider=provider
        ) from None
    if not minimum <= value <= maximum:
        raise CarbonConfigError(f"extra {name!r} = {_shown(raw)} is out of range; {fix}", provider=provider)
    return value


def extra_bool(extras: Mapping[str, Any], name: str, default: bool, provider: str) -> bool:
    """Return a boolean extra, accepting JSON booleans and ``true``/``false`` strings."""
    raw = extras.get(name)
    if raw in (None, ""):
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return raw.strip().lower() in ("true", "1", "yes")
    raise CarbonConfigError(f"extra {name!r} = {raw!r} is not true or false", provider=provider)


def extra_choice(extras: Mapping[str, Any], name: str, choices: tuple[str, ...], provider: str) -> str:
    """Return a string extra that must be one of ``choices`` (the first is the default)."""
    raw = extras.get(name)
    if raw in (None, ""):
        return choices[0]
    if raw not in choices:
        raise CarbonConfigError(f"extra {name!r} = {raw!r} is not one of {choices}", provider=provider)
    return str(raw)
