"""WattTime v3 over real loopback HTTP: login and token lifecycle, parsing, errors; sync and async."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.exceptions import (
    CarbonAuthError,
    CarbonNoAccessError,
    CarbonParseError,
    CarbonRequestError,
    CarbonUnsupportedError,
)
from airflow_carbon_provider.sources import watttime as wt
from airflow_carbon_provider.sources._flow import Client
from tests.unit.sources.conftest import call, sample, sample_bytes

UTC = timezone.utc
P = "watttime"
USER, PASSWORD = "freddo", "the-password-42"
TOKEN = sample(P, "login.docs-example.json")["token"]
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
LBS = 0.45359237


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def masked():
    return []


@pytest.fixture
def client(make_driver, clock, masked):
    """Return the flows of one WattTime account, run by the test's driver; tokens masked into ``masked``."""
    driver = make_driver(wt.PROVIDER, wt.classify_error, on_secret=masked.append)
    return Client(driver, wt.WattTime(USER, PASSWORD, tokens=wt.TokenState(monotonic=clock)))


def expect_login(httpserver, token=TOKEN, oneshot=False):
    expect = httpserver.expect_oneshot_request if oneshot else httpserver.expect_request
    expect("/login", headers={"Authorization": BASIC}).respond_with_json({"token": token})


def logins(httpserver):
    return sum(1 for request, _ in httpserver.log if request.path == "/login")


def serve(httpserver, path, name, token=TOKEN, **query):
    httpserver.expect_request(
        path, headers={"Authorization": f"Bearer {token}"}, query_string=query or None
    ).respond_with_data(sample_bytes(P, name), content_type="application/json")


async def test_forecast_logs_in_masks_the_token_and_converts_units(client, httpserver, masked):
    expect_login(httpserver)
    serve(httpserver, "/v3/forecast", "forecast.docs-example.json",
          region="CAISO_NORTH", signal_type="co2_moer", horizon_hours="24")  # fmt: skip
    series = await call(client.forecast, "CAISO_NORTH", 24)
    assert masked == [TOKEN]
    assert series.kind is SignalKind.MARGINAL and series.is_forecast
    assert len(series) == 288
    assert series.intervals[0].end - series.intervals[0].start == timedelta(minutes=5)
    assert series.values[0] == pytest.approx(870 * LBS)
    assert series.issued_at == datetime(2022, 7, 15, tzinfo=UTC)


async def test_the_token_is_reused_then_renewed_before_it_expires(client, httpserver, clock):
    expect_login(httpserver)
    serve(httpserver, "/v3/forecast", "forecast.docs-example.json")
    await call(client.forecast, "CAISO_NORTH", 1)
    clock.now += 20 * 60  # 20 minutes: still valid
    await call(client.forecast, "CAISO_NORTH", 1)
    assert logins(httpserver) == 1
    clock.now += 6 * 60  # 26 minutes: inside the 5-minute renewal margin of a 30-minute token
    await call(client.forecast, "CAISO_NORTH", 1)
    assert logins(httpserver) == 2


async def test_a_401_triggers_exactly_one_new_login(client, httpserver, masked):
    expect_login(httpserver, "old-token-aaaaaaaa", oneshot=True)
    expect_login(httpserver, "new-token-bbbbbbbb")
    httpserver.expect_request(
        "/v3/historical", headers={"Authorization": "Bearer old-token-aaaaaaaa"}
    ).respond_with_json({"error": "expired"}, status=401)
    serve(httpserver, "/v3/historical", "historical.docs-example.json", token="new-token-bbbbbbbb")
    start = datetime(2022, 7, 15, tzinfo=UTC)
    series = await call(client.historical, "CAISO_NORTH", start, start + timedelta(minutes=10))
    assert series.values == pytest.approx([870 * LBS, 860 * LBS])
    assert all(iv.estimated for iv in series.intervals)  # imputed_data_used
    assert masked == ["old-token-aaaaaaaa", "new-token-bbbbbbbb"]
    assert logins(httpserver) == 2


async def test_a_second_401_is_an_auth_error_not_a_loop(client, httpserver):
    expect_login(httpserver)
    httpserver.expect_request("/v3/forecast").respond_with_json({"error": "no"}, status=401)
    with pytest.raises(CarbonAuthError) as info:
        await call(client.forecast, "CAISO_NORTH", 1)
    assert logins(httpserver) == 2
    assert info.value.status == 401 and info.value.zone == "CAISO_NORTH"


async def test_a_refused_login_is_an_auth_error_without_the_password(client, httpserver):
    httpserver.expect_request("/login").respond_with_data(
        sample_bytes(P, "error_403_forbidden.nginx-html.client-fixture.txt"), status=403
    )
    with pytest.raises(CarbonAuthError) as info:
        await call(client.forecast, "CAISO_NORTH", 1)
    assert "403 Forbidden" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert len(httpserver.log) == 1


