"""``airflow-carbon demo``'s table says what the demo shows, and no more.

``dag.test()`` runs the trigger in line, so the summary must not claim that the wait freed a
worker slot; and the baseline depends on when the task planned, i.e. on how long the run took
to reach the task.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.demo import _summary

UTC = timezone.utc
START = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _report(decided: datetime, actual: datetime) -> dict:
    decision = {
        "reason": "Carbon-aware plan (carbon-aware): ...", "decided_at": _iso(decided), "actual_start": _iso(actual),
        "waited": True, "cluster": "k8s_gb", "zone": "GB", "home_cluster": "k8s_de", "home_zone": "DE",
        "expected_saving_pct": 79.9, "expected_intensity": 101.02, "baseline_intensity": 503.546,
        "expected_emissions_g": 0.471, "baseline_emissions_g": 2.346, "expected_duration_s": 60.0,
        "power_watts": 279.504,
    }
    return {"run_id": "manual__x", "state": "success",
            "tasks": [{"task_id": "fine_tune", "state": "success", "carbon_decision": decision, "pod_name": "p"}]}


def test_the_wait_is_described_as_dag_test_runs_it():
    lines = _summary(_report(START + timedelta(seconds=15), START + timedelta(seconds=45)), 60.0)
    (deferred,) = [ln for ln in lines if ln.lstrip().startswith("deferred")]
    assert "30 s in CarbonWindowTrigger" in deferred
    assert "dag.test() runs the trigger in line" in deferred and "under a real triggerer" in deferred
    assert "(no worker slot held)" not in deferred


def test_the_baseline_line_gives_the_planning_moment():
    lines = _summary(_report(START + timedelta(seconds=15), START + timedelta(seconds=40)), 60.0, launched=START)
    (baseline,) = [ln for ln in lines if ln.lstrip().startswith("baseline")]
    assert ("running now on k8s_de (DE) as the task planned, 25 s before 23:00 UTC replayed, 15 s after the run "
            "was launched") in baseline
    late = _summary(_report(START + timedelta(seconds=50), START + timedelta(seconds=51)), 60.0, launched=START)
    assert any("10 s after 23:00 UTC replayed, 50 s after the run was launched" in ln for ln in late)


def test_without_the_launch_time_there_is_no_baseline_line():
    lines = _summary(_report(START + timedelta(seconds=15), START + timedelta(seconds=45)), 60.0)
    assert not any(ln.lstrip().startswith("baseline") for ln in lines)
