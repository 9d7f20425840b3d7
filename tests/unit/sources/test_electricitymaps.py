"""Electricity Maps v3 over real loopback HTTP, with the recorded bodies, sync and async."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.exceptions import (
    CarbonAuthError,
    CarbonNotFoundError,
    CarbonParseError,
    CarbonRateLimitError,
    CarbonServerError,
)
from airflow_carbon_provider.sources import electricitymaps as em
from airflow_carbon_provider.sources._flow import Client
from tests.unit.sources.conftest import call, run, sample, sample_bytes

UTC = timezone.utc
KEY = "em-test-key-0123456789"
P = "electricitymaps"


@pytest.fixture
def client(make_driver):
    """Return the flows of Electricity Maps, run by the driver of the test's mode."""
    return Client(make_driver(em.PROVIDER, em.classify_error), em.ElectricityMaps(KEY))


def serve(httpserver, path, name, **query):
    httpserver.expect_request(
        f"/v3/carbon-intensity/{path}", headers={"auth-token": KEY}, query_string=query or None
    ).respond_with_data(sample_bytes(P, name), content_type="application/json")


async def test_latest_real_body(client, httpserver):
    serve(httpserver, "latest", "carbon-intensity_latest.real-compact.BE.2024-11-28.json",
          zone="BE", emissionFactorType="lifecycle")  # fmt: skip
    series = await call(client.latest, "BE")
    assert series.zone == "BE" and series.kind is SignalKind.AVERAGE and series.source == "electricitymaps"
    (interval,) = series.intervals
    assert interval.start == datetime(2024, 11, 28, 15, tzinfo=UTC)
    assert interval.end == datetime(2024, 11, 28, 16, tzinfo=UTC)
    assert interval.value == 214 and interval.estimated is True
    assert not series.is_forecast


async def test_direct_emission_factor_is_requested(make_driver, httpserver):
    body = sample(P, "carbon-intensity_latest.real.US-CAR-DUK.2024-03-06.json") | {
        "emissionFactorType": "direct"
    }
    httpserver.expect_request(
        "/v3/carbon-intensity/latest", query_string={"zone": "US-CAR-DUK", "emissionFactorType": "direct"}
    ).respond_with_json(body)
    options = em.EMOptions(emission_factor_type="direct")
    driver = make_driver(em.PROVIDER, em.classify_error)
    series = await run(driver, em.ElectricityMaps(KEY, options).latest("US-CAR-DUK"))
    assert series.values == [216]


async def test_an_answer_with_the_other_emission_factor_is_refused(client, httpserver):
    body = sample(P, "carbon-intensity_latest.real.US-CAR-DUK.2024-03-06.json") | {
        "emissionFactorType": "direct"
    }
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(body)
    with pytest.raises(CarbonParseError) as info:
        await call(client.latest, "US-CAR-DUK")
    assert info.value.field == "<body>.emissionFactorType"


async def test_history_real_body_keeps_estimated_flags(client, httpserver):
    serve(httpserver, "history", "carbon-intensity_history.real.DE.2024-03-06.json")
    series = await call(client.history, "DE")
    assert len(series) == 24
    assert series.start == datetime(2024, 3, 5, 20, tzinfo=UTC)
    assert series.end == datetime(2024, 3, 6, 20, tzinfo=UTC)
    estimated = [iv.estimated for iv in series.intervals]
    assert estimated.count(True) == 2 and estimated[-1] is True
    assert series.values[0] == 599


async def test_forecast_sends_horizon_and_keeps_issue_time(client, httpserver):
    serve(httpserver, "forecast", "carbon-intensity_forecast.reconstructed-24h.DE.json",
          zone="DE", emissionFactorType="lifecycle", horizonHours="24")  # fmt: skip
    series = await call(client.forecast, "DE", 24)
    assert series.is_forecast and len(series) == 24
    assert series.issued_at == datetime(2023, 5, 31, 23, 45, tzinfo=UTC)
    assert series.values[:3] == [272, 266, 267]


async def test_past_range_with_a_gap_keeps_every_known_hour_and_marks_the_gap(client, httpserver):
    # The real body kept the first two and the last of 24 hourly entries.
    serve(httpserver, "past-range", "carbon-intensity_past-range.real-truncated.US-CAR-DUK.2023-07-13.json")
    start, end = datetime(2023, 7, 13, tzinfo=UTC), datetime(2023, 7, 14, tzinfo=UTC)
    series = await call(client.past_range, "US-CAR-DUK", start, end)
    assert [iv.start.hour for iv in series.intervals] == [0, 1, 23]
    assert [iv.value for iv in series.intervals] == [369, 365, 386]
    assert series.gaps == ((datetime(2023, 7, 13, 2, tzinfo=UTC), datetime(2023, 7, 13, 23, tzinfo=UTC)),)
    query = httpserver.log[0][0].args
    assert query["start"] == "2023-07-13T00:00:00Z" and query["end"] == "2023-07-14T00:00:00Z"


