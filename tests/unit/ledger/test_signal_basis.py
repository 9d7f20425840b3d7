"""Signal kind (average/marginal) and basis (realised/forecast) on every ledger row (issue 9.4)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.ledger import record_decision, record_outcome
from airflow_carbon_provider.ledger.realised import realised_outcome
from airflow_carbon_provider.ledger.report import collect_rows
from airflow_carbon_provider.ledger.store import RunKey
from tests.unit.ledger.conftest import sample_decision

UTC = timezone.utc
END = datetime(2026, 11, 27, 4, tzinfo=UTC)


class FlatHook:
    """A carbon hook whose history is flat: 100 g/kWh in GB, 400 in DE, of one signal kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def get_history(self, zone, start, end):
        value = {"GB": 100.0, "DE": 400.0}[zone]
        hours = int((end - start).total_seconds() // 3600) + 2
        points = [(start - timedelta(hours=1) + timedelta(hours=i), value) for i in range(hours)]
        return IntensitySeries.from_points(zone, self.kind, points, resolution=timedelta(hours=1))


def offline(_conn_id):
    raise RuntimeError("offline")


def test_outcome_from_history_takes_the_kind_of_the_history():
    out = realised_outcome(sample_decision(signal="average"), END, hook_for=lambda _: FlatHook("marginal"))
    assert (out["intensity_source"], out["signal_kind"], out["basis"]) == ("history", "marginal", "realised")


def test_outcome_from_forecast_takes_the_planned_signal():
    out = realised_outcome(sample_decision(signal="marginal"), END, hook_for=offline)
    assert (out["intensity_source"], out["signal_kind"], out["basis"]) == ("forecast", "marginal", "forecast")


def test_fail_open_decision_without_signal_is_unknown_not_guessed():
    decision = sample_decision(fail_open=True)
    decision.pop("signal", None)
    out = realised_outcome(decision, END, hook_for=offline)
    assert (out["signal_kind"], out["basis"]) == ("unknown", "forecast")
    none = realised_outcome({**decision, "expected_intensity": None}, END, hook_for=offline)
    assert (none["intensity_source"], none["signal_kind"], none["basis"]) == ("none", "unknown", "none")


def test_columns_are_filled_on_write(ledger):
    key = RunKey("train", "r1", "fine_tune")
    record_outcome(sample_decision(signal="marginal"), key, actual_end=END, ledger=ledger, hook_for=offline,
                   emit_metrics=False)
    with ledger.engine.connect() as conn:
        outcome = conn.execute(sa.text("SELECT signal_kind, basis FROM carbon_outcomes")).one()
        decision = conn.execute(sa.text("SELECT signal_kind FROM carbon_decisions")).one()
    assert tuple(outcome) == ("marginal", "forecast")
    assert tuple(decision) == ("marginal",)
    row = collect_rows(ledger)[0]
    assert (row["signal_kind"], row["basis"]) == ("marginal", "forecast")


def test_rows_recorded_before_the_columns_existed_are_reported_unknown(ledger):
    """An outcome written without the new fields (an old spool line, a pre-0002 row) stays NULL: unknown."""
    key = RunKey("train", "old", "fine_tune")
    old = realised_outcome(sample_decision(signal="average"), END, hook_for=offline)
    old.pop("signal_kind")
    old.pop("basis")
    record_decision({k: v for k, v in sample_decision().items() if k != "signal"}, key, ledger=ledger,
                    emit_metrics=False)
    ledger.write("outcome", key.as_dict(), old, datetime.now(UTC))
    row = collect_rows(ledger)[0]
    assert (row["signal_kind"], row["basis"]) == ("unknown", "unknown")


def test_decision_only_row_has_its_kind_and_no_basis_yet(ledger):
    record_decision(sample_decision(signal="average", phase="waiting"), RunKey("train", "r2", "fine_tune"),
                    ledger=ledger, emit_metrics=False)
    row = collect_rows(ledger)[0]
    assert (row["signal_kind"], row["basis"]) == ("average", "unknown")


def test_migration_0002_upgrades_a_0001_ledger(tmp_path):
    """A ledger made by 0001 gains the columns; its rows keep NULL (reported unknown)."""
    from alembic import command
    from alembic.config import Config

    from airflow_carbon_provider.ledger.store import MIGRATIONS

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(sa.text(
                "INSERT INTO carbon_outcomes (dag_id, run_id, task_id, map_index, try_number, recorded_at, saving_g)"
                " VALUES ('d', 'r', 't', -1, 1, '2026-11-27 00:00:00', 1.0)"))
            command.upgrade(cfg, "head")
            assert tuple(conn.execute(sa.text("SELECT signal_kind, basis FROM carbon_outcomes")).one()) == (None, None)
            command.downgrade(cfg, "0001")
            names = {c["name"] for c in sa.inspect(conn).get_columns("carbon_outcomes")}
            assert "signal_kind" not in names and "basis" not in names
    finally:
        engine.dispose()
