"""Nightly fine-tuning across three clusters, done by 08:00, where and when the grid is cleanest.

Connections this DAG expects (see the docs' connection pages):

* ``k8s_de``, ``k8s_gb``, ``k8s_us``: Kubernetes connections whose extra ``carbon_zone`` names
  the grid zone each cluster draws power from (``DE``, ``GB``, ``US-CAL-CISO``). ``k8s_de`` is
  home: the baseline every saving is measured against.
* ``carbontrace_default``: the carbon-intensity source, a replay of a real trace (``airflow-carbon
  demo`` defines it). For live data point ``carbon_conn_id`` at an ``electricitymaps``,
  ``watttime`` or ``ukcarbonintensity`` connection. With neither defined the task runs now at
  home and says why.

``expected_duration`` and ``finish_by`` are run parameters, so a run can be triggered with a
different deadline (``airflow-carbon demo`` uses that to compress a night into a minute).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG
from kubernetes.client import models as k8s

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator

with DAG(
    dag_id="example_carbon_aware_training",
    schedule="0 20 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"expected_duration": "4h", "finish_by": ""},
    tags=["example", "carbon-aware"],
) as dag:
    # [START howto_operator_carbon_aware_pod]
    fine_tune = CarbonAwareKubernetesPodOperator(
        task_id="fine_tune",
        # Home first: the baseline. Each connection's extra "carbon_zone" names its grid zone.
        cluster_conn_ids=["k8s_de", "k8s_gb", "k8s_us"],
        expected_duration="{{ params.expected_duration }}",
        # Done by 08:00 UTC the next morning, unless the run says otherwise.
        deadline="{{ params.finish_by or (dag_run.run_after + macros.timedelta(days=1))"
        ".replace(hour=8, minute=0, second=0, microsecond=0).isoformat() }}",
        min_saving_pct=5,
        namespace="ml",
        image="python:3.12-slim",
        cmds=["python", "-c"],
        arguments=["print('fine-tuning: epoch 1/1 done')"],
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "8", "memory": "32Gi"}, limits={"nvidia.com/gpu": "1"}
        ),
        get_logs=True,
    )
    # [END howto_operator_carbon_aware_pod]
