"""The in-process cache every carbon hook shares: TTL, single-flight, and no silent staleness.

Keys are :class:`CacheKey` values ``(connection, zone, signal, endpoint, range)``. An entry
lives for the TTL its hook chooses, following the provider's update cadence (see each hook's
``default_ttl``). Single-flight: while one fetch for a key is running, every other caller of
that key, sync or async, waits for its result instead of sending a request of its own, so
1,000 concurrent callers on one key cause one request, and a synchronous caller in a worker
thread and an asynchronous one on an event loop share one fetch too. A failed fetch is not
cached; every caller waiting on it gets its error, and the next call tries again.

How one fetch is shared across threads and event loops: the registry of fetches in flight is
a :class:`~airflow_carbon_provider.sources._flow.SingleFlight`, guarded by a thread lock
(the same lock guards the entries). A synchronous caller that joins waits on a
``threading.Event``; an asynchronous caller that joins awaits a future that the leader
resolves through ``call_soon_threadsafe``, so its event loop never blocks. An asynchronous
fetch runs in its own task, shielded from the callers: a caller that is cancelled (a trigger
being stopped, say) stops waiting but does not cancel the request the others are waiting on.

Staleness is judged by the hooks on the data (how old its newest interval is), not by the
cache; see :func:`check_fresh`. Data older than the allowed age raises
:class:`~airflow_carbon_provider.exceptions.StaleDataError`, with the data attached, so it
is never used silently. A stale answer is not kept for the whole TTL: callers pass a
``usable`` test, and an entry that fails it (stale when fetched, or gone stale while cached)
is fetched again, single-flight, once it is :attr:`IntensityCache.STALE_RETRY` seconds old.
So an API that recovers is asked again within half a minute, while a burst of callers
during an outage still costs one request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from airflow_carbon_provider.exceptions import StaleDataError
from airflow_carbon_provider.sources._flow import MISS, SingleFlight

if TYPE_CHECKING:
    from airflow_carbon_provider.core.signals import IntensitySeries

__all__ = ["CacheKey", "CacheStats", "IntensityCache", "check_fresh", "data_age", "is_fresh", "shared_cache"]

T = TypeVar("T")


class CacheKey(NamedTuple):
    """What identifies one cached answer.

    :param connection: the connection id and base URL (``electricitymaps_default@https://...``).
    :param zone: the zone or region.
    :param signal: the signal variant (``lifecycle``, ``direct``, ``co2_moer``, ``average``...).
    :param endpoint: ``current``, ``forecast`` or ``history``.
    :param range: what else selects the answer: a horizon, or ``(start, end)`` ISO strings.
    """

    connection: str
    zone: str
    signal: str
    endpoint: str
    range: Hashable = None


@dataclass
class CacheStats:
    """Counters: ``fetches`` is the number of times a fetch function actually ran."""

    hits: int = 0
    misses: int = 0
    fetches: int = 0
    joined: int = 0


@dataclass
class _Entry:
    value: Any
    expires: float
    stored: float


class IntensityCache:
    """A thread-safe, asyncio-aware TTL cache with single-flight fetches.

    :param max_entries: least recently used entries beyond this are dropped.
    :param monotonic: the clock for TTLs (injectable for tests).
    :param stale_retry: seconds an entry that fails its caller's ``usable`` test is still
        served before it is fetched again (default :attr:`STALE_RETRY`).
    """

    STALE_RETRY: ClassVar[float] = 30.0

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        monotonic: Callable[[], float] = time.monotonic,
        stale_retry: float = STALE_RETRY,
    ) -> None:
        self.max_entries = max_entries
        self.stale_retry = stale_retry
        self.stats = CacheStats()
        self._monotonic = monotonic
        self._flights = SingleFlight()
        self._lock = self._flights.lock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def _lookup(self, key: CacheKey, usable: Callable[[Any], bool] | None) -> Any:
        """Return the entry's value if it may be served, else :data:`MISS` (under the lock)."""
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        now = self._monotonic()
        if entry.expires <= now or (
            usable is not None and now - entry.stored >= self.stale_retry and not usable(entry.value)
        ):
            del self._entries[key]
            return MISS
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry.value

    def _count(self, leader: bool) -> None:
        if leader:
            self.stats.misses += 1
            self.stats.fetches += 1
        else:
            self.stats.joined += 1

    def _store(self, key: CacheKey, value: T, ttl: float) -> T:
        if ttl > 0:
            with self._lock:
                now = self._monotonic()
                self._entries[key] = _Entry(value, now + ttl, now)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return value

    def get(
        self, key: CacheKey, fetch: Callable[[], T], ttl: float, *, usable: Callable[[T], bool] | None = None
    ) -> T:
        """Return the cached value of ``key``, or fetch it once for all concurrent callers.

        :param fetch: called without arguments when the value must be fetched.
        :param ttl: seconds the fetched value stays valid (0 disables caching it).
        :param usable: whether a cached value may still be used (for data: not stale); one
            that may not is fetched again once it is ``stale_retry`` seconds old.
        """
        return self._flights.call(
            key,
            lambda: self._store(key, fetch(), ttl),
            lookup=lambda: self._lookup(key, usable),
            on_enter=self._count,
        )

    async def aget(
        self,
        key: CacheKey,
        fetch: Callable[[], Awaitable[T]],
        ttl: float,
        *,
        usable: Callable[[T], bool] | None = None,
    ) -> T:
        """Return the cached value of ``key``, or fetch it once for all concurrent callers.

        :param fetch: returns the awaitable to run when the value must be fetched.
        :param ttl: seconds the fetched value stays valid (0 disables caching it).
        :param usable: as for :meth:`get`.
        """

        async def fetch_and_store() -> T:
            return self._store(key, await fetch(), ttl)

        return await self._flights.acall(
            key, fetch_and_store, lookup=lambda: self._lookup(key, usable), on_enter=self._count
        )

    def clear(self) -> None:
        """Drop every entry and reset the counters (in-flight fetches finish undisturbed)."""
        with self._lock:
            self._entries.clear()
            self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)


def data_age(series: IntensitySeries, now: datetime) -> timedelta:
    """Return how old ``series`` is, as :func:`check_fresh` judges it."""
    if series.is_forecast and series.issued_at is not None:
        age = now - series.issued_at
        if series.end <= now:
            age = max(age, now - series.end)
        return age
    return now - series.end


def is_fresh(series: IntensitySeries, *, now: datetime, max_age: timedelta | None) -> bool:
    """Return whether :func:`check_fresh` would accept ``series``."""
    return max_age is None or data_age(series, now) <= max_age


def check_fresh(
    series: IntensitySeries,
    *,
    now: datetime,
    max_age: timedelta | None,
    what: str,
    provider: str,
) -> IntensitySeries:
    """Return ``series`` if its data is recent enough, else raise :class:`StaleDataError`.

    For current values and history the age is ``now - series.end`` (how long ago the newest
    interval ended); for forecasts it is ``now - issued_at``, and a forecast that has already
    ended is stale whatever its issue time. ``max_age=None`` turns the check off.
    """
    if max_age is None:
        return series
    age = data_age(series, now)
    if age > max_age:
        raise StaleDataError(
            f"{what} data is {age} old (newest interval ends {series.end.isoformat()}), more than the "
            f"allowed {max_age}; raise max_staleness on the connection to accept older data",
            series=series,
            age=age,
            max_age=max_age,
            data_end=series.end,
            provider=provider,
            zone=series.zone,
        )
    return series


shared_cache = IntensityCache()
"""The one cache that every hook uses unless told otherwise."""
