"""Every example DAG imports cleanly and declares what the docs say it does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.sensors.carbon_window import CarbonWindowSensor

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"


def _dag(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.stem)
def test_example_dag_imports_without_errors(path):
    dag = _dag(path)
    assert dag.dag_id == path.stem
    assert "carbon-aware" in dag.tags
    ours = (CarbonAwareKubernetesPodOperator, CarbonWindowSensor)
    # a mapped task is a MappedOperator naming its class
    assert any(isinstance(t, ours) or getattr(t, "operator_class", None) in ours for t in dag.tasks)
    for marker in ("[START ", "[END "):
        assert marker in path.read_text(), f"{path.name} has no {marker} marker for the docs"


def test_training_runs_on_three_clusters_with_a_morning_deadline():
    task = _dag(EXAMPLES / "example_carbon_aware_training.py").get_task("fine_tune")
    assert task.cluster_conn_ids == ["k8s_de", "k8s_gb", "k8s_us"]
    assert "hour=8" in task.deadline and task.max_delay is None


def test_the_fleet_example_maps_coordinated_shards_over_capped_clusters():
    task = _dag(EXAMPLES / "example_carbon_aware_fleet.py").get_task("fine_tune")
    kwargs = task.partial_kwargs
    assert kwargs["coordinate"] is True
    assert {name: spec["capacity"] for name, spec in kwargs["cluster_conn_ids"].items()} == {
        "k8s_de": 50, "k8s_gb": {"pods": 50, "cpu": 128}, "k8s_us": 50}
