"""The example DAGs, end to end through ``dag.test()`` and the real Airflow 3 task runner.

Clusters are Kubernetes API emulators (no kube-apiserver can be installed here); carbon data
is the real bundled Electricity Maps trace, replayed so that 2023-03-15 23:00Z (Great
Britain's grid drops from 139 to 101 gCO2eq/kWh, Germany's stays near 500) comes
``replay_lead`` after the test launches its run (measured per session: see conftest). The planner should therefore wait for that moment and move
from the home cluster (DE) to k8s_gb (GB).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from airflow_carbon_provider.testing.kube_emulator import connections_env
from airflow_carbon_provider.testing.local_clusters import connections, render
from airflow_carbon_provider.testing.replay import DEMO_MOMENT, replay_connection_env, replay_extras
from tests.integration.e2e.conftest import parse, soon

pytestmark = pytest.mark.integration
@pytest.fixture
def env(clusters, replay_lead):
    """Return the clusters' connections and the trace replayed so the moment comes ``replay_lead`` ahead."""
    return {**connections_env(clusters), **replay_connection_env(lead=replay_lead)}


def _only_pod(clusters):
    pods = {name: em.pods() for name, em in clusters.items()}
    created = [(name, pod) for name, records in pods.items() for pod in records]
    assert len(created) == 1, pods
    return created[0]


def test_real_data_says_wait_and_move_at_this_moment():
    """The scenario's premise, checked on the bundled data itself (no Airflow involved)."""
    trace = read_trace(bundled_trace_path())
    before, after = DEMO_MOMENT - timedelta(minutes=30), DEMO_MOMENT + timedelta(minutes=30)
    assert trace["GB"].value_at(after) < 0.8 * trace["GB"].value_at(before)
    assert trace["GB"].value_at(after) < min(trace[z].value_at(after) for z in ("DE", "US-CAL-CISO"))
    assert trace["DE"].value_at(before) > 3 * trace["GB"].value_at(after)


def test_training_waits_for_the_window_and_moves_to_the_greenest_cluster(sandbox, clusters, env):
    result = sandbox.run_dag("example_carbon_aware_training",
                             {"expected_duration": "1m", "finish_by": soon(4)}, env=env)
    assert result.state == "success", result.output[-4000:]
    assert result.task("fine_tune")["state"] == "success"
    decision = result.xcom("fine_tune", "carbon_decision")
    # the task deferred because the plan said wait
    assert decision["waited"] is True and decision["trigger"]["status"] == "start"
    assert parse(decision["planned_start"]) > parse(decision["decided_at"])
    # the pod was created on the cluster the planner chose, and nowhere else
    cluster, pod = _only_pod(clusters)
    assert cluster == decision["chosen_cluster"] == decision["cluster"] == "k8s_gb"
    assert pod.phase == "Succeeded" and pod.namespace == "ml"
    assert pod.name == result.xcom("fine_tune", "pod_name")
    # it started at the planned window and by the deadline's latest start
    assert parse(decision["planned_start"]) <= pod.created_at <= parse(decision["latest_start"])
    # the XCom decision matches the plan: 101 g/kWh in GB against DE's ~500 now
    assert decision["zone"] == "GB" and decision["expected_intensity"] == pytest.approx(101.02)
    assert decision["expected_saving_pct"] > 75 and decision["fallbacks"] == []
    assert decision["power_source"] == "container_resources" and decision["expected_emissions_g"] > 0
    assert "Carbon-aware plan" in result.output and "Waiting for k8s_gb" in result.output
    # the ledger recorded the run; the report reads it back (the DESIGN's report contract)
    report = _report(sandbox)
    row = next(r for r in report["rows"] if r["dag_id"] == "example_carbon_aware_training")
    assert (row["task_id"], row["cluster"], row["zone"], row["deadline_met"]) == ("fine_tune", "k8s_gb", "GB", True)
    assert row["run_id"] == result.data["run_id"]
    # figures are rounded to milligrams in the report, each on its own
    assert row["saving_g"] == pytest.approx(row["baseline_emissions_g"] - row["emissions_g"], abs=2e-3)
    assert row["emissions_g"] < row["baseline_emissions_g"]


