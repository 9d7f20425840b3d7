"""UKCarbonIntensityHook over real loopback HTTP, and its connection-free default."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.hooks.ukcarbonintensity import UKCarbonIntensityHook
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import call, sample_bytes

UTC = timezone.utc
P = "ukcarbonintensity"


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def method(hook, mode, name):
    return getattr(hook, name if mode == "sync" else f"a{name}")


@pytest.fixture
def make_hook(add_connection, httpserver, cache, policy):
    def make(now):
        add_connection("uk_test", "ukcarbonintensity", host=httpserver.url_for("").rstrip("/"))
        return UKCarbonIntensityHook("uk_test", cache=cache, clock=FixedClock(now), retry_policy=policy)

    return make


async def test_forecast_from_now(make_hook, httpserver, mode):
    httpserver.expect_request("/intensity/2023-03-14T12:01Z/fw48h").respond_with_data(
        sample_bytes(P, "intensity_fw48h_2023-03-14T1201Z.json"), content_type="application/json"
    )
    now = datetime(2023, 3, 14, 12, 1, 30, tzinfo=UTC)
    series = await call(method(make_hook(now), mode, "get_forecast"), "GB")
    assert len(series) == 96 and series.issued_at == now


async def test_current_and_history(make_hook, httpserver, mode):
    httpserver.expect_request("/intensity").respond_with_data(
        sample_bytes(P, "intensity.real-compact.2020-09-19.json"), content_type="application/json"
    )
    httpserver.expect_request("/intensity/2023-03-15T12:00Z/2023-03-15T14:00Z").respond_with_data(
        sample_bytes(P, "intensity_pt24h_2023-03-16T1201Z.json"), content_type="application/json"
    )
    hook = make_hook(datetime(2020, 9, 19, 11, 45, tzinfo=UTC))
    assert (await call(method(hook, mode, "get_current"), "GB")).values == [85]
    start = datetime(2023, 3, 15, 12, tzinfo=UTC)
    history = await call(method(hook, mode, "get_history"), "GB", start, start + timedelta(hours=2))
    assert history.values == [202, 203, 206, 205]


async def test_no_connection_needed(cache, mode, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_UKCARBONINTENSITY_DEFAULT", raising=False)
    hook = UKCarbonIntensityHook(cache=cache)
    config = hook.get_config() if mode == "sync" else await hook.aget_config()
    assert config.base_url == "https://api.carbonintensity.org.uk"
