"""Read normalized carbon-intensity trace files into series.

A trace is a CSV with the header ``timestamp_utc,zone,gco2_per_kwh``: one row per interval,
``timestamp_utc`` the ISO-8601 UTC start of the interval, resolution anywhere from five
minutes to an hour, several zones allowed in one file. A forecast archive has an extra first
column ``issued_at_utc``. Each interval ends where the next row of its zone starts; the last
one lasts as long as the one before it. Values are gCO2eq/kWh from 0 to
:data:`~airflow_carbon_provider.core.signals.MAX_INTENSITY`.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_carbon_provider.core.signals import (
    MAX_INTENSITY,
    IntensitySeries,
    SignalKind,
)

__all__ = [
    "ArchivedForecasts",
    "TraceError",
    "bundled_trace_path",
    "parse_utc",
    "read_forecast_archive",
    "read_trace",
]

TRACE_HEADER = ["timestamp_utc", "zone", "gco2_per_kwh"]
ARCHIVE_HEADER = ["issued_at_utc", *TRACE_HEADER]
MAX_STEP = timedelta(hours=1)
MIN_STEP = timedelta(minutes=5)


class TraceError(ValueError):
    """Raised for a trace file that cannot be read; the message names the file and line."""


def bundled_trace_path() -> Path:
    """Return the path of the real trace slice shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "bundled_trace.csv"


def _utc_or_problem(text: str) -> tuple[datetime | None, str]:
    """Return ``(moment, "")`` for an ISO-8601 UTC timestamp, else ``(None, what is wrong)``."""
    raw = text.strip()
    if raw.endswith("Z") or raw.endswith("z"):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None, "is not an ISO-8601 timestamp such as 2022-01-01T00:00:00Z"
    if moment.tzinfo is None:
        return None, "has no timezone; write it in UTC with a trailing Z"
    if moment.utcoffset() != timedelta(0):
        return None, "is not UTC; convert it and write a trailing Z"
    return moment.astimezone(timezone.utc), ""


def parse_utc(text: str) -> datetime:
    """Parse an ISO-8601 UTC timestamp such as ``2022-01-01T00:00:00Z``; refuse other offsets."""
    moment, problem = _utc_or_problem(text)
    if moment is None:
        raise ValueError(f"timestamp {text!r} {problem}")
    return moment


