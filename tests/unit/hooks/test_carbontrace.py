"""CarbonTraceHook: the embedded default, with or without a connection."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from airflow_carbon_provider.exceptions import CarbonConfigError, CarbonNotFoundError
from airflow_carbon_provider.hooks.carbontrace import CarbonTraceHook
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import call

UTC = timezone.utc
NOW = datetime(2026, 11, 27, 9, 53, tzinfo=UTC)
DE = read_trace(bundled_trace_path())["DE"]


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def method(hook, mode, name):
    return getattr(hook, name if mode == "sync" else f"a{name}")


async def test_default_replays_the_bundled_trace_without_a_connection(cache, mode, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", raising=False)
    hook = CarbonTraceHook(cache=cache, clock=FixedClock(NOW))
    current = await call(method(hook, mode, "get_current"), "DE")
    forecast = await call(method(hook, mode, "get_forecast"), "DE", NOW, NOW + timedelta(hours=12))
    history = await call(method(hook, mode, "get_history"), "DE", NOW - timedelta(hours=3), NOW)
    assert current.start <= NOW < current.end
    assert forecast.start == NOW and forecast.end == NOW + timedelta(hours=12) and forecast.is_forecast
    assert forecast.values[0] == current.values[0]  # a perfect forecast starts at the actual
    assert history.end == NOW and len(history) == 4  # 06:53-07:00 clipped, 07, 08, 09:00-09:53
    replayed = hook.get_config().options["replay"].clock.replayed(NOW)
    assert current.values[0] == DE.value_at(replayed)


async def test_connection_extras_set_the_mapping_and_the_forecast_model(add_connection, cache, mode):
    add_connection("trace_test", "carbontrace", extra={
        "replay_start": "2023-03-10T00:00:00Z", "anchor": "2026-11-27T00:00:00Z",
        "forecast": "noisy:10:1", "horizon": "24h",
    })  # fmt: skip
    hook = CarbonTraceHook("trace_test", cache=cache, clock=FixedClock(NOW))
    current = await call(method(hook, mode, "get_current"), "GB")
    assert current.values[0] == read_trace(bundled_trace_path())["GB"].value_at(
        datetime(2023, 3, 10, 9, 53, tzinfo=UTC)
    )
    forecast = await call(method(hook, mode, "get_forecast"), "GB")
    assert forecast.end == NOW + timedelta(hours=24) and "noisy:10:1" in forecast.source


async def test_unknown_zone(cache, mode):
    hook = CarbonTraceHook(cache=cache, clock=FixedClock(NOW))
    with pytest.raises(CarbonNotFoundError):
        await call(method(hook, mode, "get_current"), "FR")


def test_bad_extras(add_connection):
    add_connection("trace_bad", "carbontrace", extra={"anchor": "yesterday"})
    with pytest.raises(CarbonConfigError, match="anchor"):
        CarbonTraceHook("trace_bad").get_config()
    add_connection("trace_bad2", "carbontrace", extra={"forecast": "noisy:abc"})
    with pytest.raises(CarbonConfigError, match="forecast"):
        CarbonTraceHook("trace_bad2").get_config()


def test_test_connection(cache):
    ok, message = CarbonTraceHook(cache=cache, clock=FixedClock(NOW)).test_connection()
    assert ok and "DE" in message and "2023-03" in message
