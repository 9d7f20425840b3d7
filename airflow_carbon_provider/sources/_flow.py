"""Flows: what a source asks of the network, written once for the sync and the async driver.

A flow is a generator (the pattern of httpx's ``Auth.auth_flow``). It yields what it needs
and receives the answer:

* an :class:`~airflow_carbon_provider.sources._http.ApiRequest`: the driver sends it under
  the retry policy and sends back the :class:`~airflow_carbon_provider.sources._http.ApiResponse`,
  or throws the typed error into the flow at the ``yield`` (where the flow may catch it:
  WattTime renews its token on a :class:`~airflow_carbon_provider.exceptions.CarbonAuthError`);
* a :class:`Secret`: from now on the driver redacts the value from every error, and hands it
  to Airflow's secrets masker first when ``mask`` is set;
* a :class:`Shared`: the driver runs the sub-flow single-flight on its key, across every
  driver of the process, sync and async alike, and sends back its result.

The flow's return value is the driver's result. A flow does no I/O, keeps no lock and never
sleeps; :class:`SyncDriver <airflow_carbon_provider.sources._drivers.SyncDriver>` (requests)
and :class:`AsyncDriver <airflow_carbon_provider.sources._drivers.AsyncDriver>` (aiohttp) do.

:class:`SingleFlight` is the one single-flight mechanism of the package: the drivers run
:class:`Shared` sub-flows through :data:`shared_flights`, and the hooks' cache holds one of
its own. Its registry of in-flight calls is guarded by a thread lock, so a thread-based
synchronous caller and an event-loop asynchronous caller of one key share one call: a
synchronous waiter blocks on a :class:`threading.Event`; an asynchronous waiter awaits a
future that the finishing leader resolves with ``call_soon_threadsafe``, so it never blocks
its event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Generator, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from airflow_carbon_provider.sources._http import ApiRequest, ApiResponse

__all__ = [
    "MISS",
    "Client",
    "Effect",
    "Flow",
    "Secret",
    "Shared",
    "SingleFlight",
    "get_json",
    "local",
    "shared_flights",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Secret:
    """A value the flow holds or has just learned that must never appear in an error or a log.

    :param value: the secret (a token, a password...).
    :param mask: also register it with Airflow's secrets masker (for values that nothing has
        masked yet, such as a token just obtained); the driver redacts it either way.
    """

    value: str = field(repr=False)
    mask: bool = True


@dataclass(frozen=True)
class Shared(Generic[T]):
    """Run ``flow`` once for every caller that asks for ``key`` while it runs (a login, say).

    :param key: what identifies the shared work in the process (hashable).
    :param flow: the sub-flow; a caller that joins a running one never starts its own.
    """

    key: Hashable
    flow: Flow[T] = field(repr=False)


Effect = ApiRequest | Secret | Shared[Any]
Flow = Generator[Effect, Any, T]
"""A flow that returns a ``T``: it yields effects and receives what they produced."""


def get_json(request: ApiRequest, provider: str) -> Flow[Any]:
    """Send ``request`` and return its decoded JSON body (a typed parse error otherwise)."""
    response: ApiResponse = yield request
    return response.json(provider=provider, zone=request.zone)


def local(compute: Callable[[], T]) -> Flow[T]:
    """Return a flow that sends nothing: ``compute()`` runs when a driver runs the flow."""
    yield from ()
    return compute()


class Client:
    """Call the flows of a source object through one driver as plain methods.

    ``Client(driver, source).forecast(...)`` is ``driver.run(source.forecast(...))``: the
    answer with a synchronous driver, an awaitable of it with an asynchronous one.
    """

    def __init__(self, driver: Any, source: object) -> None:
        self._driver = driver
        self._source = source

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):  # not a flow (and no recursion before __init__ has run)
            raise AttributeError(name)
        make = getattr(self._source, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            return self._driver.run(make(*args, **kwargs))

        run.__doc__ = make.__doc__
        return run


class _Miss:
    def __repr__(self) -> str:
        return "MISS"


MISS: Any = _Miss()
"""What a ``lookup`` returns when it has nothing for the key."""


class _Flight:
    """One call in flight: its outcome once done, and the asynchronous waiters to wake."""

    __slots__ = ("done", "error", "loop", "task", "value", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.loop = loop  # the event loop an asynchronous leader runs on; None for a thread
        self.task: asyncio.Task[None] | None = None  # holds the asynchronous leader's task
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Flight]]] = []

    @property
    def abandoned(self) -> bool:
        """Return whether the leader was cancelled before it had an answer (waiters try again)."""
        return isinstance(self.error, asyncio.CancelledError)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle(future: asyncio.Future[_Flight], flight: _Flight) -> None:
    if not future.done():  # a waiter that was cancelled has stopped waiting
        future.set_result(flight)


class SingleFlight:
    """Make concurrent calls with one key share a single run, across threads and event loops.

    The first caller of a key leads: a synchronous leader runs the call in its own thread; an
    asynchronous leader runs it in a task of its own, so a leader that is cancelled stops
    waiting without cancelling the call the others wait on. Everyone else waits for the
    leader's outcome (its value or its exception). A leader cancelled with its event loop
    (the loop shut down) leaves no answer; its waiters then try again.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Guards the registry; a ``lookup`` runs under it (and must not take it again)."""
        self._flights: dict[Hashable, _Flight] = {}

    def _enter(
        self,
        key: Hashable,
        lookup: Callable[[], Any] | None,
        on_enter: Callable[[bool], None] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> tuple[_Flight | None, bool, Any]:
        """Return ``(None, False, hit)``, ``(flight, False, None)`` to join or ``(flight, True, None)`` to lead."""
        with self.lock:
            if lookup is not None:
                found = lookup()
                if found is not MISS:
                    return None, False, found
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(loop)
            if on_enter is not None:
                on_enter(leader)
            return flight, leader, None

    def _finish(self, key: Hashable, flight: _Flight, value: Any, error: BaseException | None) -> None:
        with self.lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.value, flight.error = value, error
            flight.done.set()
            waiters, flight.waiters = flight.waiters, []
        here = _running_loop()
        for loop, future in waiters:
            if loop is here:
                loop.call_soon(_settle, future, flight)
                continue
            try:
                loop.call_soon_threadsafe(_settle, future, flight)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass

    def call(
        self,
        key: Hashable,
        fn: Callable[[], T],
        *,
        lookup: Callable[[], Any] | None = None,
        on_enter: Callable[[bool], None] | None = None,
    ) -> T:
        """Return ``fn()``, run once for every concurrent caller of ``key``, blocking this thread.

        :param lookup: called under the lock first; a value other than :data:`MISS` is
            returned at once (a cache hit).
        :param on_enter: called under the lock with ``True`` for the leader, ``False`` for a
            caller that joins a running call.
        """
        while True:
            flight, leader, found = self._enter(key, lookup, on_enter, None)
            if flight is None:
                return found
            if leader:
                try:
                    value = fn()
                except BaseException as exc:
                    self._finish(key, flight, None, exc)
                    raise
                self._finish(key, flight, value, None)
                return value
            if flight.loop is not None and flight.loop is _running_loop():
                return fn()  # the leader runs on the loop this thread would block: run alone
            flight.done.wait()
            if not flight.abandoned:
                return flight.result()

    async def acall(
        self,
        key: Hashable,
        fn: Callable[[], Awaitable[T]],
        *,
        lookup: Callable[[], Any] | None = None,
        on_enter: Callable[[bool], None] | None = None,
    ) -> T:
        """Return ``await fn()``, run once for every concurrent caller of ``key``; see :meth:`call`."""
        loop = asyncio.get_running_loop()
        while True:
            flight, leader, found = self._enter(key, lookup, on_enter, loop)
            if flight is None:
                return found
            if leader:
                flight.task = loop.create_task(self._lead(key, flight, fn))
            future: asyncio.Future[_Flight] = loop.create_future()
            with self.lock:
                finished = flight.done.is_set()
                if not finished:
                    flight.waiters.append((loop, future))  # _finish resolves it
            if finished:
                future.set_result(flight)
            done = await future
            if not done.abandoned:
                return done.result()

    async def _lead(self, key: Hashable, flight: _Flight, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            value = await fn()
        except (Exception, asyncio.CancelledError) as exc:  # handed to every waiter
            self._finish(key, flight, None, exc)
            return
        self._finish(key, flight, value, None)

    def __len__(self) -> int:
        return len(self._flights)


shared_flights = SingleFlight()
"""The registry the drivers run :class:`Shared` sub-flows through (one per process)."""
