"""The ledger on a real PostgreSQL server, started here from Debian's binaries.

Migrations on first use from several processes at once, concurrent idempotent upserts, and
a server stopped mid-use then restarted: the records written meanwhile are spooled and
replayed by the next successful write.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from airflow_carbon_provider.ledger import flush_spool, record_decision, record_outcome
from airflow_carbon_provider.ledger.store import Ledger, RunKey
from tests.integration.ledger.conftest import Postgres
from tests.unit.ledger.conftest import sample_decision

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def ledger(postgres: Postgres, tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(postgres.url, spool_path=tmp_path / "spool.jsonl", connect_timeout=3)
    yield led
    with led.engine.begin() as conn:
        conn.execute(text("DELETE FROM carbon_decisions"))
        conn.execute(text("DELETE FROM carbon_outcomes"))
        conn.execute(text("DELETE FROM carbon_forecasts"))
        conn.execute(text("DELETE FROM carbon_reservations"))
    led.dispose()


WRITER = textwrap.dedent("""
    import sys
    from airflow_carbon_provider.ledger import record_decision
    from airflow_carbon_provider.ledger.store import Ledger, RunKey
    from tests.unit.ledger.conftest import sample_decision
    url, spool, n = sys.argv[1], sys.argv[2], sys.argv[3]
    led = Ledger(url, spool_path=spool)
    for i in range(10):
        ok1 = record_decision(sample_decision(reason=f"proc {n} round {i}"), RunKey("shared", "r", "t"), ledger=led,
                              emit_metrics=False)
        ok2 = record_decision(sample_decision(), RunKey("own", f"r{n}", "t", try_number=i + 1), ledger=led,
                              emit_metrics=False)
        assert ok1 and ok2, "a write was spooled"
    print("ok")
