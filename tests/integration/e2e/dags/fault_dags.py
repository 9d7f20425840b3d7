"""A DAG for the fault tests: its carbon source can be broken while the task waits."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator

with DAG(dag_id="fault_fragile_trace", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"finish_by": ""}) as dag:
    CarbonAwareKubernetesPodOperator(
        task_id="job",
        cluster_conn_ids=["k8s_de", "k8s_gb", "k8s_us"],
        carbon_conn_id="trace_fragile",  # a carbontrace connection whose file the test deletes mid-wait
        expected_duration="1m",
        deadline="{{ params.finish_by }}",
        replan_interval="1m",
        image="busybox",
        cmds=["echo", "ok"],
    )
