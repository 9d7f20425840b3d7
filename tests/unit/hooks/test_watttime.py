"""WattTimeHook over real loopback HTTP: token masking and sharing, signals, the protocol."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.exceptions import CarbonAuthError, CarbonConfigError, CarbonUnsupportedError
from airflow_carbon_provider.hooks.watttime import WattTimeHook
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import call, sample, sample_bytes

UTC = timezone.utc
P = "watttime"
NOW = datetime(2022, 7, 15, 0, 2, tzinfo=UTC)
TOKEN = "wt-token-0f9e8d7c6b5a49382716"


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def method(hook, mode, name):
    return getattr(hook, name if mode == "sync" else f"a{name}")


@pytest.fixture
def make_hook(add_connection, httpserver, cache, policy):
    def make(conn_id="wt_test", now=NOW, **extra):
        add_connection(conn_id, "watttime", host=httpserver.url_for("").rstrip("/"), login="freddo",
                       password="pw-secret-1234", extra=extra)  # fmt: skip
        return WattTimeHook(conn_id, cache=cache, clock=FixedClock(now), retry_policy=policy)

    return make


@pytest.fixture
def api(httpserver):
    httpserver.expect_request("/login").respond_with_json({"token": TOKEN})
    for path, name in [
        ("/v3/forecast", "forecast.docs-example.json"),
        ("/v3/historical", "historical.docs-example.json"),
        ("/v3/my-access", "my-access.docs-example.json"),
    ]:
        httpserver.expect_request(path, headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_data(
            sample_bytes(P, name), content_type="application/json"
        )
    return httpserver


def logins(httpserver):
    return sum(1 for r, _ in httpserver.log if r.path == "/login")


async def test_current_is_the_first_forecast_point_and_the_token_is_masked(make_hook, api, mode):
    from airflow.sdk._shared.secrets_masker import redact

    hook = make_hook()
    series = await call(method(hook, mode, "get_current"), "CAISO_NORTH")
    assert series.kind is SignalKind.MARGINAL and len(series) == 1
    assert series.values[0] == pytest.approx(870 * 0.45359237)
    assert api.log[1][0].args["horizon_hours"] == "0"
    assert redact(f"token is {TOKEN}") == "token is ***"


async def test_hooks_of_one_account_share_one_login(make_hook, api, mode):
    await call(method(make_hook(), mode, "get_forecast"), "CAISO_NORTH")
    await call(method(make_hook(), mode, "get_history"), "CAISO_NORTH", NOW - timedelta(minutes=2),
               NOW + timedelta(minutes=8))  # fmt: skip
    assert logins(api) == 1


async def test_forecast_horizon_follows_the_requested_end(make_hook, api, mode):
    hook = make_hook()
    end = NOW + timedelta(hours=5, minutes=30)
    series = await call(method(hook, mode, "get_forecast"), "CAISO_NORTH", None, end)
    assert api.log[-1][0].args["horizon_hours"] == "6"
    assert series.end == end and series.is_forecast


async def test_average_signal_current_comes_from_history_and_has_no_forecast(make_hook, httpserver, mode):
    body = sample(P, "historical.docs-example.json")
    body["meta"]["signal_type"] = "co2_aoer"
    httpserver.expect_request("/login").respond_with_json({"token": TOKEN})
    httpserver.expect_request("/v3/historical", query_string=None).respond_with_json(body)
    hook = make_hook(signal_type="co2_aoer", now=datetime(2022, 7, 15, 0, 12, tzinfo=UTC))
    series = await call(method(hook, mode, "get_current"), "CAISO_NORTH")
    assert series.kind is SignalKind.AVERAGE and series.values == [pytest.approx(860 * 0.45359237)]
    assert httpserver.log[-1][0].args["signal_type"] == "co2_aoer"
    with pytest.raises(CarbonUnsupportedError):
        await call(method(hook, mode, "get_forecast"), "CAISO_NORTH")


async def test_refused_login(make_hook, httpserver, mode):
    httpserver.expect_request("/login").respond_with_json({"error": "bad credentials"}, status=401)
    with pytest.raises(CarbonAuthError, match="login refused") as info:
        await call(method(make_hook(), mode, "get_current"), "CAISO_NORTH")
    assert "pw-secret-1234" not in str(info.value)


def test_test_connection_lists_access(make_hook, api):
    ok, message = make_hook().test_connection()
    assert ok and "1 region" in message


def test_missing_credentials_and_bad_signal(add_connection):
    add_connection("wt_nologin", "watttime", password="x")
    with pytest.raises(CarbonAuthError, match="username"):
        WattTimeHook("wt_nologin").get_config()
    add_connection(
        "wt_badsignal", "watttime", login="u", password="p", extra={"signal_type": "health_damage"}
    )
    with pytest.raises(CarbonConfigError, match="signal_type"):
        WattTimeHook("wt_badsignal").get_config()


async def test_a_sync_and_an_async_hook_of_one_account_share_one_login(make_hook, httpserver):
    import asyncio
    import threading

    from airflow_carbon_provider.sources._flow import shared_flights

    second_waits = threading.Event()

    def login(request):  # answers once the other caller waits for this login
        second_waits.wait(10)
        return Response(json.dumps({"token": TOKEN}), content_type="application/json")

    httpserver.expect_request("/login").respond_with_handler(login)
    httpserver.expect_request("/v3/forecast", headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_data(
        sample_bytes(P, "forecast.docs-example.json"), content_type="application/json"
    )
    sync_call = asyncio.ensure_future(asyncio.to_thread(make_hook().get_forecast, "CAISO_NORTH"))
    for _ in range(2000):
        if len(shared_flights):
            break
        await asyncio.sleep(0.005)
    async_call = asyncio.ensure_future(make_hook(conn_id="wt_other_hook").aget_current("CAISO_NORTH"))
    for _ in range(2000):
        if any(flight.waiters for flight in shared_flights._flights.values()):
            break
        await asyncio.sleep(0.005)
    second_waits.set()
    await asyncio.gather(sync_call, async_call)
    assert logins(httpserver) == 1
