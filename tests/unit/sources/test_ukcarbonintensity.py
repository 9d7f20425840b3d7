"""UK Carbon Intensity API over real loopback HTTP with recorded bodies, sync and async."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.exceptions import CarbonParseError, CarbonRequestError, CarbonServerError
from airflow_carbon_provider.sources import ukcarbonintensity as uk
from airflow_carbon_provider.sources._drivers import SyncDriver
from airflow_carbon_provider.sources._flow import Client
from tests.unit.sources.conftest import call, sample, sample_bytes

UTC = timezone.utc
P = "ukcarbonintensity"


@pytest.fixture
def client(make_driver):
    """Return the module's flows, run by the driver of the test's mode (``client.current_flow("GB")``)."""
    return Client(make_driver(uk.PROVIDER), uk)


def serve(httpserver, path, name):
    httpserver.expect_request(path).respond_with_data(sample_bytes(P, name), content_type="application/json")


async def test_current_national_reads_the_actual(client, httpserver):
    serve(httpserver, "/intensity", "intensity.real-compact.2020-09-19.json")
    series = await call(client.current_flow, "GB")
    assert series.values == [85] and not series.is_forecast  # actual 85, forecast 83
    assert series.start == datetime(2020, 9, 19, 11, 30, tzinfo=UTC)
    assert series.end == datetime(2020, 9, 19, 12, tzinfo=UTC)
    assert series.kind is SignalKind.AVERAGE


async def test_current_without_an_actual_yet_is_the_forecast_marked_as_such(client, httpserver):
    body = sample(P, "intensity.real-compact.2020-09-19.json")
    body["data"][0]["intensity"]["actual"] = None
    httpserver.expect_request("/intensity").respond_with_json(body)
    series = await call(client.current_flow, "GB")
    assert series.values == [83] and series.is_forecast and series.issued_at is not None


async def test_forecast_48h_real_body_reads_only_the_forecast_field(client, httpserver):
    serve(httpserver, "/intensity/2023-03-14T12:01Z/fw48h", "intensity_fw48h_2023-03-14T1201Z.json")
    issued = datetime(2023, 3, 14, 12, 1, tzinfo=UTC)
    series = await call(client.forecast_flow, "GB", issued, issued_at=issued)
    assert len(series) == 96 and series.is_forecast and series.issued_at == issued
    assert series.values[:3] == [93, 91, 89]
    assert series.start == datetime(2023, 3, 14, 12, tzinfo=UTC)


def test_actual_and_forecast_of_one_answer_stay_apart():
    body = sample(P, "intensity_pt24h_2023-03-16T1201Z.json")
    actual = uk.parse_national(body, field="actual")
    forecast = uk.parse_national(body, field="forecast", issued_at=datetime(2023, 3, 15, tzinfo=UTC))
    assert actual.values[:2] == [202, 203] and forecast.values[:2] == [217, 215]
    assert not actual.is_forecast and forecast.is_forecast


async def test_history_uses_from_to_and_reads_actuals(client, httpserver):
    serve(httpserver, "/intensity/2023-03-15T12:00Z/2023-03-16T12:00Z",
          "intensity_from-to_2023-03-15T1200Z_2023-03-16T1200Z.reconstructed-from-real-pt24h.json")  # fmt: skip
    start = datetime(2023, 3, 15, 12, tzinfo=UTC)
    series = await call(client.history_flow, "GB", start, start + timedelta(days=1))
    assert len(series) == 48 and series.values[0] == 202 and not series.is_forecast


async def test_history_longer_than_14_days_is_split(client, httpserver):
    serve(
        httpserver, "/intensity/2023-03-01T00:00Z/2023-03-15T00:00Z", "intensity_pt24h_2023-03-16T1201Z.json"
    )
    serve(
        httpserver, "/intensity/2023-03-15T00:00Z/2023-03-29T00:00Z", "intensity_pt24h_2023-03-16T1201Z.json"
    )
    serve(
        httpserver, "/intensity/2023-03-29T00:00Z/2023-03-31T00:00Z", "intensity_pt24h_2023-03-16T1201Z.json"
    )
    start = datetime(2023, 3, 1, tzinfo=UTC)
    await call(client.history_flow, "GB", start, start + timedelta(days=30))
    assert [r.path for r, _ in httpserver.log] == [
        "/intensity/2023-03-01T00:00Z/2023-03-15T00:00Z",
        "/intensity/2023-03-15T00:00Z/2023-03-29T00:00Z",
        "/intensity/2023-03-29T00:00Z/2023-03-31T00:00Z",
    ]


async def test_regional_forecast_whose_data_is_an_object(client, httpserver):
    serve(httpserver, "/regional/intensity/2023-03-13T01:31Z/fw48h/regionid/1",
          "regional_intensity_fw48h_regionid-1_2023-03-13T0131Z.real-truncated.json")  # fmt: skip
    series = await call(client.forecast_flow, "GB-1", datetime(2023, 3, 13, 1, 31, tzinfo=UTC))
    assert len(series) == 11 and series.zone == "GB-1" and series.is_forecast
    assert series.start == datetime(2023, 3, 13, 1, 30, tzinfo=UTC)


async def test_regional_by_postcode_with_the_list_shaped_data(client, httpserver):
    body = sample(P, "regional_intensity_fw48h_regionid.docs-example.syntax-fixed.json")
    httpserver.expect_request("/regional/intensity/2018-01-20T12:00Z/fw48h/postcode/RG10").respond_with_json(
        body
    )
    series = await call(client.forecast_flow, "GB-RG10", datetime(2018, 1, 20, 12, tzinfo=UTC))
    assert series.values == [266]


async def test_current_regional_and_postcode_paths(client, httpserver):
    body = sample(P, "regional_regionid.docs-example.syntax-fixed.json")
    httpserver.expect_request("/regional/regionid/3").respond_with_json(body)
    httpserver.expect_request("/regional/postcode/M1").respond_with_json(body)
    assert (await call(client.current_flow, "GB-3")).values == [266]
    assert (await call(client.current_flow, "gb-m1")).values == [266]


async def test_real_outage_500_is_retried_then_a_server_error(client, httpserver):
    serve_error = sample_bytes(P, "error_500_resource-not-found.real-2025-01-13.json")
    httpserver.expect_request("/intensity").respond_with_data(serve_error, status=500)
    with pytest.raises(CarbonServerError, match="Requested resource not found") as info:
        await call(client.current_flow, "GB")
    assert len(httpserver.log) == 3 and info.value.provider == "ukcarbonintensity"


def test_regional_answer_for_another_region_is_refused():
    body = sample(P, "regional_regionid.docs-example.syntax-fixed.json")  # regionid 3
    with pytest.raises(CarbonParseError) as info:
        uk.parse_regional(body, "GB-4")
    assert info.value.field == "data[0].regionid"


def test_the_published_docs_example_is_invalid_json_and_says_so(httpserver, policy):
    serve(httpserver, "/intensity", "regional_regionid.docs-example.as-published.txt")
    driver = SyncDriver(provider=uk.PROVIDER, base_url=httpserver.url_for("").rstrip("/"), policy=policy)
    with pytest.raises(CarbonParseError) as info:
        driver.run(uk.current_flow("GB"))
    assert info.value.field == "<body>"


def test_missing_actual_key_is_named():
    body = sample(P, "regional_regionid.docs-example.syntax-fixed.json")["data"][0]
    with pytest.raises(CarbonParseError) as info:
        uk.parse_national({"data": body["data"]}, field="actual")
    assert info.value.field == "data[0].intensity.actual"


@pytest.mark.parametrize(
    ("zone", "region", "postcode"),
    [("GB", None, None), ("GB-13", 13, None), ("gb-rg10", None, "RG10"), ("GB-EC1A", None, "EC1A")],
)
def test_zone_names(zone, region, postcode):
    parsed = uk.parse_zone(zone)
    assert (parsed.region_id, parsed.postcode) == (region, postcode)


@pytest.mark.parametrize("zone", ["UK", "GB-0", "GB-99", "GB-", "GB-RG10 1AA", "DE"])
def test_bad_zone_names(zone):
    with pytest.raises(CarbonRequestError):
        uk.parse_zone(zone)


@pytest.mark.parametrize("stem", ["intensity_fw48h_2023-03-14T1201Z", "intensity_pt24h_2023-03-16T1201Z"])
def test_the_archived_exact_bytes_parse_like_the_compact_copy(stem):
    for field in ("forecast", "actual"):
        try:
            compact = uk.parse_national(sample(P, f"{stem}.json"), field=field)
        except CarbonParseError as exc:  # the fw48h capture has no actuals yet
            with pytest.raises(CarbonParseError) as again:
                uk.parse_national(sample(P, f"{stem}.archived.json"), field=field)
            assert again.value.field == exc.field
        else:
            assert uk.parse_national(sample(P, f"{stem}.archived.json"), field=field) == compact


async def test_docs_400_body(client, httpserver):
    serve_400 = sample_bytes(P, "error_400.docs-example.json")
    httpserver.expect_request("/intensity").respond_with_data(serve_400, status=400)
    with pytest.raises(CarbonRequestError, match="400 Bad Request") as info:
        await call(client.current_flow, "GB")
    assert info.value.status == 400 and len(httpserver.log) == 1


def test_a_null_actual_inside_a_history_is_a_gap_and_trailing_nulls_are_left_out():
    body = sample(P, "intensity_pt24h_2023-03-16T1201Z.json")
    periods = body["data"]
    for item in periods:
        item["intensity"]["actual"] = item["intensity"]["actual"] if item["intensity"]["actual"] is not None else 200
    periods[10]["intensity"]["actual"] = None
    periods[-1]["intensity"]["actual"] = None  # the running half-hour: not measured yet
    series = uk.parse_national(body, "GB", field="actual")
    start = datetime.fromisoformat(periods[10]["from"].replace("Z", "+00:00"))
    assert series.gaps == ((start, start + timedelta(minutes=30)),)
    assert len(series.intervals) == len(periods) - 2
    assert series.end == datetime.fromisoformat(periods[-1]["from"].replace("Z", "+00:00"))
