"""Typed errors raised by the carbon-intensity sources and hooks.

Every error carries the data a caller needs to decide what to do, as attributes, so nobody
has to parse a message::

    CarbonDataError                     provider, status, zone (all optional)
    ├── CarbonTransportError            the request never got an HTTP answer
    │   └── CarbonTimeoutError          ... because it timed out
    ├── CarbonAPIError                  the API answered with an error status
    │   ├── CarbonAuthError             credentials rejected (401, or 403 at login)
    │   ├── CarbonRateLimitError        too many requests; ``retry_after`` seconds if known
    │   ├── CarbonNoAccessError         the plan does not cover this zone/endpoint (403)
    │   ├── CarbonNotFoundError         no such zone, or no data for it (404)
    │   ├── CarbonRequestError          any other 4xx: the request itself is wrong
    │   └── CarbonServerError           5xx after the retries ran out
    ├── CarbonParseError                a body that is not what the API documents; ``field``
    ├── CarbonNoDataError               a valid answer that holds no usable data for the ask
    ├── CarbonUnsupportedError          the source cannot provide this signal or endpoint
    ├── CarbonConfigError               the Airflow connection is missing or malformed
    ├── CarbonUsageError                a call's own arguments are invalid (naive datetime...)
    └── StaleDataError                  data older than the allowed age; ``series`` attached

Messages never contain a credential: they are built from the status, the zone and the
API's error body, never from request headers, and the clients redact their own secrets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_carbon_provider.core.signals import IntensitySeries

__all__ = [
    "CarbonAPIError",
    "CarbonAuthError",
    "CarbonConfigError",
    "CarbonDataError",
    "CarbonNoAccessError",
    "CarbonNoDataError",
    "CarbonNotFoundError",
    "CarbonParseError",
    "CarbonRateLimitError",
    "CarbonRequestError",
    "CarbonServerError",
    "CarbonTimeoutError",
    "CarbonTransportError",
    "CarbonUnsupportedError",
    "CarbonUsageError",
    "StaleDataError",
]


class CarbonDataError(Exception):
    """Base of every error raised while getting carbon-intensity data.

    :param message: what went wrong, in words a user can act on.
    :param provider: the source (``electricitymaps``, ``watttime``, ``ukcarbonintensity``,
        ``carbontrace``).
    :param status: the HTTP status the API answered with, if any.
    :param zone: the zone or region asked for, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        zone: str | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status = status
        self.zone = zone
        super().__init__(message)

    def __str__(self) -> str:
        parts = [p for p in (self.provider, f"zone {self.zone}" if self.zone else None) if p]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        prefix = f"[{', '.join(parts)}] " if parts else ""
        return f"{prefix}{self.message}"

    def __reduce__(self):  # keep keyword-only attributes through pickling (multiprocessing)
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[CarbonDataError], message: str, state: dict) -> CarbonDataError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class CarbonTransportError(CarbonDataError):
    """Raised when a request got no HTTP answer (connection refused, reset, DNS)."""


class CarbonTimeoutError(CarbonTransportError):
    """Raised when a request timed out, after the retries ran out."""


class CarbonAPIError(CarbonDataError):
    """Raised when the API answered with an error status."""


class CarbonAuthError(CarbonAPIError):
    """Raised when the API rejects the credentials; retrying will not help."""


class CarbonRateLimitError(CarbonAPIError):
    """Raised when the API limits the rate of requests.

    :param retry_after: seconds the API asked to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class CarbonNoAccessError(CarbonAPIError):
    """Raised when the account's plan does not cover the zone, signal or endpoint."""


class CarbonNotFoundError(CarbonAPIError):
    """Raised when the API knows no such zone or has no data for it."""


class CarbonRequestError(CarbonAPIError):
    """Raised for any other client error: the request itself is malformed."""


class CarbonServerError(CarbonAPIError):
    """Raised when the API kept failing with a 5xx status until the retries ran out."""


class CarbonParseError(CarbonDataError):
    """Raised when a response body does not have the documented shape.

    :param field: the JSON path of the offending field (``forecast[3].carbonIntensity``).
    """

    def __init__(self, message: str, *, field: str, **kwargs) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", **kwargs)


class CarbonNoDataError(CarbonDataError):
    """Raised when a well-formed answer holds no usable data for the requested range."""


class CarbonUnsupportedError(CarbonDataError):
    """Raised when a source cannot provide the requested signal or endpoint at all."""


class CarbonConfigError(CarbonDataError):
    """Raised when the Airflow connection is missing a field or has a malformed one."""


class CarbonUsageError(CarbonDataError):
    """Raised when a call's own arguments are invalid: a naive datetime, an empty range."""


class StaleDataError(CarbonDataError):
    """Raised instead of silently returning data older than the allowed age.

    The data is attached, so a caller that accepts old data can say so explicitly by
    catching this error and using ``error.series``.

    :param series: the stale series.
    :param age: how old the newest data point is.
    :param max_age: the largest age the caller accepts.
    """

    def __init__(
        self,
        message: str,
        *,
        series: IntensitySeries,
        age: timedelta,
        max_age: timedelta,
        data_end: datetime | None = None,
        **kwargs,
    ) -> None:
        self.series = series
        self.age = age
        self.max_age = max_age
        self.data_end = data_end
        super().__init__(message, **kwargs)
