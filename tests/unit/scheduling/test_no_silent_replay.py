"""Issue 9 item 6: with no carbon connection configured, nothing plans on a replay it did not ask for."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_carbon_provider.scheduling import CarbonSchedule

UTC = timezone.utc


def test_without_any_carbon_connection_the_task_runs_now_at_home_and_says_why(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", raising=False)
    schedule = CarbonSchedule({"k8s_de": "DE", "k8s_gb": "GB"}, expected_duration="1h", max_delay="12h")
    now = datetime.now(UTC)
    decision = schedule.plan(now, now)
    assert decision.fail_open and decision.chosen.conn_id == "k8s_de" and not decision.waits
    assert "no carbon-intensity connection is configured" in decision.reason
    assert "carbon_conn_id" in decision.reason and "carbontrace_default" in decision.reason


def test_without_any_carbon_connection_and_fail_open_off_the_task_fails_with_the_fix(monkeypatch):
    from airflow_carbon_provider.scheduling import CarbonPlanningFailed

    monkeypatch.delenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", raising=False)
    schedule = CarbonSchedule(["k8s_de"], expected_duration="1h", max_delay="12h", fail_open=False)
    monkeypatch.setenv("AIRFLOW_CONN_K8S_DE", '{"conn_type": "kubernetes", "extra": {"carbon_zone": "DE"}}')
    now = datetime.now(UTC)
    with pytest.raises(CarbonPlanningFailed, match="no carbon-intensity connection is configured"):
        schedule.plan(now, now)


def test_a_replay_defined_on_purpose_plans(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", '{"conn_type": "carbontrace"}')
    schedule = CarbonSchedule({"k8s_de": "DE", "k8s_gb": "GB"}, expected_duration="1h", max_delay="12h")
    now = datetime.now(UTC)
    assert not schedule.plan(now, now).fail_open


def test_a_deadline_shorter_than_the_job_is_warned_and_said_in_the_decision(monkeypatch, caplog):
    """Issue 14 item 5: it used to be silent until the ledger said deadline_met False."""
    monkeypatch.setenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", '{"conn_type": "carbontrace"}')
    schedule = CarbonSchedule({"k8s_de": "DE", "k8s_gb": "GB"}, expected_duration="1h",
                              deadline="2026-12-01T10:30:00Z")
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with caplog.at_level("WARNING", logger="airflow_carbon_provider.scheduling.schedule"):
        decision = schedule.plan(now, now)
    assert not decision.waits
    message = ("the deadline 2026-12-01T10:30:00+00:00 is 30m away, less than expected_duration 1h: the task "
               "cannot finish by it, so it starts now without waiting")
    assert message in decision.reason
    assert any(message in r.getMessage() for r in caplog.records)
    in_time = CarbonSchedule(["k8s_de"], expected_duration="1h", deadline="2026-12-01T11:00:00Z")
    assert in_time.unreachable_deadline(now, datetime(2026, 12, 1, 11, tzinfo=UTC)) is None
    assert "already past" in in_time.unreachable_deadline(now, datetime(2026, 12, 1, 9, tzinfo=UTC))
