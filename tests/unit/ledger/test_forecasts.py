"""Recorded forecasts: the table, dedupe, retention, and the recorder that keeps them off the task's path."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.ledger.forecasts import (
    DEFAULT_RETENTION,
    ForecastRecorder,
    forecast_row,
    forecast_series,
    read_forecasts,
    retention,
    store_forecasts,
)
from tests.unit.hooks.conftest import FixedClock
from tests.unit.sources.conftest import sample_bytes

UTC = timezone.utc
KEY = "em-hook-key-abcdef"


def series(issued: datetime, values: list[float], *, zone: str = "DE", kind: str = "average") -> IntensitySeries:
    start = issued.replace(minute=0, second=0, microsecond=0).timestamp()
    return IntensitySeries.from_arrays(zone, kind, [start + 3600 * i for i in range(len(values) + 1)], values,
                                       source="t", issued_at=issued, is_forecast=True, allow_gaps=True)


def row(issued: datetime, values: list[float], **kw) -> dict:
    return forecast_row(series(issued, values, **kw), source="em_prod", provider="electricitymaps",
                        signal="lifecycle", fetched_at=issued + timedelta(seconds=5))


def test_the_migration_creates_the_table_with_its_key(ledger):
    ledger.migrate()
    inspector = inspect(ledger.engine)
    assert "carbon_forecasts" in inspector.get_table_names()
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("carbon_forecasts")}
    assert ("source", "zone", "signal_kind", "issued_at") in unique


def test_the_same_forecast_is_stored_once_and_reads_back_as_a_series(ledger):
    issued = datetime.now(UTC) - timedelta(hours=1)
    first = row(issued, [100.0, 110.0, float("nan"), 130.0])
    assert store_forecasts(ledger, [first, dict(first)]) == 1
    assert store_forecasts(ledger, [first]) == 0  # another process recorded it too
    (stored,) = read_forecasts(ledger)
    assert (stored["source"], stored["zone"], stored["signal_kind"], stored["intervals"]) == (
        "em_prod", "DE", "average", 4)
    assert stored["values"] == [100.0, 110.0, None, 130.0]
    back = forecast_series(stored)
    assert back.issued_at == issued.replace(microsecond=issued.microsecond)
    assert back.has_gaps and list(back.values)[:2] == [100.0, 110.0]
    # another kind with the same issue time is another forecast
    assert store_forecasts(ledger, [row(issued, [400.0], kind="marginal")]) == 1


def test_rows_past_retention_are_deleted_on_write_and_not_stored(ledger):
    now = datetime(2026, 12, 1, tzinfo=UTC)
    old, recent = row(now - timedelta(days=40), [1.0, 2.0]), row(now - timedelta(days=2), [3.0, 4.0])
    # retention counts from the fetch (fetched_at: 5 s after each issue here)
    assert store_forecasts(ledger, [old, recent], now=now - timedelta(days=39), keep=timedelta(days=30)) == 2
    assert store_forecasts(ledger, [], now=now, keep=timedelta(days=30)) == 0
    assert [r["issued_at"] for r in read_forecasts(ledger)] == [recent["issued_at"]]
    assert store_forecasts(ledger, [row(now - timedelta(days=31), [5.0, 6.0])], now=now,
                           keep=timedelta(days=30)) == 0


@pytest.mark.parametrize(("raw", "expected"), [
    (None, DEFAULT_RETENTION), ("7", timedelta(days=7)), ("0.5", timedelta(hours=12)), ("12h", timedelta(hours=12)),
    ("0", DEFAULT_RETENTION), ("soon", DEFAULT_RETENTION), ("-3", DEFAULT_RETENTION),
])  # fmt: skip
def test_retention_setting(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("AIRFLOW__CARBON__FORECAST_RETENTION", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW__CARBON__FORECAST_RETENTION", raw)
    assert retention() == expected


@pytest.fixture
def make_recorder(monkeypatch):
    """Return a function making a recorder that the hooks use for the test, stopped afterwards."""
    made = []

    def make(url: str, **kw) -> ForecastRecorder:
        rec = ForecastRecorder(url, **kw)
        made.append(rec)
        monkeypatch.setattr("airflow_carbon_provider.ledger.forecasts.recorder", rec)
        return rec

    yield make
    for rec in made:
        rec.close()


@pytest.fixture
def recording(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CARBON__RECORD_FORECASTS", "true")


@pytest.fixture
def em_hook(httpserver, monkeypatch):
    conn = {"conn_type": "electricitymaps", "host": httpserver.url_for("").rstrip("/"), "password": KEY}
    monkeypatch.setenv("AIRFLOW_CONN_EM_PROD", json.dumps(conn))
    httpserver.expect_request("/v3/carbon-intensity/forecast", headers={"auth-token": KEY}).respond_with_data(
        sample_bytes("electricitymaps", "carbon-intensity_forecast.reconstructed-24h.DE.json"),
        content_type="application/json")
    return ElectricityMapsHook("em_prod", cache=IntensityCache(),
                               clock=FixedClock(datetime(2023, 6, 1, 0, 10, tzinfo=UTC)))


def test_a_fetch_shared_by_many_callers_is_recorded_once_without_secrets(
        recording, em_hook, ledger, httpserver, make_recorder):
    rec = make_recorder(ledger.url)

    async def many() -> None:
        await asyncio.gather(*(em_hook.aget_forecast("DE") for _ in range(50)))

    asyncio.run(many())
    em_hook.get_forecast("DE")  # a sync caller of the cached key: no new fetch, no new record
    assert len(httpserver.log) == 1
    assert rec.flush(10) and rec.recorded == 1
    (stored,) = read_forecasts(ledger)
    assert (stored["source"], stored["provider"], stored["signal"]) == ("em_prod", "electricitymaps", "lifecycle")
    assert stored["issued_at"] is not None and stored["intervals"] >= 6
    dump = repr(read_forecasts(ledger))
    assert KEY not in dump and "127.0.0.1" not in dump


def test_recording_is_off_when_configured(em_hook, ledger, make_recorder):
    rec = make_recorder(ledger.url)
    em_hook.get_forecast("DE")  # the suite's default: AIRFLOW__CARBON__RECORD_FORECASTS=false
    assert rec.recorded == 0 and rec.pending() == 0


def test_a_ledger_that_is_down_never_slows_or_fails_the_fetch(recording, em_hook, down_ledger, make_recorder, caplog):
    rec = make_recorder(down_ledger.url, max_pending=3)
    started = time.perf_counter()
    assert em_hook.get_forecast("DE").is_forecast
    assert time.perf_counter() - started < 1.0
    assert not rec.flush(10)  # the write failed; the forecast waits in the buffer
    assert rec.pending() == 1 and rec.failures >= 1
    assert "hunter2pw" not in caplog.text
    base = datetime.now(UTC)
    for i in range(5):  # bounded: the oldest go first
        rec.record(series(base - timedelta(hours=i), [1.0, 2.0]), source="x")
    assert rec.pending() == 3 and rec.dropped == 3