def _rows(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    # Errors name the line and the column, never what the file holds: a path set by mistake
    # (or on purpose) to a file of secrets must not show them in a log or a connection test.
    expected = ",".join(header)
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot open trace file ({exc.strerror or exc})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            first = next(reader, None)
            if first is None:
                raise TraceError(f"{path}: the file is empty; expected the header {expected}")
            if [c.strip().lstrip("\ufeff") for c in first] != header:
                raise TraceError(f"{path}:1: the first line is not the header; it must be exactly {expected}")
            rows = [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
        except UnicodeDecodeError:
            raise TraceError(f"{path}: is not UTF-8 text; a trace is a UTF-8 CSV file") from None
        except csv.Error:
            raise TraceError(f"{path}:{reader.line_num}: is not a CSV row (a NUL byte or an unclosed quote)") from None
    if not rows:
        raise TraceError(f"{path}: the file has a header but no data rows")
    return rows


def _point(path: Path, line: int, row: list[str], width: int) -> tuple[datetime, str, float]:
    if len(row) != width:
        raise TraceError(f"{path}:{line}: expected {width} columns, found {len(row)}")
    stamp, zone, value = row[-3], row[-2].strip(), row[-1]
    start, problem = _utc_or_problem(stamp)
    if start is None:
        raise TraceError(f"{path}:{line}: bad timestamp_utc (column {width - 2}): it {problem}")
    if not zone:
        raise TraceError(f"{path}:{line}: zone is empty")
    try:
        number = float(value)
    except ValueError:
        raise TraceError(f"{path}:{line}: gco2_per_kwh (column {width}) is not a number") from None
    if number != number or number < 0 or number == float("inf"):
        raise TraceError(f"{path}:{line}: gco2_per_kwh (column {width}) must be a finite number >= 0")
    if number > MAX_INTENSITY:
        raise TraceError(
            f"{path}:{line}: gco2_per_kwh (column {width}) must be at most {MAX_INTENSITY:g}, the largest "
            "plausible intensity in gCO2eq/kWh; check the file's unit"
        )
    return start, zone, number


def _series(
    path: Path,
    zone: str,
    points: list[tuple[int, datetime, float]],
    kind: SignalKind,
    *,
    source: str,
    issued_at: datetime | None = None,
) -> IntensitySeries:
    points.sort(key=lambda p: p[1])
    if len(points) < 2:
        raise TraceError(
            f"{path}: zone {zone} has a single row (line {points[0][0]}); "
            "at least two are needed to know its resolution"
        )
    step = points[1][1] - points[0][1]
    for (line, start, _), (next_line, next_start, _) in zip(points, points[1:]):
        step = next_start - start
        if step == timedelta(0):
            raise TraceError(
                f"{path}:{next_line}: duplicate timestamp {next_start.isoformat()} for zone {zone} "
                f"(also on line {line}); keep one row per interval"
            )
        if step < MIN_STEP:
            raise TraceError(
                f"{path}:{next_line}: rows of zone {zone} at {start.isoformat()} and "
                f"{next_start.isoformat()} are {step} apart, so their intervals overlap; "
                "intervals must last at least 5 minutes"
            )
        if step > MAX_STEP:
            raise TraceError(
                f"{path}:{next_line}: zone {zone} has a gap of {step} after {start.isoformat()} "
                f"(line {line}); fill it or cut the trace there"
            )
    bounds = [p[1].timestamp() for p in points]
    bounds.append(bounds[-1] + step.total_seconds())
    return IntensitySeries.from_arrays(
        zone, kind, bounds, [p[2] for p in points], source=source, issued_at=issued_at,
        is_forecast=issued_at is not None,
    )


def read_trace(
    path: str | os.PathLike[str], *, kind: SignalKind | str = SignalKind.AVERAGE, source: str = "trace"
) -> dict[str, IntensitySeries]:
    """Read a normalized trace file into one series per zone, in the file's zone order."""
    path = Path(path)
    by_zone: dict[str, list[tuple[int, datetime, float]]] = defaultdict(list)
    for line, row in _rows(path, TRACE_HEADER):
        start, zone, value = _point(path, line, row, 3)
        by_zone[zone].append((line, start, value))
    return {zone: _series(path, zone, pts, SignalKind(kind), source=source) for zone, pts in by_zone.items()}


@dataclass(frozen=True)
class ArchivedForecasts:
    """Real forecasts of one zone, as issued: ``issues`` sorted by issue time."""

    zone: str
    issues: tuple[IntensitySeries, ...]

    def latest_before(self, moment: datetime) -> IntensitySeries | None:
        """Return the newest forecast issued at or before ``moment``, if any."""
        best = None
        for series in self.issues:
            assert series.issued_at is not None
            if series.issued_at <= moment:
                best = series
            else:
                break
        return best


def read_forecast_archive(
    path: str | os.PathLike[str], *, kind: SignalKind | str = SignalKind.AVERAGE, source: str = "archive"
) -> dict[str, ArchivedForecasts]:
    """Read a forecast archive (``issued_at_utc,timestamp_utc,zone,gco2_per_kwh``) per zone."""
    path = Path(path)
    grouped: dict[str, dict[datetime, list[tuple[int, datetime, float]]]] = defaultdict(lambda: defaultdict(list))
    for line, row in _rows(path, ARCHIVE_HEADER):
        if len(row) != 4:
            raise TraceError(f"{path}:{line}: expected 4 columns, found {len(row)}")
        issued, problem = _utc_or_problem(row[0])
        if issued is None:
            raise TraceError(f"{path}:{line}: bad issued_at_utc (column 1): it {problem}")
        start, zone, value = _point(path, line, row, 4)
        grouped[zone][issued].append((line, start, value))
    result = {}
    for zone, issues in grouped.items():
        series = tuple(
            _series(path, zone, pts, SignalKind(kind), source=source, issued_at=issued)
            for issued, pts in sorted(issues.items())
        )
        result[zone] = ArchivedForecasts(zone, series)
    return result
