"""Trace files: real slices read correctly, every malformed input named with its line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.signals import SignalKind
from airflow_carbon_provider.core.traces import (
    TraceError,
    bundled_trace_path,
    read_forecast_archive,
    read_trace,
)
from tests.conftest import utc


def test_bundled_trace_is_real_electricity_maps_data():
    traces = read_trace(bundled_trace_path())
    assert list(traces) == ["DE", "GB", "US-CAL-CISO", "CA-ON"]
    de = traces["DE"]
    assert (de.start, de.end, len(de)) == (utc(2023, 3, 1), utc(2023, 4, 1), 744)
    assert de.values[:2] == [609.91, 613.71]  # first rows of DE-LU_2023_hourly.csv, LCA column
    de.check_resolution()


def test_marginal_five_minute_trace(data_dir):
    trace = read_trace(data_dir / "traces/watttime_caiso_north_moer_2023-06-08.csv", kind="marginal")
    moer = trace["CAISO_NORTH"]
    assert moer.kind is SignalKind.MARGINAL
    assert len(moer) == 288 and moer.end - moer.start == timedelta(days=1)


def test_forecast_archive_groups_issues(data_dir):
    archive = read_forecast_archive(data_dir / "traces/uk_gb_forecasts_2023-03-14_16.csv")
    gb = archive["GB"]
    assert len(gb.issues) == 8
    first = gb.issues[0]
    assert first.issued_at == utc(2023, 3, 14, 12, 1) and len(first) == 96 and first.is_forecast
    assert gb.latest_before(utc(2023, 3, 14, 12, 0)) is None
    assert gb.latest_before(utc(2023, 3, 15, 0, 0)).issued_at == utc(2023, 3, 14, 18, 1)


def _write(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


HEADER = "timestamp_utc,zone,gco2_per_kwh\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "the file is empty"),
        ("time,zone,value\n", "t.csv:1: the first line is not the header"),
        (HEADER, "no data rows"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00Z,DE\n", "t.csv:3: expected 3 columns"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\nyesterday,DE,2\n", "t.csv:3: bad timestamp_utc"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00,DE,2\n", "t.csv:3: .*no timezone"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00+02:00,DE,2\n", "t.csv:3: .*not UTC"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00Z,DE,lots\n", "t.csv:3: gco2_per_kwh \\(column 3\\) is not a number"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00Z,DE,-3\n", "t.csv:3: .*finite number >= 0"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00Z,DE,1e308\n", "t.csv:3: .*at most 5000"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T01:00:00Z,DE,5000.5\n", "t.csv:3: .*at most 5000"),
        (HEADER + "2024-01-01T00:00:00Z,,1\n", "t.csv:2: zone is empty"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T00:00:00Z,DE,2\n", "t.csv:3: duplicate timestamp"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T00:02:00Z,DE,2\n", "t.csv:3: .*overlap"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n2024-01-01T03:00:00Z,DE,2\n", "t.csv:3: zone DE has a gap"),
        (HEADER + "2024-01-01T00:00:00Z,DE,1\n", "single row"),
    ],
)
def test_malformed_traces_name_the_line_and_the_fix(tmp_path, body, message):
    with pytest.raises(TraceError, match=message):
        read_trace(_write(tmp_path, body))


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="cannot open trace file"):
        read_trace(tmp_path / "nope.csv")


def test_unsorted_rows_and_several_zones_in_one_file(tmp_path):
    path = _write(tmp_path, HEADER + "2024-01-01T01:00:00Z,DE,2\n2024-01-01T00:00:00Z,GB,5\n"
                  "2024-01-01T00:00:00Z,DE,1\n2024-01-01T00:30:00Z,GB,6\n")
    traces = read_trace(path)
    assert traces["DE"].values == [1, 2] and traces["DE"].end == utc(2024, 1, 1, 2)
    assert traces["GB"].end == utc(2024, 1, 1, 1)
