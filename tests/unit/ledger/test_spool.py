"""A ledger that is down never fails the task: records are logged, spooled and replayed."""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone

import pytest
from sqlalchemy.exc import OperationalError

from airflow_carbon_provider.ledger import flush_spool, record_decision, record_outcome
from airflow_carbon_provider.ledger.store import Ledger
from tests.unit.ledger.conftest import KEY, sample_decision

UTC = timezone.utc
END = datetime(2026, 11, 27, 4, tzinfo=UTC)


def no_history(conn_id):
    raise RuntimeError("no carbon API in this test")


class _NoHistoryHook:
    def get_history(self, zone, start, end):
        raise RuntimeError("history endpoint down")


def test_down_then_back_replays_everything_once(down_ledger, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    assert record_decision(sample_decision(phase="waiting"), KEY, ledger=down_ledger, emit_metrics=False) is False
    outcome = record_outcome(sample_decision(), KEY, actual_end=END, ledger=down_ledger,
                             hook_for=lambda _: _NoHistoryHook(), emit_metrics=False)
    assert outcome is not None and outcome["intensity_source"] == "forecast"
    assert down_ledger.spool.pending() == 3  # the waiting decision, the final decision, the outcome
    logged = [r.getMessage() for r in caplog.records if "spooled" in r.getMessage()]
    assert len(logged) == 3 and "hunter2pw" not in caplog.text and "***" in caplog.text
    line = logged[-1][logged[-1].index(": {") + 2:]
    assert json.loads(line)["kind"] == "outcome"  # the whole record, as one JSON line

    with pytest.raises(OperationalError):
        flush_spool(down_ledger)
    assert down_ledger.spool.pending() == 3  # nothing lost while still down

    back = Ledger(f"sqlite:///{tmp_path / 'back.db'}", spool_path=down_ledger.spool.path)
    result = flush_spool(back)
    assert (result.replayed, result.remaining, result.corrupt) == (3, 0, 0)
    assert not down_ledger.spool.path.exists()
    decisions, outcomes = back.read("decision"), back.read("outcome")
    assert len(decisions) == 1 and decisions[0]["phase"] == "running"  # replayed in order: newest wins
    assert len(outcomes) == 1 and outcomes[0]["saving_g"] == pytest.approx(120.0)  # 0.4 kWh x (400 - 100)
    assert flush_spool(back).replayed == 0  # a second flush is a no-op
    back.dispose()


def test_the_next_successful_write_replays_the_spool_first(down_ledger, tmp_path):
    record_decision(sample_decision(phase="waiting"), KEY, ledger=down_ledger, emit_metrics=False)
    back = Ledger(f"sqlite:///{tmp_path / 'back.db'}", spool_path=down_ledger.spool.path)
    other = KEY.as_dict() | {"task_id": "other"}
    assert record_decision(sample_decision(), other, ledger=back, emit_metrics=False)
    assert {r["task_id"] for r in back.read("decision")} == {"fine_tune", "other"}
    assert back.spool.pending() == 0
    back.dispose()


def test_replaying_a_duplicate_is_idempotent(ledger):
    record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False)
    row = ledger.read("decision")[0]
    record = {"kind": "decision", "key": KEY.as_dict(), "recorded_at": row["recorded_at"].isoformat(),
              "data": sample_decision()}
    ledger.spool.append(record)
    ledger.spool.append(record)
    assert flush_spool(ledger).replayed == 2
    assert len(ledger.read("decision")) == 1


def _rejected(spool) -> list[dict]:
    return [json.loads(line) for line in spool.rejected_path.read_text().splitlines()]


def test_a_corrupt_line_is_set_aside_with_a_warning(ledger, caplog):
    good = {"kind": "decision", "key": KEY.as_dict(), "recorded_at": datetime.now(UTC).isoformat(),
            "data": sample_decision()}
    ledger.spool.append(good)
    with open(ledger.spool.path, "a") as handle:
        handle.write('{"kind": "decision", "key": {"dag_id": 1}\n')  # truncated by a crash
        handle.write("not json at all\n")
    ledger.spool.append(good | {"key": KEY.as_dict() | {"task_id": "second"}})
    result = flush_spool(ledger)
    assert (result.replayed, result.remaining, result.rejected) == (2, 0, 2)
    assert "not a valid record" in caplog.text
    rejected = _rejected(ledger.spool)
    assert [r["line"] for r in rejected] == ['{"kind": "decision", "key": {"dag_id": 1}', "not json at all"]
    assert all("not a valid record" in r["reason"] and r["rejected_at"] for r in rejected)
    assert len(ledger.read("decision")) == 2


def _spooled(**data_changes) -> dict:
    return {"kind": "decision", "key": KEY.as_dict(), "recorded_at": datetime.now(UTC).isoformat(),
            "data": sample_decision(**data_changes)}


