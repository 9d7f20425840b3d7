"""Forecast skill and ledger replay, end to end: a hook fetches over loopback, the recorder stores each
forecast, ``report --forecast-skill`` shows its error by lead time, ``backtest --forecast archive:ledger``
replays it."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Response

from airflow_carbon_provider.cli import main
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.ledger.archive import parse_ledger_spec
from airflow_carbon_provider.ledger.errors import ReportError
from airflow_carbon_provider.ledger.forecasts import ForecastRecorder, forecast_row, store_forecasts
from airflow_carbon_provider.ledger.skill import forecast_skill
from tests.unit.hooks.conftest import FixedClock

UTC = timezone.utc
KEY = "skill-test-em-key-123456"
T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOURS = 30


def truth(hour: int) -> float:
    return 200.0 + 80.0 * math.sin(hour / 4)


def forecast_value(hour: int, ahead: int) -> float:
    """Return what the look-alike forecasts ``ahead`` hours before: 2 % too high per hour ahead."""
    return truth(hour) * (1 + 0.02 * ahead)


class LoopbackEM:
    """An Electricity Maps look-alike whose forecast is issued 5 minutes into the clock's hour."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock

    def __call__(self, request):
        now = self.clock()
        hour = int((now - T0).total_seconds() // 3600)
        start = T0 + timedelta(hours=hour)
        body = {
            "zone": "DE",
            "forecast": [{"carbonIntensity": round(forecast_value(hour + k, k), 3),
                          "datetime": (start + timedelta(hours=k)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
                         for k in range(24)],
            "updatedAt": (start + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def recorded(httpserver, monkeypatch, ledger):
    """Fetch a forecast every 30 minutes for 30 hours through the real hook; return the ledger URL."""
    monkeypatch.setenv("AIRFLOW__CARBON__RECORD_FORECASTS", "true")
    monkeypatch.setenv("AIRFLOW_CONN_EM_SKILL", json.dumps(
        {"conn_type": "electricitymaps", "host": httpserver.url_for("").rstrip("/"), "password": KEY}))
    clock = FixedClock(T0)
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_handler(LoopbackEM(clock))
    rec = ForecastRecorder(ledger.url)
    monkeypatch.setattr("airflow_carbon_provider.ledger.forecasts.recorder", rec)
    hook = ElectricityMapsHook("em_skill", cache=None, clock=clock)
    for step in range(2 * HOURS):
        clock.now = T0 + timedelta(minutes=30 * step + 10)
        hook.get_forecast("DE")
    assert rec.flush(20), "the recorder did not write"
    rec.close()
    assert rec.stored == HOURS  # two fetches per hour, one issue time: stored once
    return ledger.url


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out), out.getvalue()


def test_report_shows_the_error_by_lead_time(recorded, capsys):
    code, text = run("report", "--forecast-skill", "--ledger-url", recorded, "--format", "json")
    assert code == 0, capsys.readouterr().err
    report = json.loads(text)
    assert report["forecasts"] == HOURS and "lead-0" in report["realised_from"]
    rows = {r["lead"]: r for r in report["rows"]}
    assert {r["source"] for r in report["rows"]} == {"em_skill"}
    assert rows["0-1h"]["mape_pct"] == pytest.approx(2.0, abs=0.01)  # 1 h ahead: 2 % too high
    assert rows["0-1h"]["bias_pct"] == pytest.approx(2.0, abs=0.01)
    mapes = [rows[b]["mape_pct"] for b in ("0-1h", "1-3h", "3-6h", "6-12h", "12-24h")]
    assert mapes == sorted(mapes) and mapes[-1] > 20
    code, table = run("report", "--forecast-skill", "--ledger-url", recorded)
    assert "em_skill" in table and "0-1h" in table and "MAPE %" in table and KEY not in table
    code, csv_text = run("report", "--forecast-skill", "--ledger-url", recorded, "--format", "csv", "--zone", "DE")
    assert csv_text.splitlines()[0] == "source,zone,signal_kind,lead,n,forecasts,mape_pct,bias_pct,mae_g"
    code, none = run("report", "--forecast-skill", "--ledger-url", recorded, "--format", "json", "--zone", "FR")
    assert json.loads(none)["rows"] == []


def test_backtest_replays_the_recorded_forecasts(recorded, capsys):
    code, text = run("backtest", "--forecast", f"archive:ledger={recorded}", "--zones", "DE", "--job-duration", "2h",
                     "--max-delay", "6h", "--arrival-every", "3h", "--format", "json")
    assert code == 0, capsys.readouterr().err
    result = json.loads(text)
    assert result["forecast"] == "archive:ledger" and result["jobs"] >= 5
    assert result["policies"]["carbon-aware"]["deadline_misses"] == 0
    code, _ = run("backtest", "--forecast", f"archive:ledger:em_skill={recorded}", "--zones", "DE",
                  "--job-duration", "2h", "--max-delay", "6h", "--arrival-every", "3h", "--format", "json")
    assert code == 0
    code, _ = run("backtest", "--forecast", f"archive:ledger:nobody={recorded}", "--zones", "DE")
    err = capsys.readouterr().err
    assert code == 2 and "holds no average forecasts from nobody" in err and "Traceback" not in err
    code, _ = run("backtest", "--forecast", f"archive:ledger={recorded}", "--zones", "DE", "--signal", "marginal")
    assert code == 2 and "no marginal forecasts" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (("--forecast-skill", "--dag-id", "x"), "--dag-id applies to task runs, not to --forecast-skill"),
    (("--forecast-skill", "--group-by", "day"), "--group-by applies to task runs"),
    (("--zone", "DE"), "--zone filters --forecast-skill only"),
    (("--forecast-skill", "--since", "2026-12-02", "--until", "2026-12-01"), "is not before --until"),
])  # fmt: skip
def test_bad_input_is_one_line(ledger, capsys, args, message):
    ledger.migrate()
    code, _ = run("report", *args, "--ledger-url", ledger.url)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_ledger_file_is_one_line(tmp_path, capsys):
    code, _ = run("report", "--forecast-skill", "--ledger-url", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "no ledger at" in capsys.readouterr().err


def test_average_and_marginal_are_never_compared(ledger):
    def row(kind: str, hour: int, values: list[float]) -> dict:
        from airflow_carbon_provider.core.signals import IntensitySeries

        start = (T0 + timedelta(hours=hour)).timestamp()
        series = IntensitySeries.from_arrays("DE", kind, [start + 3600 * i for i in range(len(values) + 1)], values,
                                             issued_at=T0 + timedelta(hours=hour, minutes=5), is_forecast=True)
        return forecast_row(series, source="em", fetched_at=datetime.now(UTC))

    rows = [row("average", 0, [100, 110]), row("marginal", 1, [900, 900]), row("average", 1, [100, 100])]
    store_forecasts(ledger, rows)
    from airflow_carbon_provider.ledger.forecasts import read_forecasts

    skill, counts = forecast_skill(read_forecasts(ledger))
    assert [(r["signal_kind"], r["lead"], r["mape_pct"]) for r in skill] == [("average", "0-1h", 10.0)]
    assert counts["unmatched"] == 2  # hour 2 of the hour-1 forecasts (both kinds): nobody fetched during it


@pytest.mark.parametrize(("spec", "expected"), [
    ("archive:ledger", (None, None)), ("archive:ledger=sqlite:///x.db", (None, "sqlite:///x.db")),
    ("archive:ledger:em_prod", ("em_prod", None)),
    ("archive:ledger:em_prod=postgresql://u@h/db", ("em_prod", "postgresql://u@h/db")),
])  # fmt: skip
def test_ledger_spec(spec, expected):
    assert parse_ledger_spec(spec) == expected


@pytest.mark.parametrize("spec", ["archive:ledger:", "archive:ledger=", "archive:ledger:x="])
def test_bad_ledger_spec(spec):
    with pytest.raises(ReportError):
        parse_ledger_spec(spec)
