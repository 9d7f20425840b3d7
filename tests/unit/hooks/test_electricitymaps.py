"""ElectricityMapsHook over real loopback HTTP: connection reading, caching, staleness, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.exceptions import (
    CarbonAuthError,
    CarbonConfigError,
    CarbonNoDataError,
    CarbonUsageError,
    StaleDataError,
)
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import call, sample, sample_bytes

UTC = timezone.utc
KEY = "em-hook-key-abcdef"
P = "electricitymaps"
LATEST = "carbon-intensity_latest.real-compact.BE.2024-11-28.json"  # 2024-11-28T15:00Z, hourly


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def method(hook, mode, name):
    return getattr(hook, name if mode == "sync" else f"a{name}")


@pytest.fixture
def make_hook(add_connection, httpserver, cache, policy):
    def make(now=datetime(2024, 11, 28, 15, 40, tzinfo=UTC), conn_id="em_test", **extra):
        add_connection(
            conn_id, "electricitymaps", host=httpserver.url_for("").rstrip("/"), password=KEY, extra=extra
        )
        return ElectricityMapsHook(conn_id, cache=cache, clock=FixedClock(now), retry_policy=policy)

    return make


def serve(httpserver, path, name, **query):
    httpserver.expect_request(
        f"/v3/carbon-intensity/{path}", headers={"auth-token": KEY}, query_string=query or None
    ).respond_with_data(sample_bytes(P, name), content_type="application/json")


def test_the_hook_declares_its_connection_type():
    hook = ElectricityMapsHook()
    assert (hook.conn_name_attr, hook.default_conn_name, hook.conn_type) == (
        "electricitymaps_conn_id",
        "electricitymaps_default",
        "electricitymaps",
    )
    assert hook.electricitymaps_conn_id == "electricitymaps_default"


def test_the_connection_is_not_read_in_init():
    ElectricityMapsHook("no_such_connection")  # must not raise: nothing is read yet


async def test_current_through_the_connection_host_with_the_key_in_the_password(make_hook, httpserver, mode):
    serve(httpserver, "latest", LATEST, zone="BE", emissionFactorType="direct")
    body = sample(P, LATEST) | {"emissionFactorType": "direct"}
    httpserver.clear()
    httpserver.expect_request("/v3/carbon-intensity/latest", headers={"auth-token": KEY}).respond_with_json(
        body
    )
    hook = make_hook(emission_factor_type="direct")
    series = await call(method(hook, mode, "get_current"), "BE")
    assert series.values == [214] and series.intervals[0].estimated
    assert httpserver.log[0][0].args["emissionFactorType"] == "direct"


async def test_answers_are_cached_per_zone(make_hook, httpserver, mode):
    serve(httpserver, "latest", LATEST)
    hook = make_hook()
    first = await call(method(hook, mode, "get_current"), "BE")
    second = await call(method(make_hook(), mode, "get_current"), "BE")  # another hook, same cache
    assert first is second
    assert len(httpserver.log) == 1


async def test_old_data_raises_stale_with_the_data_attached(make_hook, httpserver, mode):
    serve(httpserver, "latest", LATEST)
    hook = make_hook(now=datetime(2024, 11, 28, 20, tzinfo=UTC))  # 4 h after the interval ended
    with pytest.raises(StaleDataError) as info:
        await call(method(hook, mode, "get_current"), "BE")
    assert info.value.age == timedelta(hours=4) and info.value.max_age == timedelta(hours=3)
    assert info.value.series.values == [214]
    assert (info.value.provider, info.value.zone) == ("electricitymaps", "BE")


async def test_max_staleness_comes_from_the_connection(make_hook, httpserver, mode):
    serve(httpserver, "latest", LATEST)
    hook = make_hook(now=datetime(2024, 11, 28, 20, tzinfo=UTC), max_staleness="6h")
    assert (await call(method(hook, mode, "get_current"), "BE")).values == [214]


async def test_forecast_picks_the_horizon_and_clips_to_the_window(make_hook, httpserver, mode):
    serve(httpserver, "forecast", "carbon-intensity_forecast.reconstructed-24h.DE.json", horizonHours="6",
          zone="DE", emissionFactorType="lifecycle")  # fmt: skip
    now = datetime(2023, 6, 1, 0, 10, tzinfo=UTC)
    hook = make_hook(now=now)
    start, end = datetime(2023, 6, 1, 2, 30, tzinfo=UTC), datetime(2023, 6, 1, 5, tzinfo=UTC)
    series = await call(method(hook, mode, "get_forecast"), "DE", start, end)
    assert (series.start, series.end) == (start, end)
    assert series.values == [267, 274, 277]
    assert series.is_forecast


async def test_forecast_window_outside_the_answer_is_no_data(make_hook, httpserver, mode):
    serve(httpserver, "forecast", "carbon-intensity_forecast.reconstructed-24h.DE.json")
    hook = make_hook(now=datetime(2023, 6, 1, 0, 10, tzinfo=UTC))
    later = datetime(2023, 6, 3, tzinfo=UTC)
    with pytest.raises(CarbonNoDataError):
        await call(method(hook, mode, "get_forecast"), "DE", later, later + timedelta(hours=1))


async def test_recent_history_uses_history_and_older_uses_past_range(make_hook, httpserver, mode):
    serve(httpserver, "history", "carbon-intensity_history.real.DE.2024-03-06.json")
    serve(httpserver, "past-range", "carbon-intensity_past-range.docs-example.json")
    hook = make_hook(now=datetime(2024, 3, 6, 20, 30, tzinfo=UTC))
    recent = await call(method(hook, mode, "get_history"), "DE", datetime(2024, 3, 6, 10, tzinfo=UTC),
                        datetime(2024, 3, 6, 12, tzinfo=UTC))  # fmt: skip
    rows = {
        r["datetime"]: r["carbonIntensity"]
        for r in sample(P, "carbon-intensity_history.real.DE.2024-03-06.json")["history"]
    }
    assert recent.values == [rows["2024-03-06T10:00:00.000Z"], rows["2024-03-06T11:00:00.000Z"]]
    old = await call(method(hook, mode, "get_history"), "DE", datetime(2019, 5, 21, 21, tzinfo=UTC),
                     datetime(2019, 5, 22, tzinfo=UTC))  # fmt: skip
    assert old.values == [339, 317, 305]
    assert [r.path for r, _ in httpserver.log] == [
        "/v3/carbon-intensity/history",
        "/v3/carbon-intensity/past-range",
    ]


async def test_naive_datetimes_are_a_usage_error(make_hook, mode):
    hook = make_hook()
    with pytest.raises(CarbonUsageError, match="naive"):
        await call(method(hook, mode, "get_history"), "DE", datetime(2024, 1, 1), datetime(2024, 1, 2))


async def test_an_undefined_connection_is_a_config_error(cache, mode):
    hook = ElectricityMapsHook("em_missing_conn", cache=cache)
    with pytest.raises(CarbonConfigError, match="AIRFLOW_CONN_EM_MISSING_CONN"):
        await call(method(hook, mode, "get_current"), "DE")


async def test_a_connection_without_a_key_is_an_auth_error(add_connection, cache, mode):
    add_connection("em_nokey", "electricitymaps", host="http://127.0.0.1:9")
    with pytest.raises(CarbonAuthError, match="no API key"):
        await call(method(ElectricityMapsHook("em_nokey", cache=cache), mode, "get_current"), "DE")


async def test_the_key_may_be_in_the_api_key_extra(add_connection, httpserver, cache, policy, mode):
    add_connection(
        "em_extra", "electricitymaps", host=httpserver.url_for("").rstrip("/"), extra={"api_key": KEY}
    )
    serve(httpserver, "latest", LATEST)
    hook = ElectricityMapsHook("em_extra", cache=cache, retry_policy=policy,
                               clock=FixedClock(datetime(2024, 11, 28, 15, 5, tzinfo=UTC)))  # fmt: skip
    assert (await call(method(hook, mode, "get_current"), "BE")).values == [214]


def test_test_connection_makes_one_real_call(make_hook, httpserver):
    serve(httpserver, "latest", LATEST, zone="BE", emissionFactorType="lifecycle")
    ok, message = make_hook(test_zone="BE").test_connection()
    assert ok and "214" in message
    assert len(httpserver.log) == 1


def test_test_connection_reports_a_rejected_key_without_leaking_it(make_hook, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        sample_bytes(P, "error_401_invalid-auth-token.real.json"), status=401
    )
    ok, message = make_hook().test_connection()
    assert not ok and "Invalid auth-token" in message and KEY not in message


def test_bad_extras_are_config_errors(make_hook):
    with pytest.raises(CarbonConfigError, match="emission_factor_type"):
        make_hook(emission_factor_type="marginal").get_config()
    with pytest.raises(CarbonConfigError, match="timeout"):
        make_hook(timeout="soon").get_config()


def test_host_without_scheme_and_port(add_connection):
    add_connection("em_hostonly", "electricitymaps", host="proxy.internal", port=8443, password=KEY)
    assert ElectricityMapsHook("em_hostonly").get_config().base_url == "https://proxy.internal:8443"
    add_connection("em_default", "electricitymaps", password=KEY)
    assert ElectricityMapsHook("em_default").get_config().base_url == "https://api.electricitymaps.com"
