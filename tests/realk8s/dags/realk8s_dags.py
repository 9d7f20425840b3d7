"""DAGs for the real_kubernetes tests: the operator as a user writes it, against real clusters.

``get_logs=False`` everywhere: kwok simulates nodes without a kubelet and, as set up here, serves
no logs, so a real apiserver has no log endpoint to proxy to (the log path is tested on the
emulator). Each pod "runs" as long as
its annotation ``realk8s.airflow-carbon/run-for`` says (see ``tests/realk8s/stages.yaml``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator

RUN_FOR = "realk8s.airflow-carbon/run-for"
COMMON = {"image": "busybox", "cmds": ["sh", "-c", "echo ok"], "get_logs": False, "expected_duration": "1m",
          "max_delay": "0s", "poll_interval": 1, "startup_timeout_seconds": 60, "log_events_on_startup": False}
#: GB first in the plan; its candidate carries its own namespace, node selector and affinity, which
#: exist only on k8s_gb: on another cluster they would leave the pod Pending or refused.
GB_PLACEMENT = {
    "zone": "GB", "namespace": "inference-gb", "node_selector": {"gb-pool": "yes"},
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-2b"]}]},
    ]}}},
}
CANDIDATES = {"k8s_de": {"zone": "DE"}, "k8s_gb": GB_PLACEMENT, "k8s_us": {"zone": "US-CAL-CISO"}}

with DAG(dag_id="realk8s_placement", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as placement:
    CarbonAwareKubernetesPodOperator(task_id="job", cluster_conn_ids=CANDIDATES, namespace="ml", **COMMON)

with DAG(dag_id="realk8s_deferrable", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as deferrable:
    CarbonAwareKubernetesPodOperator(task_id="job", cluster_conn_ids=["k8s_de", "k8s_gb", "k8s_us"], namespace="ml",
                                     deferrable=True, annotations={RUN_FOR: "5s"},
                                     # its trigger also watches the pod's events (the watch API)
                                     **{**COMMON, "log_events_on_startup": True})

with DAG(dag_id="realk8s_retry", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as retry:
    # Try 1 times out after 25 s while its pod still runs (35 s). KPO's clean-up deletes
    # succeeded pods only (a common setting: failed pods are kept to debug them) and labels the
    # pod already_checked, so it lives on and KPO would never reattach to it. Try 2 must not
    # start a second pod beside it; its own pod runs 3 s.
    CarbonAwareKubernetesPodOperator(task_id="job", cluster_conn_ids=["k8s_de", "k8s_gb", "k8s_us"], namespace="ml",
                                     annotations={RUN_FOR: "{{ '35s' if ti.try_number == 1 else '3s' }}"},
                                     retries=1, retry_delay=timedelta(seconds=1),
                                     execution_timeout=timedelta(seconds=25), on_finish_action="delete_succeeded_pod",
                                     **COMMON)

with DAG(dag_id="realk8s_cluster_lost", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as lost:
    CarbonAwareKubernetesPodOperator(task_id="job", cluster_conn_ids=["k8s_de", "k8s_gb", "k8s_us"], namespace="ml",
                                     annotations={RUN_FOR: "5m"}, **COMMON)