def test_connections_stored_in_the_database_reach_the_plan_and_the_in_process_trigger(
        sandbox, clusters, replay_lead, tmp_path):
    """The docs' walk with ``airflow connections import``: no ``AIRFLOW_CONN_*`` at all.

    ``dag.test()`` (and ``airflow dags test``) runs the task and its trigger in-process, where
    the task SDK's asynchronous connection reads find nothing in the database; the plan and
    the trigger's re-plans must still see the stored connections, not fall open "not defined".
    """
    conns = {**connections(clusters, carbontrace=False),
             "carbontrace_default": {"conn_type": "carbontrace", "extra": replay_extras(lead=replay_lead)}}
    stored = tmp_path / "conns.json"
    stored.write_text(render(conns, "json"))
    sandbox.cli("connections", "import", "--overwrite", str(stored))
    try:
        result = sandbox.run_dag("example_carbon_aware_training", {"expected_duration": "1m", "finish_by": soon(4)})
    finally:
        for conn_id in conns:
            sandbox.cli("connections", "delete", conn_id)
    assert result.state == "success", result.output[-4000:]
    assert "is not defined" not in result.output
    decision = result.xcom("fine_tune", "carbon_decision")
    assert decision["fail_open"] is False and decision["waited"] is True
    assert decision["trigger"]["status"] == "start" and decision["trigger"]["api_errors"] == 0
    cluster, _ = _only_pod(clusters)
    assert cluster == decision["cluster"] == "k8s_gb"


def test_the_fleet_example_maps_shards_that_reserve_and_release_their_windows(sandbox, clusters, env):
    """Three coordinated shards: each plans with the others' reservations, and none is left held."""
    result = sandbox.run_dag("example_carbon_aware_fleet",
                             {"shards": 3, "expected_duration": "1m", "finish_by": soon(5)}, env=env)
    assert result.state == "success", result.output[-4000:]
    shards = [t for t in result.data["tasks"] if t["task_id"] == "fine_tune"]
    assert sorted(t["map_index"] for t in shards) == [0, 1, 2]
    assert all(t["state"] == "success" for t in shards), shards
    pods = [(name, pod) for name, em in clusters.items() for pod in em.pods()]
    assert len(pods) == 3 and all(pod.phase == "Succeeded" for _, pod in pods)
    # each shard reserved its window, then released it when its pod finished
    with sqlite3.connect(sandbox.home / "carbon_ledger.db") as db:
        held = db.execute("select count(*) from carbon_reservations where dag_id = 'example_carbon_aware_fleet'")
        assert held.fetchone()[0] == 0
        details = [json.loads(row[0]) for row in db.execute(
            "select details from carbon_decisions where dag_id = 'example_carbon_aware_fleet'")]
    assert len(details) == 3
    assert all(d["fleet"]["reservation"] == "reserved" for d in details), [d.get("fleet") for d in details]


def _report(sandbox):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("airflow-carbon")), "report", "--format", "json",
         "--ledger-url", f"sqlite:///{sandbox.home / 'carbon_ledger.db'}"],
        capture_output=True, text=True, timeout=120, env=sandbox.base_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_batch_inference_in_kpo_deferrable_mode_uses_the_chosen_namespace(sandbox, clusters, env):
    result = sandbox.run_dag("example_carbon_aware_batch_inference",
                             {"expected_duration": "1m", "max_delay": "3m"}, env=env)
    assert result.state == "success", result.output[-4000:]
    decision = result.xcom("batch_inference", "carbon_decision")
    cluster, pod = _only_pod(clusters)
    # KPO's own deferral resumed on the chosen cluster (not on the home connection)
    assert cluster == decision["chosen_cluster"] == "k8s_gb" and decision["waited"] is True
    assert pod.namespace == "inference-gb" and pod.phase == "Succeeded"
    assert decision["power_watts"] == 120 and decision["power_source"] == "power_watts"


def test_the_sensor_gates_a_python_task(sandbox, clusters, env):
    result = sandbox.run_dag("example_carbon_window_sensor",
                             {"expected_duration": "1m", "max_delay": "3m"}, env=env)
    assert result.state == "success", result.output[-4000:]
    decision = result.xcom("wait_for_low_carbon")
    assert decision["zone"] == "GB" and decision["waited"] is True
    assert parse(decision["actual_start"]) >= parse(decision["planned_start"])
    assert "refreshed at" in result.xcom("refresh_embeddings")
    assert all(not em.pods() for em in clusters.values())  # no pod: any task can be gated


