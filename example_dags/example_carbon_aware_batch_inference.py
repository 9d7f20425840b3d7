"""Batch inference that must be finished within 4 hours of its run, on one cluster or another.

Uses KubernetesPodOperator's own deferrable mode as well: the task waits for the low-carbon
window in the carbon trigger, then waits for the pod in KPO's trigger, holding no worker slot
either time. Each candidate names its namespace; the ``k8s_gb`` candidate uses its own carbon
connection when the Kubernetes connection's extra ``carbon_conn_id`` says so.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator

with DAG(
    dag_id="example_carbon_aware_batch_inference",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"expected_duration": "1h", "max_delay": "3h"},
    tags=["example", "carbon-aware"],
) as dag:
    # [START howto_operator_carbon_aware_pod_mapping]
    infer = CarbonAwareKubernetesPodOperator(
        task_id="batch_inference",
        cluster_conn_ids={
            "k8s_de": {"zone": "DE", "namespace": "inference"},
            "k8s_gb": {"zone": "GB", "namespace": "inference-gb"},
        },
        expected_duration="{{ params.expected_duration }}",
        # Finished within 4 h of becoming ready: start at most 3 h late for a 1 h job.
        max_delay="{{ params.max_delay }}",
        deferrable=True,
        poll_interval=2,
        image="python:3.12-slim",
        cmds=["python", "-c"],
        arguments=["print('scored 10000 rows')"],
        power_watts=120,
    )
    # [END howto_operator_carbon_aware_pod_mapping]