@pytest.mark.parametrize("bad", [
    {"data": sample_decision(planned_start="2026-02-30T02:00:00Z")},  # no such day
    {"recorded_at": "yesterday"},
    {"recorded_at": ""},
    {"data": sample_decision(deadline="9999-12-31T23:59:59-05:00")},  # after year 9999 in UTC
    {"data": sample_decision(expected_intensity="low")},
])  # fmt: skip
def test_a_valid_json_record_the_ledger_refuses_is_quarantined_and_writes_go_on(ledger, caplog, bad):
    """One bad line once blocked the spool for good: every later write was spooled too."""
    old = os.umask(0o022)
    try:
        ledger.spool.append(_spooled() | {"key": KEY.as_dict() | {"task_id": "bad"}} | bad)
        ledger.spool.append(_spooled() | {"key": KEY.as_dict() | {"task_id": "after"}})
        assert record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False) is True
    finally:
        os.umask(old)
    assert {r["task_id"] for r in ledger.read("decision")} == {"after", "fine_tune"}
    assert ledger.spool.pending() == 0
    rejected = _rejected(ledger.spool)
    assert len(rejected) == 1 and json.loads(rejected[0]["line"])["key"]["task_id"] == "bad"
    assert rejected[0]["reason"] and "rejected" in caplog.text
    assert ledger.spool.rejected_path.stat().st_mode & 0o777 == 0o600
    assert record_decision(sample_decision(), KEY.as_dict() | {"task_id": "later"}, ledger=ledger,
                           emit_metrics=False) is True


def test_a_fresh_record_the_ledger_refuses_is_quarantined_not_spooled(ledger, caplog):
    assert record_decision(sample_decision(planned_start="soon"), KEY, ledger=ledger, emit_metrics=False) is False
    assert ledger.spool.pending() == 0 and ledger.read("decision") == []
    rejected = _rejected(ledger.spool)
    assert len(rejected) == 1 and "planned_start" in rejected[0]["reason"]
    assert json.loads(rejected[0]["line"])["data"]["planned_start"] == "soon"
    assert "rejected" in caplog.text
    assert record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False) is True
    assert len(ledger.read("decision")) == 1


def test_report_reads_on_past_a_bad_spool_line(ledger, monkeypatch, capsys):
    import io

    from airflow_carbon_provider.cli import main

    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(ledger.spool.path))
    record_decision(sample_decision(), KEY, ledger=ledger, emit_metrics=False)
    ledger.spool.append(_spooled(arrival="2026-11-27T25:00:00Z") | {"key": KEY.as_dict() | {"task_id": "bad"}})
    out = io.StringIO()
    assert main(["report", "--ledger-url", ledger.url, "--format", "json"], out) == 0
    assert [r["task_id"] for r in json.loads(out.getvalue())["rows"]] == ["fine_tune"]
    assert ledger.spool.pending() == 0 and len(_rejected(ledger.spool)) == 1


def test_an_unwritable_spool_still_does_not_raise(down_ledger, tmp_path, caplog):
    down_ledger.spool.path = tmp_path / "missing-dir" / "sub"
    down_ledger.spool.path.parent.mkdir()
    down_ledger.spool.path.mkdir()  # a directory where the spool file should be
    assert record_decision(sample_decision(), KEY, ledger=down_ledger, emit_metrics=False) is False
    assert "only in this log" in caplog.text


def test_an_undecidable_outcome_is_logged_not_raised(ledger, caplog):
    assert record_outcome({"zone": "GB"}, KEY, ledger=ledger, emit_metrics=False) is None
    assert "not computable" in caplog.text


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_spool_and_lock_files_are_private(down_ledger, tmp_path):
    old = os.umask(0o022)
    try:
        record_decision(sample_decision(), KEY, ledger=down_ledger, emit_metrics=False)
        spool = down_ledger.spool
        assert spool.pending() == 1
        assert _mode(spool.path) == 0o600 and _mode(spool.lock_path) == 0o600
        # a spool (and lock) left world-readable by an older version is tightened on the next append
        spool.path.chmod(0o644)
        spool.lock_path.chmod(0o644)
        record_decision(sample_decision(), KEY.as_dict() | {"task_id": "other"}, ledger=down_ledger,
                        emit_metrics=False)
        assert _mode(spool.path) == 0o600 and _mode(spool.lock_path) == 0o600
        # a replay that keeps lines rewrites the spool, still private
        with pytest.raises(OperationalError):
            flush_spool(down_ledger)
        assert spool.pending() == 2 and _mode(spool.path) == 0o600
    finally:
        os.umask(old)


def test_the_rewritten_spool_goes_through_an_unpredictable_temporary_file(down_ledger, tmp_path):
    spool = down_ledger.spool
    record_decision(sample_decision(), KEY, ledger=down_ledger, emit_metrics=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    # another local user plants the path the old code wrote to
    (spool.path.parent / (spool.path.name + ".tmp")).symlink_to(victim)
    with pytest.raises(OperationalError):
        flush_spool(down_ledger)  # the database is down: the line is kept, the spool rewritten
    assert victim.read_text() == "precious\n"
    assert spool.pending() == 1 and not spool.path.is_symlink()
    leftovers = sorted(p.name for p in spool.path.parent.iterdir() if spool.path.name in p.name)
    assert leftovers == [spool.path.name, spool.path.name + ".lock", spool.path.name + ".tmp"]


def test_query_string_secrets_of_the_ledger_url_are_not_logged(tmp_path, caplog):
    from tests.unit.ledger.conftest import closed_port

    caplog.set_level(logging.WARNING)
    led = Ledger(f"postgresql://carbon@127.0.0.1:{closed_port()}/ledger?password=hunter2pw&sslpassword=keypass9",
                 spool_path=tmp_path / "spool.jsonl", connect_timeout=2)
    assert record_decision(sample_decision(), KEY, ledger=led, emit_metrics=False) is False
    assert "spooled" in caplog.text and "password=***" in caplog.text
    assert "hunter2pw" not in caplog.text and "keypass9" not in caplog.text
    led.dispose()
