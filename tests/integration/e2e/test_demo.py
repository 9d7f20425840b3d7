"""``airflow-carbon demo``: the README's main job, as a user runs it, then ``airflow-carbon report``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.integration

DECISION_KEYS = ["chosen_cluster", "zone", "home_cluster", "planned_start", "deadline", "waited",
                 "expected_intensity", "baseline_intensity", "expected_saving_pct", "policy", "reason"]
DEMO_SCHEMA = {
    "type": "object",
    "required": ["dag_id", "state", "tasks"],
    "properties": {
        "dag_id": {"type": "string"},
        "state": {"const": "success"},
        "tasks": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["task_id", "state", "carbon_decision"],
            "properties": {"carbon_decision": {"type": "object", "required": DECISION_KEYS}}}},
    },
}


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AIRFLOW_CARBON"))}
    env["HOME"] = str(home)  # so ~/airflow (the demo's own ledger, and the default one) is the test's own
    exe = Path(sys.executable).with_name("airflow-carbon")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, env=env, cwd=home)


def test_demo_json_contract_then_report_lists_the_run(tmp_path, replay_lead):
    demo = _cli("demo", "--format", "json", "--lead", f"{int(replay_lead.total_seconds())}s", home=tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-4000:]
    report = json.loads(demo.stdout.strip().splitlines()[-1])
    jsonschema.validate(report, DEMO_SCHEMA)
    decision = report["tasks"][0]["carbon_decision"]
    # the real moment replayed: wait for 23:00 and move from DE to GB
    assert (decision["home_cluster"], decision["chosen_cluster"], decision["zone"]) == ("k8s_de", "k8s_gb", "GB")
    assert decision["waited"] is True and decision["expected_saving_pct"] > 75
    assert report["pods_by_cluster"]["k8s_gb"] and not report["pods_by_cluster"]["k8s_de"]
    assert "Kubernetes API emulators" in demo.stderr  # says plainly the clusters are emulated

    # The demo keeps its own ledger: the default one real tasks use stays untouched.
    assert not (tmp_path / "airflow" / "carbon_ledger.db").exists()
    demo_ledger = tmp_path / "airflow" / "carbon_demo_ledger.db"
    assert f"airflow-carbon report --ledger-url sqlite:///{demo_ledger}" in demo.stderr
    rows = _cli("report", "--format", "json", "--ledger-url", f"sqlite:///{demo_ledger}", home=tmp_path)
    assert rows.returncode == 0, rows.stderr[-3000:]
    data = json.loads(rows.stdout.strip().splitlines()[-1])
    (row,) = [r for r in data["rows"] if r["dag_id"] == report["dag_id"]]
    for key in ("dag_id", "task_id", "run_id", "cluster", "zone", "actual_start", "emissions_g",
                "baseline_emissions_g", "saving_g", "deadline_met"):
        assert key in row, key
    assert (row["task_id"], row["cluster"], row["run_id"], row["deadline_met"]) == (
        "fine_tune", "k8s_gb", report["run_id"], True)
