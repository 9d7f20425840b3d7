"""A sweep of fine-tuning shards that share three clusters without herding onto one.

Each shard is one mapped task instance. With ``coordinate=True`` (the default) every shard's
plan sees what each cluster can take (its nodes, read through the Kubernetes connection, and
the ``capacity`` declared below) and what the other shards already reserved in the ledger,
so when Great Britain's grid turns clean the first shards take ``k8s_gb`` and the rest the
next-best cluster and window that still has room, instead of all 200 choosing ``k8s_gb``
(see the docs' "Many tasks, one fleet").

Connections: as ``example_carbon_aware_training`` (``k8s_de`` home, ``k8s_gb``, ``k8s_us``,
each with its ``carbon_zone`` extra, and ``carbontrace_default`` or a live carbon source).
``shards``, ``expected_duration`` and ``finish_by`` are run parameters.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task
from kubernetes.client import models as k8s

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator

with DAG(
    dag_id="example_carbon_aware_fleet",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"shards": 200, "expected_duration": "1h", "finish_by": ""},
    tags=["example", "carbon-aware"],
) as dag:

    @task
    def shard_arguments(params: dict | None = None) -> list[list[str]]:
        """Return one argument list per shard (``params.shards`` of them)."""
        return [[f"print('fine-tuning shard {i}')"] for i in range(int((params or {})["shards"]))]

    # [START howto_operator_carbon_aware_fleet]
    fine_tune = CarbonAwareKubernetesPodOperator.partial(
        task_id="fine_tune",
        # At most this much of each cluster is planned for carbon-aware tasks at once; the
        # cluster's own free room (nodes' allocatable minus running pods) caps it further.
        cluster_conn_ids={
            "k8s_de": {"capacity": 50},
            "k8s_gb": {"capacity": {"pods": 50, "cpu": 128}},
            "k8s_us": {"capacity": 50},
        },
        coordinate=True,  # the default: plans share the fleet through reservations
        expected_duration="{{ params.expected_duration }}",
        deadline="{{ params.finish_by or (dag_run.run_after + macros.timedelta(hours=12)).isoformat() }}",
        namespace="ml",
        image="python:3.12-slim",
        cmds=["python", "-c"],
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "4", "memory": "8Gi"}),
        get_logs=True,
    ).expand(arguments=shard_arguments())
    # [END howto_operator_carbon_aware_fleet]
