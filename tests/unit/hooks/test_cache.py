"""The shared cache: single-flight under real concurrency, TTL, errors, cancellation, staleness."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_carbon_provider.core.signals import IntensitySeries, Interval, SignalKind
from airflow_carbon_provider.exceptions import CarbonServerError, StaleDataError
from airflow_carbon_provider.hooks.cache import CacheKey, IntensityCache, check_fresh
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import sample_bytes

UTC = timezone.utc
KEY = CacheKey("conn@http://x", "DE", "lifecycle", "current")
ZONES = ["DE", "FR", "GB", "SE", "PL"]


def series(end: datetime, *, forecast: bool = False, issued: datetime | None = None) -> IntensitySeries:
    return IntensitySeries(
        "DE", SignalKind.AVERAGE, [Interval(end - timedelta(hours=1), end, 100.0)], issued_at=issued,
        is_forecast=forecast,
    )  # fmt: skip


def wait_until(predicate, what: str) -> None:
    """Poll ``predicate`` for up to 10 s (a bound against hangs, not a timing assertion)."""
    for _ in range(2000):
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_one_thousand_concurrent_async_callers_on_one_key_make_one_request(
    add_connection, httpserver, cache, policy
):
    body = sample_bytes("electricitymaps", "carbon-intensity_latest.real-compact.BE.2024-11-28.json")

    def latest(request):  # a counting loopback server: every request lands in httpserver.log
        zone = request.args["zone"]
        return Response(body.replace(b'"BE"', f'"{zone}"'.encode()), content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(latest)
    add_connection("em_sf", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password="k-123456")
    clock = FixedClock(datetime(2024, 11, 28, 15, 30, tzinfo=UTC))

    async def caller(i: int):
        hook = ElectricityMapsHook("em_sf", cache=cache, clock=clock, retry_policy=policy)
        return await hook.aget_current("BE")

    results = await asyncio.gather(*(caller(i) for i in range(1000)))
    assert len(httpserver.log) == 1
    assert all(r is results[0] for r in results)
    assert cache.stats.fetches == 1 and cache.stats.joined + cache.stats.hits == 999

    async def zone_caller(i: int):
        hook = ElectricityMapsHook("em_sf", cache=cache, clock=clock, retry_policy=policy)
        return await hook.aget_current(ZONES[i % 5])

    httpserver.clear_log()
    cache.clear()
    await asyncio.gather(*(zone_caller(i) for i in range(1000)))
    assert sorted(r.args["zone"] for r, _ in httpserver.log) == sorted(ZONES)


def test_concurrent_threads_share_one_fetch():
    cache = IntensityCache()
    calls = []
    threads_n = 16

    def fetch():
        calls.append(1)
        wait_until(lambda: cache.stats.joined == threads_n - 1, "every other thread joined the flight")
        return "value"

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(KEY, fetch, 60))) for _ in range(threads_n)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and results == ["value"] * threads_n


async def test_a_failed_fetch_reaches_every_waiter_and_is_not_cached():
    cache = IntensityCache()
    release = asyncio.Event()
    calls = []

    async def failing():
        calls.append(1)
        await release.wait()
        raise CarbonServerError("down", status=503)

    waiters = [asyncio.ensure_future(cache.aget(KEY, failing, 60)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, CarbonServerError) for o in outcomes) and calls == [1]

    async def working():
        calls.append(2)
        return "ok"

    assert await cache.aget(KEY, working, 60) == "ok" and calls == [1, 2]


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch():
    cache = IntensityCache()
    release = asyncio.Event()

    async def slow():
        await release.wait()
        return "done"

    first = asyncio.ensure_future(cache.aget(KEY, slow, 60))
    second = asyncio.ensure_future(cache.aget(KEY, slow, 60))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "done"
    assert first.cancelled()
    assert cache.stats.fetches == 1
    assert await cache.aget(KEY, slow, 60) == "done" and cache.stats.hits == 1


def test_entries_expire_after_their_ttl():
    now = [0.0]
    cache = IntensityCache(monotonic=lambda: now[0])
    values = iter(["first", "second"])
    assert cache.get(KEY, lambda: next(values), ttl=300) == "first"
    now[0] = 299.0
    assert cache.get(KEY, lambda: next(values), ttl=300) == "first"
    now[0] = 300.0
    assert cache.get(KEY, lambda: next(values), ttl=300) == "second"


def test_zero_ttl_does_not_store_and_lru_bounds_the_size():
    cache = IntensityCache(max_entries=2)
    cache.get(KEY, lambda: 1, ttl=0)
    assert len(cache) == 0
    for zone in ("A", "B", "C"):
        cache.get(KEY._replace(zone=zone), lambda zone=zone: zone, ttl=60)
    assert len(cache) == 2
    assert cache.get(KEY._replace(zone="A"), lambda: "refetched", ttl=60) == "refetched"


def test_keys_differ_by_every_component():
    cache = IntensityCache()
    variants = [KEY, KEY._replace(connection="other@x"), KEY._replace(signal="direct"),
                KEY._replace(endpoint="forecast"), KEY._replace(range=("a", "b"))]  # fmt: skip
    for i, key in enumerate(variants):
        assert cache.get(key, lambda i=i: i, ttl=60) == i


def test_staleness_rules():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    fresh = series(now + timedelta(minutes=30))
    assert check_fresh(fresh, now=now, max_age=timedelta(0), what="current", provider="p") is fresh
    old = series(now - timedelta(hours=3))
    with pytest.raises(StaleDataError) as info:
        check_fresh(old, now=now, max_age=timedelta(hours=2), what="current", provider="p")
    assert info.value.series is old and info.value.age == timedelta(hours=3)
    assert check_fresh(old, now=now, max_age=None, what="current", provider="p") is old
    stale_issue = series(now + timedelta(hours=10), forecast=True, issued=now - timedelta(hours=5))
    with pytest.raises(StaleDataError):
        check_fresh(stale_issue, now=now, max_age=timedelta(hours=2), what="forecast", provider="p")
    ended = series(now - timedelta(hours=3), forecast=True, issued=now - timedelta(minutes=1))
    with pytest.raises(StaleDataError):
        check_fresh(ended, now=now, max_age=timedelta(hours=2), what="forecast", provider="p")


class Monotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LATEST_BODY = sample_bytes("electricitymaps", "carbon-intensity_latest.real-compact.BE.2024-11-28.json")
STALE_NOW = datetime(2024, 11, 28, 20, tzinfo=UTC)  # the body's hour ended 4 h before: stale (3 h allowed)


def _recovering_api(httpserver, answers: list[bytes]):
    """Serve ``answers`` in turn (the last one from then on); return the request log."""

    def handler(request):
        body = answers.pop(0) if len(answers) > 1 else answers[0]
        return Response(body, content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(handler)
    return httpserver.log


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_recovered_api_is_asked_again_after_a_stale_answer(add_connection, httpserver, policy, mode):
    fresh = LATEST_BODY.replace(b"2024-11-28T15:00:00", b"2024-11-28T19:00:00")
    assert fresh != LATEST_BODY
    log = _recovering_api(httpserver, [LATEST_BODY, fresh])
    add_connection("em_stale", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password="k-123456")
    monotonic = Monotonic()
    cache = IntensityCache(monotonic=monotonic)
    hook = ElectricityMapsHook("em_stale", cache=cache, clock=FixedClock(STALE_NOW), retry_policy=policy)
    get = hook.get_current if mode == "sync" else hook.aget_current

    async def current():
        result = get("BE")
        return await result if asyncio.iscoroutine(result) else result

    with pytest.raises(StaleDataError):
        await current()
    monotonic.now += 5  # a stale answer is not asked again at once: a burst of callers costs one request
    with pytest.raises(StaleDataError):
        await current()
    assert len(log) == 1
    monotonic.now += IntensityCache.STALE_RETRY  # well inside the 5-minute TTL of a current value
    recovered = await current()
    assert recovered.end == datetime(2024, 11, 28, 20, tzinfo=UTC) and len(log) == 2
    monotonic.now += 60
    assert await current() is recovered and len(log) == 2  # fresh: cached for its whole TTL again


async def test_an_answer_that_goes_stale_in_the_cache_is_fetched_again(add_connection, httpserver, policy):
    fresh = LATEST_BODY.replace(b"2024-11-28T15:00:00", b"2024-11-28T19:00:00")
    log = _recovering_api(httpserver, [LATEST_BODY, fresh])
    add_connection("em_ages", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password="k-123456",
                   extra={"cache_ttl": "1d"})  # fmt: skip
    monotonic = Monotonic()
    clock = FixedClock(datetime(2024, 11, 28, 18, tzinfo=UTC))  # 2 h after the hour ended: fresh
    hook = ElectricityMapsHook("em_ages", cache=IntensityCache(monotonic=monotonic), clock=clock,
                               retry_policy=policy)  # fmt: skip
    hook.get_current("BE")
    clock.now, monotonic.now = STALE_NOW, monotonic.now + 2 * 3600  # the cached answer is now too old
    assert hook.get_current("BE").end == STALE_NOW and len(log) == 2


async def test_stale_entries_are_refetched_single_flight(add_connection, httpserver, policy):
    fresh = LATEST_BODY.replace(b"2024-11-28T15:00:00", b"2024-11-28T19:00:00")
    log = _recovering_api(httpserver, [LATEST_BODY, fresh])
    add_connection("em_sf_stale", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password="k-123456")
    monotonic = Monotonic()
    cache = IntensityCache(monotonic=monotonic)
    clock = FixedClock(STALE_NOW)

    async def caller():
        hook = ElectricityMapsHook("em_sf_stale", cache=cache, clock=clock, retry_policy=policy)
        return await hook.aget_current("BE")

    with pytest.raises(StaleDataError):
        await caller()
    monotonic.now += IntensityCache.STALE_RETRY
    results = await asyncio.gather(*(caller() for _ in range(200)))
    assert len(log) == 2 and all(r is results[0] for r in results)


async def _ticking_until(done: asyncio.Future) -> int:
    """Count event-loop turns until ``done`` resolves: proof that waiting does not block the loop."""
    ticks = 0
    while not done.done():
        ticks += 1
        await asyncio.sleep(0.001)
    return ticks


async def test_a_sync_leader_and_an_async_caller_on_one_key_make_one_fetch():
    cache = IntensityCache()
    release = threading.Event()
    calls = []

    def sync_fetch():
        calls.append("sync")
        release.wait(10)
        return "value"

    async def async_fetch():
        calls.append("async")
        return "other"

    leader = asyncio.ensure_future(asyncio.to_thread(cache.get, KEY, sync_fetch, 60))  # a worker thread
    for _ in range(2000):
        if calls:
            break
        await asyncio.sleep(0.005)
    follower = asyncio.ensure_future(cache.aget(KEY, async_fetch, 60))
    ticker = asyncio.ensure_future(_ticking_until(follower))
    await asyncio.sleep(0.05)
    assert not follower.done() and cache.stats.joined == 1
    release.set()
    assert await follower == "value" and await leader == "value"
    assert calls == ["sync"] and cache.stats.fetches == 1
    assert await ticker > 5  # the loop ran on while the async caller waited for the thread


async def test_an_async_leader_and_a_sync_caller_on_one_key_make_one_fetch():
    cache = IntensityCache()
    release = asyncio.Event()
    calls = []

    async def async_fetch():
        calls.append("async")
        await release.wait()
        return "value"

    def sync_fetch():
        calls.append("sync")
        return "other"

    leader = asyncio.ensure_future(cache.aget(KEY, async_fetch, 60))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(asyncio.to_thread(cache.get, KEY, sync_fetch, 60))
    for _ in range(2000):
        if cache.stats.joined:
            break
        await asyncio.sleep(0.005)
    assert cache.stats.joined == 1 and not follower.done()
    release.set()
    assert await leader == "value" and await follower == "value"
    assert calls == ["async"] and cache.stats.fetches == 1


async def test_a_failed_fetch_reaches_the_caller_of_the_other_mode_and_is_not_cached():
    cache = IntensityCache()
    release = threading.Event()

    def failing():
        release.wait(10)
        raise CarbonServerError("down", status=503)

    leader = asyncio.ensure_future(asyncio.to_thread(cache.get, KEY, failing, 60))
    for _ in range(2000):
        if cache.stats.fetches:
            break
        await asyncio.sleep(0.005)
    follower = asyncio.ensure_future(cache.aget(KEY, lambda: asyncio.sleep(0, "unused"), 60))
    await asyncio.sleep(0.02)
    release.set()
    for outcome in await asyncio.gather(leader, follower, return_exceptions=True):
        assert isinstance(outcome, CarbonServerError)
    assert len(cache) == 0 and cache.stats.fetches == 1


async def test_a_sync_and_an_async_hook_call_on_one_key_send_one_request(add_connection, httpserver, cache, policy):
    joined = threading.Event()

    def latest(request):  # answers once the other caller has joined the fetch
        joined.wait(10)
        return Response(LATEST_BODY, content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_handler(latest)
    add_connection("em_modes", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password="k-123456")
    clock = FixedClock(datetime(2024, 11, 28, 15, 30, tzinfo=UTC))

    def hook():
        return ElectricityMapsHook("em_modes", cache=cache, clock=clock, retry_policy=policy)

    sync_call = asyncio.ensure_future(asyncio.to_thread(hook().get_current, "BE"))
    for _ in range(2000):
        if cache.stats.fetches:
            break
        await asyncio.sleep(0.005)
    async_call = asyncio.ensure_future(hook().aget_current("BE"))
    for _ in range(2000):
        if cache.stats.joined:
            break
        await asyncio.sleep(0.005)
    joined.set()
    first, second = await asyncio.gather(sync_call, async_call)
    assert first is second and len(httpserver.log) == 1
    assert cache.stats.fetches == 1 and cache.stats.joined == 1
