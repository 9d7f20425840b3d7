"""Trace replay: how wall-clock time maps onto the trace, and what is served from it."""

from __future__ import annotations

import os
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
    for days in (0, 28, 29, 30, 400, 1000):
        now = ct.DEFAULT_ANCHOR + timedelta(days=days, hours=13, minutes=30)
        replayed = replay.clock.replayed(now)
        assert (replayed.hour, replayed.minute) == (13, 30)
        assert TRACE_START <= replayed and replayed + timedelta(hours=48) <= TRACE_START + timedelta(days=31)


def test_an_anchor_in_the_future_is_refused_not_wrapped_to_another_day():
    replay = ct.load_replay(anchor=datetime(2026, 12, 2, tzinfo=UTC))
    with pytest.raises(CarbonConfigError, match="anchor 2026-12-02T00:00:00\\+00:00 is later than now") as info:
        replay.current("DE", datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    assert "'anchor' to a past moment" in str(info.value) and "\n" not in str(info.value)


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


SECRET = "AIRFLOW__CORE__FERNET_KEY=c2VjcmV0LWZlcm5ldC1rZXktZG8tbm90LWxlYWs="
HEADER = "timestamp_utc,zone,gco2_per_kwh\n"


def _not_a_trace(tmp_path, kind):
    """Return a path of ``kind`` that a trace connection must refuse to read."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET + "\n")
    if kind == "proc":
        return "/proc/self/environ"
    if kind == "device":
        return "/dev/null"
    if kind == "directory":
        (tmp_path / "dir.csv").mkdir()
        return tmp_path / "dir.csv"
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe.csv")
        return tmp_path / "pipe.csv"
    if kind == "not-csv":
        return secret
    if kind == "symlink-to-proc":
        (tmp_path / "env.csv").symlink_to("/proc/self/environ")
        return tmp_path / "env.csv"
    if kind == "symlink-to-other-file":
        (tmp_path / "link.csv").symlink_to(secret)
        return tmp_path / "link.csv"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["proc", "device", "directory", "fifo", "not-csv", "symlink-to-proc", "symlink-to-other-file"]
)
def test_only_regular_csv_files_are_read(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "c2VjcmV0LWZlcm5ldC1rZXktZG8tbm90LWxlYWs=")
    path = _not_a_trace(tmp_path, kind)
    with pytest.raises(CarbonConfigError, match="not a regular .csv file") as info:
        ct.load_replay(path)
    assert "c2VjcmV0" not in str(info.value) and "FERNET" not in str(info.value)


def test_an_archive_forecast_is_held_to_the_same_rule(tmp_path):
    with pytest.raises(CarbonConfigError, match="not a regular .csv file") as info:
        ct.load_replay(forecast="archive:/proc/self/environ")
    assert "FERNET" not in str(info.value)
    archive = _not_a_trace(tmp_path, "symlink-to-other-file")
    with pytest.raises(CarbonConfigError, match="not a regular .csv file"):
        ct.load_replay(forecast=f"archive:{archive}")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param(SECRET + "\n", ":1:", id="not-the-header"),
        pytest.param(HEADER + "2024-01-01T00:00:00Z,DE,1\n" + SECRET + "\n", ":3:", id="columns"),
        pytest.param(HEADER + SECRET + ",DE,1\n2024-01-01T01:00:00Z,DE,2\n", ":2:", id="timestamp"),
        pytest.param(HEADER + "2024-01-01T00:00:00Z,DE," + SECRET + "\n", ":2:", id="value"),
        pytest.param(HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00" + SECRET + ",DE,2\n", ":3:",
                     id="timezone"),
        pytest.param(HEADER + "2024-01-01T00:00:00Z,DE,1\x00" + SECRET + "\n", "", id="nul-byte"),
    ],
)
def test_errors_name_the_line_and_column_but_never_echo_the_file(tmp_path, body, where):
    path = tmp_path / "leaky.csv"
    path.write_text(body)
    with pytest.raises(CarbonConfigError) as info:
        ct.load_replay(path)
    message = str(info.value)
    assert f"leaky.csv{where}" in message
    assert "c2VjcmV0" not in message and "FERNET" not in message


def test_a_binary_csv_is_a_config_error_without_its_bytes(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"\xff\xfe" + SECRET.encode("utf-16-le"))
    with pytest.raises(CarbonConfigError, match="binary.csv") as info:
        ct.load_replay(path)
    assert "\\x" not in str(info.value)


def _trace(directory):
    directory.mkdir(exist_ok=True)
    path = directory / "t.csv"
    start = datetime(2022, 1, 1, tzinfo=UTC)
    rows = [f"{(start + timedelta(hours=i)).strftime('%Y-%m-%dT%H:%M:%SZ')},DE,{100 + i % 7}" for i in range(96)]
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def test_allowed_directories_restrict_which_traces_are_read(tmp_path):
    allowed, other = _trace(tmp_path / "allowed"), _trace(tmp_path / "other")
    dirs = [str(tmp_path / "allowed")]
    assert ct.load_replay(allowed, horizon=timedelta(hours=24), allowed_dirs=dirs).zones == ("DE",)
    with pytest.raises(CarbonConfigError, match="trace_allowed_dirs"):
        ct.load_replay(other, horizon=timedelta(hours=24), allowed_dirs=dirs)
    escape = tmp_path / "allowed" / "escape.csv"
    escape.symlink_to(other)  # inside by name, outside once resolved
    with pytest.raises(CarbonConfigError, match="trace_allowed_dirs"):
        ct.load_replay(escape, horizon=timedelta(hours=24), allowed_dirs=dirs)
    assert ct.load_replay(None, allowed_dirs=dirs).zones  # the bundled trace is always allowed
    assert ct.load_replay(bundled_trace_path(), allowed_dirs=dirs).zones
