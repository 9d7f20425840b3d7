"""The toy source of docs/howto/adding-a-source.rst works, sync and async, over loopback HTTP.

The page quotes ``docs/examples/toy_source.py``; this test imports that file and runs its
flows through both drivers and its hook through both halves of the protocol.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from werkzeug import Response

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.exceptions import CarbonAuthError
from airflow_carbon_provider.hooks.base import CarbonIntensitySource
from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.sources._drivers import AsyncDriver, SyncDriver
from airflow_carbon_provider.sources._http import RetryPolicy
from tests.unit.sources.conftest import call, run

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 12, 10, tzinfo=UTC)
KEY = "toy-key-5551234"
TOY = Path(__file__).resolve().parents[2] / "docs" / "examples" / "toy_source.py"


@pytest.fixture(scope="module")
def toy():
    spec = importlib.util.spec_from_file_location("toy_source", TOY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


@pytest.fixture
def policy():
    async def no_sleep(seconds):
        return None

    return RetryPolicy(timeout=5, connect_timeout=2, max_attempts=2, sleep=lambda s: None, async_sleep=no_sleep,
                       rng=random.Random(1))  # fmt: skip


def points(start: datetime, count: int, first: float = 300) -> list[dict]:
    return [
        {"start": (start + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "value": first - i % 100}
        for i in range(count)
    ]


@pytest.fixture
def api(httpserver):
    def answer(request):
        if request.headers.get("x-api-key") != KEY:
            return Response(json.dumps({"error": f"unknown key {request.headers.get('x-api-key')}"}), status=401)
        what = request.path.rsplit("/", 1)[-1]
        if what == "current":
            body = {"zone": "DE", "points": points(NOW.replace(minute=0), 1)}
        elif what == "forecast":
            body = {"zone": "DE", "issued_at": "2026-03-02T12:00:00Z",
                    "points": points(NOW.replace(minute=0), 2 * int(request.args["hours"]))}  # fmt: skip
        else:
            start = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
            body = {"zone": "DE", "points": points(start, int((end - start) / timedelta(minutes=30)))}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/intensity/DE/current").respond_with_handler(answer)
    httpserver.expect_request("/intensity/DE/forecast").respond_with_handler(answer)
    httpserver.expect_request("/intensity/DE/history").respond_with_handler(answer)
    return httpserver


async def test_the_flows_run_with_either_driver(toy, api, mode, policy):
    cls = SyncDriver if mode == "sync" else AsyncDriver
    driver = cls(provider=toy.PROVIDER, base_url=api.url_for("").rstrip("/"), policy=policy)
    current = await run(driver, toy.current_flow("DE", KEY))
    assert current.values == [300] and current.kind is SignalKind.AVERAGE and current.source == "toygrid"
    forecast = await run(driver, toy.forecast_flow("DE", KEY, 6))
    assert forecast.is_forecast and len(forecast) == 12 and forecast.issued_at == datetime(2026, 3, 2, 12, tzinfo=UTC)
    start = datetime(2026, 2, 1, tzinfo=UTC)
    history = await run(driver, toy.history_flow("DE", KEY, start, start + timedelta(days=10)))
    assert history.start == start and history.end == start + timedelta(days=10)
    assert [r.args["start"] for r, _ in api.log if r.path.endswith("/history")] == [
        "2026-02-01T00:00:00Z",
        "2026-02-08T00:00:00Z",
    ]


async def test_the_hook_serves_the_protocol_in_both_modes(toy, api, mode, policy, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TOY", json.dumps({"conn_type": "toygrid", "host": api.url_for("").rstrip("/"),
                                                       "password": KEY}))  # fmt: skip
    hook = toy.ToyGridHook("toy", cache=IntensityCache(), clock=lambda: NOW, retry_policy=policy)
    assert isinstance(hook, CarbonIntensitySource)

    def method(name):
        return getattr(hook, name if mode == "sync" else f"a{name}")

    assert (await call(method("get_current"), "DE")).values == [300]
    forecast = await call(method("get_forecast"), "DE", NOW, NOW + timedelta(hours=2, minutes=50))
    assert forecast.start == NOW and forecast.end == datetime(2026, 3, 2, 15, tzinfo=UTC)  # clipped
    assert api.log[-1][0].args["hours"] == "3"
    history = await call(method("get_history"), "DE", NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    assert len(history) == 2
    assert (await call(method("get_current"), "DE")).values == [300]
    assert len(api.log) == 3  # the second current value came from the cache
    assert hook.test_connection() == (True, "Connected: DE is at 300 gCO2eq/kWh")


async def test_a_rejected_key_is_a_typed_error_without_the_key(toy, api, mode, policy, monkeypatch):
    wrong = "toy-wrong-key-99887766"
    monkeypatch.setenv("AIRFLOW_CONN_TOY_BAD", json.dumps({"conn_type": "toygrid", "host": api.url_for("").rstrip("/"),
                                                           "password": wrong}))  # fmt: skip
    hook = toy.ToyGridHook("toy_bad", cache=None, clock=lambda: NOW, retry_policy=policy)
    with pytest.raises(CarbonAuthError) as info:
        await call(hook.get_current if mode == "sync" else hook.aget_current, "DE")
    assert wrong not in str(info.value) and info.value.zone == "DE" and info.value.status == 401


def test_the_hook_declares_a_connection_form(toy):
    from airflow_carbon_provider.hooks._provider_info import connection_type

    entry = connection_type(toy.ToyGridHook)
    assert entry["connection-type"] == "toygrid" and "timeout" in entry["conn-fields"]
    assert entry["ui-field-behaviour"]["relabeling"]["password"] == "API key"