async def test_past_range_longer_than_ten_days_is_split_and_joined(client, httpserver):
    template = sample(P, "carbon-intensity_past-range.docs-example.json")["data"][0]

    def hourly(request):
        # Answer each piece with hourly entries shaped like the real ones (end inclusive, as
        # the API does), so the pieces overlap by one hour at each seam.
        start = datetime.fromisoformat(request.args["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(request.args["end"].replace("Z", "+00:00"))
        rows, t = [], start
        while t <= end:
            stamp = t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            rows.append(dict(template, datetime=stamp, carbonIntensity=100 + t.hour))
            t += timedelta(hours=1)
        return Response(json.dumps({"zone": "DE", "data": rows}), content_type="application/json")

    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_handler(hourly)
    start = datetime(2019, 5, 1, tzinfo=UTC)
    series = await call(client.past_range, "DE", start, start + timedelta(days=25))
    ranges = [(r.args["start"], r.args["end"]) for r, _ in httpserver.log]
    assert ranges == [
        ("2019-05-01T00:00:00Z", "2019-05-11T00:00:00Z"),
        ("2019-05-11T00:00:00Z", "2019-05-21T00:00:00Z"),
        ("2019-05-21T00:00:00Z", "2019-05-26T00:00:00Z"),
    ]
    assert series.start == start and len(series) == 25 * 24 + 1
    assert series.value_at(datetime(2019, 5, 15, 7, tzinfo=UTC)) == 107


def test_past_range_pieces_join_into_one_series():
    body = sample(P, "carbon-intensity_past-range.docs-example.json")
    first = em.parse_past_range(body, "DE")
    later = {
        "zone": "DE",
        "data": [dict(body["data"][-1], datetime="2019-05-22T00:00:00.000Z", carbonIntensity=300)],
    }
    joined = em.join_pieces("DE", [first, em.parse_past_range(later, "DE")])
    assert len(joined) == len(first) + 1 and joined.values[-1] == 300


async def test_invalid_key_401_is_an_auth_error_and_is_not_retried(client, httpserver, sleeps):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        sample_bytes(P, "error_401_invalid-auth-token.real.json"), status=401
    )
    with pytest.raises(CarbonAuthError) as info:
        await call(client.latest, "DE")
    assert "Invalid auth-token" in str(info.value) and KEY not in str(info.value)
    assert (info.value.status, info.value.zone) == (401, "DE")
    assert len(httpserver.log) == 1 and sleeps.delays == []


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ('{"error":"Rate limit exceeded"}', {}),
        ('{"message":"Too Many Requests"}', {}),
        ('{"error":"Unauthorized"}', {"Retry-After": "2"}),
    ],
)
async def test_a_401_that_is_a_rate_limit_is_retried_not_taken_for_bad_credentials(
    client, httpserver, sleeps, body, headers
):
    httpserver.expect_oneshot_request("/v3/carbon-intensity/latest").respond_with_data(
        body, status=401, headers=headers
    )
    serve(httpserver, "latest", "carbon-intensity_latest.real-compact.BE.2024-11-28.json")
    series = await call(client.latest, "BE")
    assert series.values == [214]
    assert len(httpserver.log) == 2 and len(sleeps.delays) == 1


async def test_a_persistent_401_rate_limit_surfaces_as_rate_limited(client, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        '{"error":"API rate limit exceeded"}', status=401
    )
    with pytest.raises(CarbonRateLimitError) as info:
        await call(client.latest, "DE")
    assert info.value.status == 401


async def test_real_500_body_is_retried_then_a_server_error(client, httpserver, sleeps):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        sample_bytes(P, "error_500_unknown.real-2017.json"), status=500
    )
    with pytest.raises(CarbonServerError, match="Unknown error occured"):
        await call(client.latest, "DE")
    assert len(httpserver.log) == 3


async def test_no_data_404(client, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": "No recent data available for this zone"}, status=404
    )
    with pytest.raises(CarbonNotFoundError, match="No recent data"):
        await call(client.latest, "XX")


async def test_null_latest_value_is_a_parse_error_naming_the_field(client, httpserver):
    body = sample(P, "carbon-intensity_latest.real-compact.BE.2024-11-28.json") | {"carbonIntensity": None}
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(body)
    with pytest.raises(CarbonParseError) as info:
        await call(client.latest, "BE")
    assert info.value.field == "carbonIntensity"