""")


def test_processes_migrate_and_upsert_concurrently(postgres, ledger, tmp_path):
    # a brand-new database: every process races to migrate it first
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS carbon_decisions, carbon_outcomes, carbon_forecasts, "
                          "carbon_reservations, carbon_ledger_alembic_version"))
    from airflow_carbon_provider.ledger import store

    store._migrated.discard(ledger.url)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW_HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, postgres.url, str(tmp_path / f"spool{n}.jsonl"), str(n)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0 and "ok" in out, err[-3000:]
    assert {"carbon_decisions", "carbon_outcomes", "carbon_ledger_alembic_version"} <= set(
        inspect(ledger.engine).get_table_names())
    rows = ledger.read("decision")
    assert len([r for r in rows if r["dag_id"] == "shared"]) == 1
    assert len([r for r in rows if r["dag_id"] == "own"]) == 40
    assert not any((tmp_path / f"spool{n}.jsonl").exists() for n in range(4))


def test_threads_upsert_one_key(ledger):
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(10):
                assert record_decision(sample_decision(reason=f"{n}/{i}"), RunKey("threads", "r", "t"), ledger=ledger,
                                       emit_metrics=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(ledger.read("decision", dag_id="threads")) == 1


def test_server_stopped_mid_use_then_restarted(postgres, ledger):
    key = RunKey("train", "r1", "fine_tune")
    assert record_decision(sample_decision(phase="waiting"), key, ledger=ledger, emit_metrics=False)
    postgres.stop()
    try:
        assert record_decision(sample_decision(phase="running"), key, ledger=ledger, emit_metrics=False) is False
        outcome = record_outcome(sample_decision(), key, ledger=ledger, hook_for=lambda _: None, emit_metrics=False,
                                 actual_end=datetime(2026, 11, 27, 4, tzinfo=timezone.utc))
        assert outcome is not None
        assert ledger.spool.pending() == 3
        with pytest.raises(OperationalError):
            flush_spool(ledger)
        assert ledger.spool.pending() == 3
    finally:
        postgres.start()
    other = RunKey("train", "r2", "fine_tune")
    assert record_decision(sample_decision(), other, ledger=ledger, emit_metrics=False)  # replays the spool first
    assert ledger.spool.pending() == 0
    decisions = {r["run_id"]: r for r in ledger.read("decision", dag_id="train")}
    assert decisions["r1"]["phase"] == "running" and set(decisions) == {"r1", "r2"}
    outcomes = ledger.read("outcome", dag_id="train")
    assert len(outcomes) == 1 and outcomes[0]["intensity_source"] == "forecast"
    assert flush_spool(ledger).replayed == 0


def test_a_record_postgres_refuses_is_set_aside_not_retried_forever(ledger):
    """PostgreSQL enforces column lengths (SQLite does not): a 300-character zone is refused for good."""
    import json

    now = datetime.now(timezone.utc).isoformat()
    too_long = {"kind": "decision", "key": RunKey("pg", "r1", "too_long").as_dict(), "recorded_at": now,
                "data": sample_decision(zone="Z" * 300)}
    ledger.spool.append(too_long)
    ledger.spool.append({"kind": "decision", "key": RunKey("pg", "r1", "after").as_dict(), "recorded_at": now,
                         "data": sample_decision()})
    assert record_decision(sample_decision(), RunKey("pg", "r1", "now"), ledger=ledger, emit_metrics=False)
    assert {r["task_id"] for r in ledger.read("decision", dag_id="pg")} == {"after", "now"}
    assert ledger.spool.pending() == 0
    [rejected] = [json.loads(line) for line in ledger.spool.rejected_path.read_text().splitlines()]
    assert "StringDataRightTruncation" in rejected["reason"] or "too long" in rejected["reason"]
    assert json.loads(rejected["line"])["key"]["task_id"] == "too_long"
    # written directly, the same record is set aside at once and nothing is spooled
    # (the zone comes from the chosen candidate's row in a typed decision, so a long policy name stands in)
    assert not record_decision(sample_decision(policy="P" * 300), RunKey("pg", "r2", "t"), ledger=ledger,
                               emit_metrics=False)
    assert ledger.spool.pending() == 0 and len(ledger.spool.rejected_path.read_text().splitlines()) == 2


# -- recorded forecasts (issue 11 item 5) ------------------------------------------------------------------------


def _forecast_rows(hours: int, source: str = "em_prod") -> list[dict]:
    from datetime import timedelta

    from airflow_carbon_provider.core.signals import IntensitySeries
    from airflow_carbon_provider.ledger.forecasts import forecast_row

    top = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    rows = []
    for h in range(hours, 0, -1):
        start = top - timedelta(hours=h)
        series = IntensitySeries.from_arrays("DE", "average", [start.timestamp() + 3600 * k for k in range(4)],
                                             [100.0, 110.0, 121.0], issued_at=start + timedelta(minutes=5),
                                             is_forecast=True)
        rows.append(forecast_row(series, source=source, fetched_at=start + timedelta(minutes=6)))
    return rows


def test_forecasts_from_many_writers_are_stored_once_and_expire(ledger):
    from datetime import timedelta

    from airflow_carbon_provider.ledger.forecasts import read_forecasts, store_forecasts

    rows = _forecast_rows(8)
    errors: list[BaseException] = []
    stored: list[int] = []

    def write() -> None:
        try:
            stored.append(store_forecasts(ledger, rows))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(stored) == 8 and len(read_forecasts(ledger)) == 8
    # retention from the fetch (6 minutes into each of the last 8 hours): keep 3 of them
    top = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    assert store_forecasts(ledger, [], now=top, keep=timedelta(hours=3, minutes=30)) == 0
    assert len(read_forecasts(ledger)) == 3


def test_the_recorder_waits_out_a_server_stop_and_the_skill_report_reads_postgres(postgres, ledger, monkeypatch):
    import io
    import json

    from airflow_carbon_provider.cli import main
    from airflow_carbon_provider.ledger.forecasts import ForecastRecorder, forecast_series, read_forecasts

    monkeypatch.setenv("AIRFLOW__CARBON__RECORD_FORECASTS", "true")
    ledger.migrate()
    recorder = ForecastRecorder(postgres.url)
    try:
        postgres.stop()
        try:
            for row in _forecast_rows(6):
                recorder.record(forecast_series(row), source="em_prod")  # returns at once, server down or not
            assert not recorder.flush(10) and recorder.pending() == 6
        finally:
            postgres.start()
        assert recorder.flush(30) and recorder.stored == 6
    finally:
        recorder.close()
    assert len(read_forecasts(ledger)) == 6
    out = io.StringIO()
    assert main(["report", "--forecast-skill", "--ledger-url", postgres.url, "--format", "json"], out) == 0
    rows = {r["lead"]: r for r in json.loads(out.getvalue())["rows"]}
    assert rows["0-1h"]["mape_pct"] == 10.0 and rows["1-3h"]["mape_pct"] == 21.0
