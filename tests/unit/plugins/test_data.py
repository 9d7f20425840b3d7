"""What the Carbon UI shows, read from a real SQLite ledger (no API server: the data layer only)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_carbon_provider.ledger import record_decision
from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
from airflow_carbon_provider.ledger.store import Ledger
from airflow_carbon_provider.plugins import data
from tests.unit.ledger.conftest import KEY, sample_decision

UTC = timezone.utc


def everyone(_dag_id: str) -> bool:
    return True


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    """Return a SQLite ledger the UI opens by URL, its spool where the UI's Ledger looks for it."""
    spool = tmp_path / "spool.jsonl"
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(spool))
    for var in ("AIRFLOW__CARBON__SLO_ON_TIME_PCT", "AIRFLOW__CARBON__SLO_REDUCTION_PCT",
                "AIRFLOW__CARBON__SLO_LOW_CARBON_PCT", "AIRFLOW__CARBON__SLO_LOW_CARBON_BELOW"):
        monkeypatch.delenv(var, raising=False)
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_path=spool)
    yield led
    led.dispose()


def test_a_bad_spool_line_does_not_break_the_page(ledger):
    """A valid-JSON spool line with an impossible date once made every Carbon page answer 500."""
    record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False)
    ledger.spool.append({"kind": "decision", "key": KEY.as_dict() | {"task_id": "bad"},
                         "recorded_at": datetime.now(UTC).isoformat(),
                         "data": sample_decision(decided_at="2026-11-27T00:00:61Z")})
    summary = data.summary(everyone, ledger_url=ledger.url)
    assert summary["runs"] == 1 and [t["runs"] for t in summary["totals"]] == [1]
    assert data.runs(everyone, ledger_url=ledger.url)["total_entries"] == 1
    assert ledger.spool.pending() == 0
    [rejected] = ledger.spool.rejected_path.read_text().splitlines()
    assert json.loads(json.loads(rejected)["line"])["key"]["task_id"] == "bad"


def test_the_ui_never_shows_the_ledger_urls_secrets(ledger, tmp_path):
    from airflow_carbon_provider.plugins import views
    from tests.unit.ledger.conftest import closed_port

    record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False)
    url = f"{ledger.url}?token=t0ken-secret"  # pysqlite ignores the query (with a warning); shown, it is masked
    summary = data.summary(everyone, ledger_url=url)
    page = views.overview_page(summary, data.runs(everyone, ledger_url=url), {"clusters": []})
    assert "t0ken-secret" not in summary["ledger"] + page and "token=***" in page
    task = data.task_record(KEY.dag_id, KEY.run_id, KEY.task_id, ledger_url=url)
    assert "t0ken-secret" not in views.task_page(task) and task["found"]
    down = f"postgresql://carbon@127.0.0.1:{closed_port()}/ledger?password=hunter2pw"
    with pytest.raises(LedgerUnavailableError) as error:
        data.summary(everyone, ledger_url=down)
    assert "hunter2pw" not in str(error.value) and "password=***" in str(error.value)


def test_the_task_page_shows_the_unrounded_saving_of_a_short_pod(ledger):
    from airflow_carbon_provider.plugins import views
    from tests.unit.ledger.test_report import _short_pod

    _short_pod(ledger)
    record = data.task_record("short", "r1", "tiny", ledger_url=ledger.url)
    assert record["outcome"]["saving_pct"] == 47.0
    assert "(47.0 %)" in views.task_page(record)
    summary = data.summary(everyone, ledger_url=ledger.url)
    [totals] = summary["totals"]
    assert (totals["signal_kind"], totals["basis"], totals["saving_pct"]) == ("average", "realised", 47.0)
    assert summary["dags"][0]["saving_pct"] == 47.0


