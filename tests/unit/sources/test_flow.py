"""Flows and drivers: effects, secrets, shared sub-flows and single-flight across modes."""

from __future__ import annotations

import asyncio
import threading

import pytest

from airflow_carbon_provider.exceptions import CarbonAuthError, CarbonRequestError
from airflow_carbon_provider.sources._flow import Secret, Shared, SingleFlight, get_json, local
from airflow_carbon_provider.sources._http import ApiRequest
from tests.unit.sources.conftest import run


def echoing_flow(secret: str):
    yield Secret(secret)
    return (yield from get_json(ApiRequest("/echo"), "p"))


async def test_a_secret_is_masked_once_and_redacted_from_errors(make_driver, httpserver):
    httpserver.expect_request("/echo").respond_with_json({"error": "bad tok-987654321"}, status=400)
    masked = []
    driver = make_driver("p", on_secret=masked.append)
    with pytest.raises(CarbonRequestError) as info:
        await run(driver, echoing_flow("tok-987654321"))
    assert masked == ["tok-987654321"]
    assert "tok-987654321" not in str(info.value) and "***" in str(info.value)


async def test_an_error_thrown_into_a_flow_can_be_handled_there(make_driver, httpserver):
    httpserver.expect_request("/who").respond_with_json({"error": "expired"}, status=401)

    def flow():
        try:
            yield ApiRequest("/who")
        except CarbonAuthError as exc:
            return f"handled {exc.status}"
        return "not reached"

    assert await run(make_driver("p"), flow()) == "handled 401"


async def test_a_flow_without_requests_and_a_flow_with_a_wrong_effect(make_driver):
    assert await run(make_driver("p"), local(lambda: 42)) == 42

    def wrong():
        yield "GET /thing"

    with pytest.raises(TypeError, match="ApiRequest, Secret or Shared"):
        await run(make_driver("p"), wrong())


async def test_a_shared_sub_flow_runs_once_for_concurrent_callers_of_both_modes(make_driver, httpserver):
    release = threading.Event()
    httpserver.expect_request("/login").respond_with_handler(lambda request: (release.wait(10), _json("t"))[1])

    def flow(key):
        return (yield Shared(key, get_json(ApiRequest("/login"), "p")))

    key = object()
    sync_driver, async_driver = _both(make_driver)
    first = asyncio.ensure_future(asyncio.to_thread(sync_driver.run, flow(key)))
    await _until(lambda: len(httpserver.log) == 0 and _waiting(key) is not None)
    second = asyncio.ensure_future(async_driver.run(flow(key)))
    await asyncio.sleep(0.05)
    release.set()
    assert await first == await second == {"token": "t"}
    assert len(httpserver.log) == 1


async def test_waiters_of_a_leader_cancelled_with_its_loop_try_again():
    flights = SingleFlight()
    started = threading.Event()
    results = []

    async def never():
        started.set()
        await asyncio.sleep(3600)

    def other_loop():
        async def lead():
            task = asyncio.ensure_future(flights.acall("k", never))
            await asyncio.sleep(0.01)
            task.cancel()

        asyncio.run(lead())  # the leader's task is cancelled when its loop shuts down

    async def waiter():
        started.wait(10)
        return await flights.acall("k", lambda: asyncio.sleep(0, "fresh"))

    waiting = asyncio.ensure_future(waiter())
    thread = threading.Thread(target=other_loop)
    thread.start()
    results.append(await waiting)
    thread.join()
    assert results == ["fresh"] and len(flights) == 0


def _json(token):
    from werkzeug import Response

    return Response(f'{{"token": "{token}"}}', content_type="application/json")


def _both(make_driver):
    from airflow_carbon_provider.sources._drivers import AsyncDriver, SyncDriver

    driver = make_driver("p")
    options = {"provider": "p", "base_url": driver.base_url, "policy": driver.policy}
    return SyncDriver(**options), AsyncDriver(**options)


def _waiting(key):
    from airflow_carbon_provider.sources._flow import shared_flights

    return shared_flights._flights.get(key)


async def _until(predicate):
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")
