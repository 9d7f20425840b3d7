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


def test_a_run_that_planned_after_the_moment_says_how_to_rerun():
    late = _summary(_report(START + timedelta(seconds=50), START + timedelta(seconds=51)), 60.0, launched=START,
                    lead=timedelta(seconds=40))
    assert any("nothing left to wait for" in ln and "--lead 80s" in ln for ln in late)
    on_time = _summary(_report(START + timedelta(seconds=15), START + timedelta(seconds=45)), 60.0, launched=START)
    assert not any("--lead" in ln for ln in on_time)


def test_intensities_are_rounded_for_display_only():
    report = _report(START + timedelta(seconds=15), START + timedelta(seconds=45))
    report["tasks"][0]["carbon_decision"]["expected_intensity"] = 101.01999999999998
    (saving,) = [ln for ln in _summary(report, 60.0) if ln.lstrip().startswith("saving")]
    assert "101 vs 503.5 gCO2eq/kWh" in saving


def test_a_lead_outside_its_range_is_one_line(capsys):
    import io

    from airflow_carbon_provider.cli import main

    assert main(["demo", "--lead", "2s"], io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lead 2s is outside 10s-10m; give e.g. --lead 90s" in err