def test_savings_per_dag_are_per_signal_kind_and_basis_never_summed(ledger):
    """Green Mirage: the UI shows one labelled figure per kind and basis, no total adding them."""
    from airflow_carbon_provider.ledger.store import RunKey
    from airflow_carbon_provider.plugins import views
    from tests.unit.ledger.test_report_kinds import RUNS, _outcome

    for task, kind, basis, source, emitted, baseline in RUNS:
        key = RunKey("train", "r1", task).as_dict()
        ledger.write("decision", key, sample_decision(signal=kind), datetime.now(UTC))
        ledger.write("outcome", key, _outcome(kind, basis, source, emitted, baseline), datetime.now(UTC))
    summary = data.summary(everyone, ledger_url=ledger.url)
    assert [(t["signal_kind"], t["basis"], t["saving_g"]) for t in summary["totals"]] == [
        ("average", "realised", 120.0), ("average", "forecast", 50.0), ("marginal", "realised", 300.0)]
    assert [(d["dag_id"], d["signal_kind"], d["basis"], d["saving_g"]) for d in summary["dags"]] == [
        ("train", "average", "realised", 120.0), ("train", "average", "forecast", 50.0),
        ("train", "marginal", "realised", 300.0)]
    page = views.overview_page(summary, None, {"clusters": []})
    for label in ("average/realised", "average/forecast", "marginal/realised"):
        assert f'data-kind="{label}"' in page
    assert page.count('<tr data-dag="train"') == 3
    assert "470.0" not in page and "390.0" not in page  # no saving or emission summed across kinds


def _forecasts(ledger: Ledger, source: str, hours: int = 6) -> None:
    """Record hourly forecasts issued 5 minutes into each of the last ``hours`` hours, 10 % too high 1 h ahead."""
    from datetime import timedelta

    from airflow_carbon_provider.core.signals import IntensitySeries
    from airflow_carbon_provider.ledger.forecasts import forecast_row, store_forecasts

    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for h in range(hours, 0, -1):
        start = top - timedelta(hours=h)
        series = IntensitySeries.from_arrays("DE", "average", [start.timestamp() + 3600 * k for k in range(4)],
                                             [100.0, 110.0, 120.0], issued_at=start + timedelta(minutes=5),
                                             is_forecast=True)
        rows.append(forecast_row(series, source=source, fetched_at=start + timedelta(minutes=6)))
    store_forecasts(ledger, rows)


def test_the_forecast_skill_shows_only_sources_the_user_may_read(ledger):
    _forecasts(ledger, "em_prod")
    _forecasts(ledger, "secret_source")
    skill = data.forecast_skill(lambda conn_id: conn_id == "em_prod", ledger_url=ledger.url)
    assert {r["source"] for r in skill["rows"]} == {"em_prod"}
    (first,) = [r for r in skill["rows"] if r["lead"] == "0-1h"]
    assert first["mape_pct"] == 10.0 and first["bias_pct"] == 10.0 and skill["forecasts"] == 6


def test_the_forecast_skill_of_an_unreadable_ledger_is_a_ledger_error(tmp_path):
    with pytest.raises(LedgerUnavailableError):
        data.forecast_skill(everyone, ledger_url="postgresql://carbon:pw@127.0.0.1:9/none")


def test_reserved_load_per_connection_and_an_unreadable_ledger(ledger, tmp_path):
    from datetime import timedelta

    from airflow_carbon_provider.ledger.reservations import reserve

    now = datetime(2026, 12, 1, 10, tzinfo=UTC)
    reserve("a", "k8s_gb", now + timedelta(hours=1), now + timedelta(hours=3), {"pods": 2}, capacity=None,
            now=now, ledger=ledger)
    reserve("b", "k8s_gb@ctx[pool=x]", now + timedelta(hours=2), now + timedelta(hours=4), {"pods": 5},
            capacity=None, now=now, ledger=ledger)
    reserve("c", "k8s_other", now, now + timedelta(hours=1), {"pods": 9}, capacity=None, now=now, ledger=ledger)
    out = data.reserved_load(["k8s_gb", "k8s_de"], now=now, ledger_url=ledger.url)
    gb = out["clusters"]["k8s_gb"]
    assert [p["pods"] for p in gb["points"][:5]] == [0, 2, 7, 5, 0] and gb["peak_pods"] == 7
    assert out["clusters"]["k8s_de"]["peak_pods"] == 0 and "k8s_other" not in out["clusters"]
    broken = data.reserved_load(["k8s_gb"], now=now, ledger_url="postgresql://carbon:pw@127.0.0.1:1/ledger")
    assert broken["clusters"] == {} and "unavailable" in broken["error"].lower() and "pw" not in broken["error"]