async def test_a_token_echoed_in_an_error_is_redacted(client, httpserver):
    expect_login(httpserver)
    httpserver.expect_request("/v3/forecast").respond_with_json({"error": f"bad token {TOKEN}"}, status=400)
    with pytest.raises(CarbonRequestError) as info:
        await call(client.forecast, "CAISO_NORTH", 1)
    assert TOKEN not in str(info.value)


async def test_plan_without_access_is_no_access(client, httpserver):
    expect_login(httpserver)
    httpserver.expect_request("/v3/forecast").respond_with_data(
        sample_bytes(P, "error_403_invalid-scope.client-fixture.json"), status=403
    )
    with pytest.raises(CarbonNoAccessError, match="Invalid scope"):
        await call(client.forecast, "PJM_NJ", 1)


async def test_signal_index_region_and_access(client, httpserver):
    expect_login(httpserver)
    serve(httpserver, "/v3/signal-index", "signal-index.client-fixture.PSCO.2024-06-18.json",
          region="PSCO", signal_type="co2_moer")  # fmt: skip
    serve(httpserver, "/v3/region-from-loc", "region-from-loc.docs-example.json",
          latitude="42.372", longitude="-72.519", signal_type="co2_moer")  # fmt: skip
    serve(httpserver, "/v3/my-access", "my-access.docs-example.json")
    index = await call(client.signal_index, "PSCO")
    assert index.percentile == 96.0 and index.point_time == datetime(2024, 6, 18, 18, 40, tzinfo=UTC)
    region = await call(client.region_from_loc, 42.372, -72.519)
    assert (region.region, region.region_full_name) == ("ISONE_WCMA", "ISONE Western/Central Massachusetts")
    access = await call(client.my_access)
    assert access == {"co2_moer": {"PJM_NJ": ("v3/forecast", "v3/historical")}}
    assert logins(httpserver) == 1


async def test_coordinates_without_coverage(client, httpserver):
    expect_login(httpserver)
    httpserver.expect_request("/v3/region-from-loc").respond_with_data(
        sample_bytes(P, "error_400_coordinates-not-found.client-fixture.json"), status=400
    )
    with pytest.raises(CarbonRequestError, match="No coverage"):
        await call(client.region_from_loc, 0, 0)


async def test_long_history_is_split_into_30_day_requests(client, httpserver):
    expect_login(httpserver)
    serve(httpserver, "/v3/historical", "historical.docs-example.json")
    start = datetime(2022, 7, 15, tzinfo=UTC)
    await call(client.historical, "CAISO_NORTH", start, start + timedelta(days=45))
    starts = [r.args["start"] for r, _ in httpserver.log if r.path == "/v3/historical"]
    assert starts == ["2022-07-15T00:00:00Z", "2022-08-14T00:00:00Z"]


async def test_average_signal_has_no_forecast(make_driver, httpserver):
    client = Client(make_driver(wt.PROVIDER), wt.WattTime(USER, PASSWORD, signal_type="co2_aoer"))
    with pytest.raises(CarbonUnsupportedError):
        await call(client.forecast, "CAISO_NORTH", 1)
    assert len(httpserver.log) == 0


def test_average_history_is_average():
    body = sample(P, "historical.docs-example.json")
    body["meta"]["signal_type"] = "co2_aoer"
    assert wt.parse_historical(body, "CAISO_NORTH", "co2_aoer").kind is SignalKind.AVERAGE


def test_forecast_historical_shape_is_not_mistaken_for_a_forecast():
    with pytest.raises(CarbonParseError) as info:
        wt.parse_forecast(sample(P, "forecast_historical.docs-example.json"), "CAISO_NORTH")
    assert info.value.field == "data[0].point_time"


def test_unknown_units_are_refused():
    body = sample(P, "forecast.docs-example.json")
    body["meta"]["units"] = "percentile"
    with pytest.raises(CarbonParseError) as info:
        wt.parse_forecast(body, "CAISO_NORTH")
    assert info.value.field == "meta.units"


def test_answer_for_another_region_is_refused():
    with pytest.raises(CarbonParseError) as info:
        wt.parse_forecast(sample(P, "forecast.docs-example.json"), "PJM_NJ")
    assert info.value.field == "meta.region"


def test_login_without_token():
    with pytest.raises(CarbonParseError) as info:
        wt.parse_login({"ok": "User created", "user": "freddo"})
    assert info.value.field == "token"


def test_credentials_are_required():
    with pytest.raises(CarbonAuthError):
        wt.WattTime("", "")


@pytest.mark.parametrize(
    ("name", "status", "text"),
    [
        ("error_422_validation.reconstructed.json", 422, "query.region: field required"),
        ("error_4xx.docs-example.json", 400, "INVALID_QUERY_PARAMS - You've provided invalid parameters"),
    ],
)
async def test_documented_error_bodies(client, httpserver, name, status, text):
    expect_login(httpserver)
    httpserver.expect_request("/v3/forecast").respond_with_data(sample_bytes(P, name), status=status)
    with pytest.raises(CarbonRequestError, match=text):
        await call(client.forecast, "CAISO_NORTH", 1)
