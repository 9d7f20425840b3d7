"""Trace replay: how wall-clock time maps onto the trace, and what is served from it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from airflow_carbon_provider.exceptions import CarbonConfigError, CarbonNoDataError, CarbonNotFoundError
from airflow_carbon_provider.sources import carbontrace as ct

UTC = timezone.utc
TRACE_START = datetime(2023, 3, 1, tzinfo=UTC)  # the bundled slice: March 2023, hourly
ACTUALS = read_trace(bundled_trace_path())


def test_the_anchor_replays_the_replay_start_and_time_runs_on():
    replay = ct.load_replay()
    assert replay.clock.replayed(ct.DEFAULT_ANCHOR) == TRACE_START
    assert replay.clock.replayed(
        ct.DEFAULT_ANCHOR + timedelta(hours=5, minutes=7)
    ) == TRACE_START + timedelta(hours=5, minutes=7)


def test_looping_keeps_the_time_of_day_and_always_leaves_a_forecast_horizon():
    replay = ct.load_replay()
    assert replay.clock.lap == timedelta(days=29)  # 31 days minus 48 h
    for days in (0, 28, 29, 30, 400, 1000, -3):
        now = ct.DEFAULT_ANCHOR + timedelta(days=days, hours=13, minutes=30)
        replayed = replay.clock.replayed(now)
        assert (replayed.hour, replayed.minute) == (13, 30)
        assert TRACE_START <= replayed and replayed + timedelta(hours=48) <= TRACE_START + timedelta(days=31)


def test_current_is_the_trace_interval_shifted_to_wall_clock():
    replay = ct.load_replay(
        replay_start=datetime(2023, 3, 10, tzinfo=UTC), anchor=datetime(2026, 11, 27, tzinfo=UTC)
    )
    now = datetime(2026, 11, 27, 9, 53, tzinfo=UTC)
    series = replay.current("DE", now)
    (interval,) = series.intervals
    assert (interval.start, interval.end) == (
        datetime(2026, 11, 27, 9, tzinfo=UTC),
        datetime(2026, 11, 27, 10, tzinfo=UTC),
    )
    assert interval.value == ACTUALS["DE"].value_at(datetime(2023, 3, 10, 9, 30, tzinfo=UTC))
    assert series.source == "carbontrace" and not series.is_forecast


def test_perfect_forecast_equals_the_actuals_that_follow():
    replay = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 1, 3, 6, 20, tzinfo=UTC)  # replays 2023-03-03T06:20
    forecast = replay.forecast("GB", now, timedelta(hours=24))
    assert forecast.is_forecast and forecast.issued_at == now
    assert forecast.start == now and forecast.end == now + timedelta(hours=24)
    for iv in forecast.intervals:
        assert iv.value == ACTUALS["GB"].value_at(iv.start - (now - datetime(2023, 3, 3, 6, 20, tzinfo=UTC)))


def test_noisy_forecast_is_reproducible_and_differs_from_the_actuals():
    now = datetime(2026, 1, 3, 6, tzinfo=UTC)
    a = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC), forecast="noisy:10:1").forecast(
        "DE", now, timedelta(hours=24)
    )
    b = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC), forecast="noisy:10:1").forecast(
        "DE", now, timedelta(hours=24)
    )
    perfect = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC)).forecast("DE", now, timedelta(hours=24))
    assert a.values == b.values
    assert a.values != perfect.values
    assert a.values[0] == perfect.values[0]  # lead 0 is the measured value
    assert "noisy:10:1" in a.source


def test_history_is_mapped_through_the_current_lap():
    replay = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    series = replay.history("CA-ON", now, now - timedelta(hours=6), now)
    assert len(series) == 6 and series.end == now
    assert series.values[0] == ACTUALS["CA-ON"].value_at(datetime(2023, 3, 5, 6, tzinfo=UTC))


def test_history_before_the_trace_is_no_data():
    replay = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC))
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(CarbonNoDataError):
        replay.history("DE", now, now - timedelta(days=5), now - timedelta(days=2))


def test_without_looping_time_outside_the_trace_is_no_data():
    replay = ct.load_replay(anchor=datetime(2026, 1, 1, tzinfo=UTC), loop=False)
    assert replay.current("DE", datetime(2026, 1, 20, tzinfo=UTC))
    with pytest.raises(CarbonNoDataError, match="outside the trace"):
        replay.current("DE", datetime(2026, 3, 1, tzinfo=UTC))


def test_unknown_zone_and_bad_settings():
    replay = ct.load_replay()
    with pytest.raises(CarbonNotFoundError, match="DE, GB"):
        replay.current("FR", ct.DEFAULT_ANCHOR)
    with pytest.raises(CarbonConfigError, match="forecast"):
        ct.load_replay(forecast="psychic")
    with pytest.raises(CarbonConfigError, match="replay_start"):
        ct.load_replay(replay_start=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(CarbonConfigError, match="less than a day"):
        ct.load_replay(horizon=timedelta(days=31))
    with pytest.raises(CarbonConfigError, match="cannot open|No such file"):
        ct.load_replay("/nonexistent/trace.csv")


def test_a_custom_trace_file(tmp_path):
    path = tmp_path / "t.csv"
    rows = ["timestamp_utc,zone,gco2_per_kwh"]
    start = datetime(2022, 1, 1, tzinfo=UTC)
    for i in range(3 * 24 * 12):  # three days of 5-minute data
        rows.append(
            f"{(start + timedelta(minutes=5 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')},CAISO_NORTH,{100 + i % 7}"
        )
    path.write_text("\n".join(rows) + "\n")
    replay = ct.load_replay(path, horizon=timedelta(hours=24), kind="marginal", anchor=start)
    series = replay.current("CAISO_NORTH", start + timedelta(minutes=12))
    assert series.kind.value == "marginal" and series.values == [102]
    assert series.intervals[0].end - series.intervals[0].start == timedelta(minutes=5)


def test_a_trace_with_an_implausible_intensity_is_a_config_error(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text(
        "timestamp_utc,zone,gco2_per_kwh\n2024-01-01T00:00:00Z,DE,1e308\n2024-01-01T01:00:00Z,DE,100\n"
    )
    with pytest.raises(CarbonConfigError, match="huge.csv:2"):
        ct.load_replay(path)
