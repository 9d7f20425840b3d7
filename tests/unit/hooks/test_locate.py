"""Coordinates to a source's key over real loopback HTTP, through each source's own location endpoint.

Electricity Maps answers a ``lat``/``lon`` query with the envelope of a zone query, its
``zone`` naming the zone that covers the point (the recorded body is a real answer for
US-CAR-DUK; issue #6351 of electricitymaps-contrib shows a lat/lon request answered the same
way). WattTime's ``/v3/region-from-loc`` is served its documented example and the recorded
"no coverage" error.
"""

from __future__ import annotations

import pytest
from werkzeug import Response

from airflow_carbon_provider.exceptions import CarbonRequestError, CarbonUnsupportedError
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.hooks.ukcarbonintensity import UKCarbonIntensityHook
from airflow_carbon_provider.hooks.watttime import WattTimeHook
from tests.unit.sources.conftest import call, sample_bytes

KEY = "em-locate-key-abcdef"
TOKEN = "wt-locate-token-0f9e8d7c6b5a"


@pytest.fixture(params=["sync", "async"])
def mode(request):
    return request.param


def locate(hook, mode):
    return hook.locate if mode == "sync" else hook.alocate


async def test_electricitymaps_names_the_zone_at_a_location_once_a_day(add_connection, httpserver, cache, policy,
                                                                         mode):
    add_connection("em_loc", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password=KEY)
    httpserver.expect_request(
        "/v3/carbon-intensity/latest", headers={"auth-token": KEY},
        query_string={"lat": "35.23", "lon": "-80.84", "disableCallerLookup": "true"},
    ).respond_with_data(sample_bytes("electricitymaps", "carbon-intensity_latest.real-compact.US-CAR-DUK.2025-03-29.json"),
                        content_type="application/json")  # fmt: skip
    hook = ElectricityMapsHook("em_loc", cache=cache, retry_policy=policy)
    assert await call(locate(hook, mode), 35.23, -80.84) == "US-CAR-DUK"
    assert await call(locate(hook, mode), 35.23, -80.84) == "US-CAR-DUK"
    assert len(httpserver.log) == 1  # cached like carbon data: a zone does not move


@pytest.fixture
def watttime(add_connection, httpserver, cache, policy):
    add_connection("wt_loc", "watttime", host=httpserver.url_for("").rstrip("/"), login="freddo",
                   password="pw-secret-1234")  # fmt: skip
    httpserver.expect_request("/login").respond_with_json({"token": TOKEN})
    return WattTimeHook("wt_loc", cache=cache, retry_policy=policy)


async def test_watttime_names_the_region_at_a_location(watttime, httpserver, mode):
    httpserver.expect_request(
        "/v3/region-from-loc", headers={"Authorization": f"Bearer {TOKEN}"},
        query_string={"latitude": "42.372", "longitude": "-72.519", "signal_type": "co2_moer"},
    ).respond_with_data(sample_bytes("watttime", "region-from-loc.docs-example.json"), content_type="application/json")
    assert await call(locate(watttime, mode), 42.372, -72.519) == "ISONE_WCMA"


async def test_watttime_outside_its_coverage_is_a_typed_error_with_its_message(watttime, httpserver, mode):
    httpserver.expect_request("/v3/region-from-loc").respond_with_response(Response(
        sample_bytes("watttime", "error_400_coordinates-not-found.client-fixture.json"), status=400,
        content_type="application/json"))
    with pytest.raises(CarbonRequestError, match="No coverage available for these coordinates"):
        await call(locate(watttime, mode), 0.0, 0.0)


async def test_a_source_without_a_location_lookup_says_so(add_connection, cache, mode):
    hook = UKCarbonIntensityHook(cache=cache)
    with pytest.raises(CarbonUnsupportedError, match="has no location lookup; name the zone by its key"):
        await call(locate(hook, mode), 51.51, -0.13)