async def test_empty_forecast_is_a_parse_error(client, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(
        {"zone": "DE", "forecast": []}
    )
    with pytest.raises(CarbonParseError) as info:
        await call(client.forecast, "DE", 24)
    assert info.value.field == "forecast"


def test_a_null_value_inside_a_history_becomes_a_gap_and_every_other_hour_is_kept():
    body = sample(P, "carbon-intensity_history.real.DE.2024-03-06.json")
    body["history"][5]["carbonIntensity"] = None
    series = em.parse_history(body, "DE")
    assert len(series.intervals) == 23 and series.start == datetime(2024, 3, 5, 20, tzinfo=UTC)
    assert series.gaps == ((datetime(2024, 3, 6, 1, tzinfo=UTC), datetime(2024, 3, 6, 2, tzinfo=UTC)),)


def test_nulls_at_the_edges_are_left_out():
    body = sample(P, "carbon-intensity_history.real.DE.2024-03-06.json")
    for index in (0, 1, 23):
        body["history"][index]["carbonIntensity"] = None
    series = em.parse_history(body, "DE")
    assert not series.has_gaps and len(series) == 21
    assert (series.start, series.end) == (datetime(2024, 3, 5, 22, tzinfo=UTC), datetime(2024, 3, 6, 19, tzinfo=UTC))


def test_a_forecast_with_a_null_is_planned_on_every_known_hour():
    """Issue 9: a forecast 500, 20, 20, null, 300, ... was cut to its longest run (the 300s);
    spliced with the current value from now, it planned a start at +4 h at 300. Every known
    hour is kept now, so the plan starts at +1 h, at 20."""
    from airflow_carbon_provider.core.planner import Candidate, plan
    from airflow_carbon_provider.core.signals import splice_current

    now = datetime(2024, 3, 6, 12, tzinfo=UTC)
    values = [500, 20, 20, None, 300, 300, 300, 300, 300, 300]
    body = {
        "zone": "DE",
        "updatedAt": "2024-03-06T11:55:00.000Z",
        "forecast": [
            {"datetime": (now + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "carbonIntensity": v}
            for i, v in enumerate(values)
        ],
    }
    forecast = em.parse_forecast(body, "DE")
    assert forecast.gaps == ((now + timedelta(hours=3), now + timedelta(hours=4)),)
    if forecast.bounds[0] > now.timestamp():  # as scheduling does with a forecast that starts late
        current = em.parse_latest({"zone": "DE", "carbonIntensity": 500, "datetime": body["forecast"][0]["datetime"]},
                                  "DE")  # fmt: skip
        forecast = splice_current(current, forecast, now)
    decision = plan([Candidate("k8s_de", "DE")], {"DE": forecast}, now=now, duration=timedelta(hours=1),
                    latest_start=now + timedelta(hours=8))  # fmt: skip
    assert decision.chosen.start == now + timedelta(hours=1)
    assert decision.chosen.mean_intensity == pytest.approx(20)


def test_all_null_history_names_the_value_field():
    body = sample(P, "carbon-intensity_history.docs-example.json")
    for item in body["history"]:
        item["carbonIntensity"] = None
    with pytest.raises(CarbonParseError) as info:
        em.parse_history(body, "DE")
    assert info.value.field == "history[*].carbonIntensity"


def test_an_answer_for_another_zone_is_refused():
    with pytest.raises(CarbonParseError) as info:
        em.parse_latest(sample(P, "carbon-intensity_latest.docs-example.json"), "FR")
    assert info.value.field == "zone"


def test_forecast_docs_example_gap_keeps_all_three_hours():
    series = em.parse_forecast(sample(P, "carbon-intensity_forecast.docs-example.json"), "DK-DK2")
    assert [iv.value for iv in series.intervals] == [326, 297, 194]
    assert series.gaps == ((datetime(2018, 11, 26, 19, tzinfo=UTC), datetime(2018, 11, 28, 17, tzinfo=UTC)),)


@pytest.mark.parametrize(("hours", "expected"), [(None, 24), (1, 6), (6, 6), (7, 24), (30, 48), (100, 72)])
def test_pick_horizon(hours, expected):
    assert em.pick_horizon(None if hours is None else timedelta(hours=hours)) == expected


@pytest.mark.parametrize(
    ("name", "zone", "value", "start"),
    [
        (
            "carbon-intensity_latest.real-compact.US-CAR-DUK.2025-03-29.json",
            "US-CAR-DUK",
            144,
            datetime(2025, 3, 29, 18, tzinfo=UTC),
        ),
        (
            "carbon-intensity_latest.real.US-CAR-DUK.2024-03-06.json",
            "US-CAR-DUK",
            216,
            datetime(2024, 3, 6, 19, tzinfo=UTC),
        ),
        (
            "carbon-intensity_latest.docs-example.json",
            "DE",
            302,
            datetime(2018, 4, 25, 18, 7, 0, 350000, tzinfo=UTC),
        ),
    ],
)
async def test_latest_other_recorded_bodies(client, httpserver, name, zone, value, start):
    serve(httpserver, "latest", name)
    series = await call(client.latest, zone)
    assert series.values == [value] and series.start == start and series.intervals[0].estimated
