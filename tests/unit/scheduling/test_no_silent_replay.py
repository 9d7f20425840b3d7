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
