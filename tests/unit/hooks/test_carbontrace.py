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


FERNET = "c2VjcmV0LWZlcm5ldC1rZXktZG8tbm90LWxlYWs="


async def test_a_path_to_proc_is_refused_and_its_content_never_shown(add_connection, cache, mode, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", FERNET)
    add_connection("trace_environ", "carbontrace", extra={"path": "/proc/self/environ"})
    hook = CarbonTraceHook("trace_environ", cache=cache, clock=FixedClock(NOW))
    ok, message = hook.test_connection()
    assert not ok and "not a regular .csv file" in message and FERNET not in message
    with pytest.raises(CarbonConfigError) as info:
        await call(method(hook, mode, "get_current"), "DE")
    assert FERNET not in str(info.value)


def _small_trace(directory):
    directory.mkdir(exist_ok=True)
    start = datetime(2022, 1, 1, tzinfo=UTC)
    rows = [f"{(start + timedelta(hours=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},DE,{100 + i % 7}" for i in range(96)]
    path = directory / "t.csv"
    path.write_text("timestamp_utc,zone,gco2_per_kwh\n" + "\n".join(rows) + "\n")
    return path


def test_trace_allowed_dirs_comes_from_the_airflow_config(add_connection, monkeypatch, tmp_path):
    inside, outside = _small_trace(tmp_path / "traces"), _small_trace(tmp_path / "elsewhere")
    monkeypatch.setenv("AIRFLOW__CARBON__TRACE_ALLOWED_DIRS", f" {tmp_path / 'traces'} , /nonexistent/dir ")
    add_connection("trace_inside", "carbontrace", extra={"path": str(inside), "horizon": "24h"})
    add_connection("trace_outside", "carbontrace", extra={"path": str(outside), "horizon": "24h"})
    assert CarbonTraceHook("trace_inside", cache=None).get_config().options["replay"].zones == ("DE",)
    with pytest.raises(CarbonConfigError, match="trace_allowed_dirs"):
        CarbonTraceHook("trace_outside", cache=None).get_config()
    assert CarbonTraceHook(cache=None).get_config().options["replay"].zones  # the bundled trace


def test_a_path_that_is_not_a_string_is_a_config_error(add_connection):
    add_connection("trace_number", "carbontrace", extra={"path": 42})
    with pytest.raises(CarbonConfigError, match="path"):
        CarbonTraceHook("trace_number", cache=None).get_config()
