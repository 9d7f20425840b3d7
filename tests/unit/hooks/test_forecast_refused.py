"""A source that refuses forecasts (403) but serves history: the fetch step forecasts from history.

Over real loopback HTTP (pytest-httpserver), as Electricity Maps' free plan answers: latest
and history open, forecast refused.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow_carbon_provider.scheduling.fetching import afetch_source
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import sample, sample_bytes

UTC = timezone.utc
KEY = "em-hook-key-abcdef"
HISTORY = "carbon-intensity_history.real.DE.2024-03-06.json"  # 2024-03-05T20:00Z to 2024-03-06T19:00Z


async def test_a_refused_forecast_is_built_from_measured_history(add_connection, httpserver):
    add_connection("em_free", "electricitymaps", host=httpserver.url_for("").rstrip("/"), password=KEY)
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(
        {"error": "Your plan does not include forecasts", "status": 403}, status=403)
    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_json(  # a week: not on this plan
        {"error": "Your plan does not include past-range", "status": 403}, status=403)
    httpserver.expect_request("/v3/carbon-intensity/history").respond_with_data(
        sample_bytes("electricitymaps", HISTORY), content_type="application/json")
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json({"error": "nope"}, status=403)
    now = datetime(2024, 3, 6, 20, 10, tzinfo=UTC)
    until = datetime(2024, 3, 7, 8, tzinfo=UTC)
    series = await afetch_source("em_free", "DE", now, until, clock=FixedClock(now))
    rows = sample("electricitymaps", HISTORY)["history"]
    assert series.start == now and series.end == until and series.is_forecast
    assert series.values[0] == rows[-1]["carbonIntensity"]  # the latest measured value
    # Further ahead it relaxes toward the day before at the same hour.
    by_time = {r["datetime"][:13]: r["carbonIntensity"] for r in rows}
    later = series.value_at(datetime(2024, 3, 7, 6, tzinfo=UTC))
    assert abs(later - by_time["2024-03-06T06"]) < abs(rows[-1]["carbonIntensity"] - by_time["2024-03-06T06"])
    assert [r.path for r, _ in httpserver.log][:3] == [
        "/v3/carbon-intensity/forecast", "/v3/carbon-intensity/past-range", "/v3/carbon-intensity/history"]