def test_carbon_api_down_from_the_start_runs_now_at_home(sandbox, clusters):
    """The carbon source is an Electricity Maps connection on a closed port: fail open."""
    env = {**connections_env(clusters), "AIRFLOW_CONN_CARBONTRACE_DEFAULT": json.dumps({
        "conn_type": "electricitymaps", "host": "http://127.0.0.1:9", "password": "dummy-key",
        "extra": {"timeout": 1, "max_retries": 0}})}
    started = time.monotonic()
    result = sandbox.run_dag("example_carbon_aware_training", {"expected_duration": "1m", "finish_by": soon(4)},
                             env=env)
    assert result.state == "success", result.output[-4000:]
    decision = result.xcom("fine_tune", "carbon_decision")
    assert decision["fail_open"] is True and decision["waited"] is False
    assert decision["chosen_cluster"] == "k8s_de" and "unavailable" in decision["reason"]
    assert "dummy-key" not in result.output and "dummy-key" not in json.dumps(decision)
    cluster, _ = _only_pod(clusters)
    assert cluster == "k8s_de"
    assert time.monotonic() - started < 120  # it did not wait for a window it could not know


def test_carbon_source_lost_mid_wait_keeps_the_plan_and_starts_on_time(sandbox, clusters, replay_lead, tmp_path):
    """The trace behind the carbon connection disappears while the task waits in the trigger."""
    fragile = tmp_path / "fragile.csv"
    fragile.write_bytes(bundled_trace_path().read_bytes())
    # 30 s longer than the others: the test must delete the file while the task waits
    extras = {**replay_extras(lead=replay_lead + timedelta(seconds=30)), "path": str(fragile)}
    env = {**connections_env(clusters),
           "AIRFLOW_CONN_TRACE_FRAGILE": json.dumps({"conn_type": "carbontrace", "extra": extras})}
    db = sandbox.home / "airflow.db"
    deferred = threading.Event()

    def break_source_once_deferred() -> None:
        deadline = time.monotonic() + replay_lead.total_seconds() + 120
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    rows = conn.execute("select value from xcom where dag_id='fault_fragile_trace' "
                                        "and key='carbon_decision'").fetchall()
            except sqlite3.Error:
                rows = []
            # dag.test() marks the task queued while it runs the trigger in line, so the
            # decision pushed before deferring ("phase": "waiting") is the sign it waits
            if any("waiting" in str(r[0]) for r in rows):
                fragile.unlink()
                deferred.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=break_source_once_deferred, daemon=True)
    watcher.start()
    result = sandbox.run_dag("fault_fragile_trace", {"finish_by": soon(5)}, env=env)
    watcher.join(timeout=5)
    assert deferred.is_set(), "the task never deferred; output:\n" + result.output[-3000:]
    assert result.state == "success", result.output[-4000:]
    decision = result.xcom("job", "carbon_decision")
    assert decision["chosen_cluster"] == "k8s_gb" and decision["waited"] is True
    assert decision["trigger"]["status"] == "start" and decision["trigger"]["api_errors"] >= 1
    cluster, pod = _only_pod(clusters)
    assert cluster == "k8s_gb" and parse(decision["planned_start"]) <= pod.created_at
    assert "keeping" in result.output  # the re-check before the start said it kept the plan


def test_a_cluster_that_refuses_the_pod_falls_back_to_the_next_best(sandbox, clusters, env):
    clusters["k8s_gb"].refuse_pod_creation = 403
    result = sandbox.run_dag("example_carbon_aware_training",
                             {"expected_duration": "1m", "finish_by": soon(4)}, env=env)
    assert result.state == "success", result.output[-4000:]
    decision = result.xcom("fine_tune", "carbon_decision")
    assert decision["fallbacks"][0]["cluster"] == "k8s_gb" and "403" in decision["fallbacks"][0]["error"]
    cluster, pod = _only_pod(clusters)
    # next best by forecast: US-CAL-CISO (~205) before home DE (~490)
    assert cluster == decision["cluster"] == "k8s_us" and pod.phase == "Succeeded"
    assert "refused the pod" in decision["reason"] and "falling back to k8s_us" in result.output
