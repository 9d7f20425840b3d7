"""The real operator through ``dag.test()`` against real control planes (issue 12).

Three clusters, each its own etcd, kube-apiserver (token auth, RBAC), kube-scheduler and kwok
nodes labelled by region and zone; the Airflow connections authenticate as a user whose Role
allows pods in our namespaces only. Carbon data is the bundled trace replayed at 23:30 UTC on
2023-03-15 (``NOW_IN_TRACE``): k8s_gb is greenest, then k8s_us, then home k8s_de, and nothing
is worth waiting for, so each run starts at once.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.integration.e2e.conftest import soon
from tests.realk8s.conftest import PodWatcher, run_env

pytestmark = [pytest.mark.real_kubernetes, pytest.mark.integration]


def _ran(watcher: PodWatcher) -> list:
    return [p for p in watcher.pods() if "Running" in p.phases]


def test_the_example_training_dag_runs_its_pod_on_the_chosen_cluster(sandbox, clusters):
    """The example DAG as shipped (pod logs aside): real admission, resources and scheduling."""
    with PodWatcher(clusters, "example_carbon_aware_training") as watcher:
        result = sandbox.run_dag("example_carbon_aware_training",
                                 {"expected_duration": "1m", "finish_by": soon(4)}, env=run_env(clusters))
    assert result.state == "success", result.output[-5000:]
    decision = result.xcom("fine_tune", "carbon_decision")
    assert decision["chosen_cluster"] == decision["cluster"] == "k8s_gb" and decision["fallbacks"] == []
    [pod] = watcher.pods()
    # the real scheduler placed it (8 CPUs, 32 Gi and a GPU fit the kwok node) and kwok ran it
    assert (pod.cluster, pod.namespace) == ("k8s_gb", "ml")
    assert pod.node in {"k8s-gb-node-a", "k8s-gb-node-b"} and pod.phases[-1] in ("Running", "Succeeded")
    assert pod.name == result.xcom("fine_tune", "pod_name")
    assert not clusters["k8s_gb"].pods("ml")  # KPO deleted it once it succeeded


def test_rbac_forbidden_falls_back_to_the_next_candidate_without_its_placement(sandbox, clusters):
    """k8s_gb's Role lacks ``create`` on pods: a real 403; k8s_us gets the pod with none of GB's placement."""
    with clusters["k8s_gb"].forbid_pod_creation("inference-gb"), \
            PodWatcher(clusters, "realk8s_placement") as watcher:
        result = sandbox.run_dag("realk8s_placement", env=run_env(clusters))
    assert result.state == "success", result.output[-5000:]
    decision = result.xcom("job", "carbon_decision")
    [fallback] = decision["fallbacks"]
    assert fallback["cluster"] == "k8s_gb" and "403" in fallback["error"]
    assert re.search(r'cannot create resource .?"?pods', result.output), "not the apiserver's RBAC message"
    assert decision["cluster"] == "k8s_us"
    [pod] = watcher.pods()
    # GB's namespace does not exist on k8s_us and no node there has gb-pool or zone eu-west-2b:
    # any of them leaking would leave the pod refused or Pending; the real scheduler placed it.
    assert (pod.cluster, pod.namespace) == ("k8s_us", "ml")
    assert "gb-pool" not in pod.node_selector and not any((pod.affinity or {}).values())
    assert pod.node and pod.node.startswith("k8s-us-node-") and pod.unschedulable is None
    assert "Running" in pod.phases


def test_a_candidates_node_selector_and_affinity_reach_the_real_scheduler(sandbox, clusters):
    """GB's candidate asks for gb-pool and zone eu-west-2b: of two gb-pool nodes, the scheduler picks b."""
    with PodWatcher(clusters, "realk8s_placement") as watcher:
        result = sandbox.run_dag("realk8s_placement", env=run_env(clusters))
    assert result.state == "success", result.output[-5000:]
    [pod] = watcher.pods()
    assert (pod.cluster, pod.namespace, pod.node) == ("k8s_gb", "inference-gb", "k8s-gb-node-b")
    assert pod.node_selector == {"gb-pool": "yes"}
    terms = pod.affinity["node_affinity"]["required_during_scheduling_ignored_during_execution"]
    assert terms["node_selector_terms"][0]["match_expressions"][0]["values"] == ["eu-west-2b"]


def test_kpo_deferrable_mode_completes_through_the_real_watch_api(sandbox, clusters):
    """``deferrable=True``: KPO's trigger follows the pod through AsyncKubernetesHook on the chosen cluster."""
    with PodWatcher(clusters, "realk8s_deferrable") as watcher:
        result = sandbox.run_dag("realk8s_deferrable", env=run_env(clusters))
    assert result.state == "success", result.output[-5000:]
    decision = result.xcom("job", "carbon_decision")
    assert decision["cluster"] == "k8s_gb"
    [pod] = watcher.pods()
    assert pod.cluster == "k8s_gb" and "Running" in pod.phases
    assert "KubernetesPodTrigger" in result.output  # it deferred to KPO's own trigger


def test_a_retry_while_try_ones_pod_still_runs_leaves_one_live_pod(sandbox, clusters):
    """Try 1 times out with its pod still running; try 2 never runs a second pod beside it."""
    with PodWatcher(clusters, "realk8s_retry") as watcher:
        result = sandbox.run_dag("realk8s_retry", env=run_env(clusters))
    assert result.state == "success", result.output[-5000:]
    assert result.task("job")["try_number"] == 2, result.output[-5000:]
    assert "AirflowTaskTimeout" in result.output  # try 1 really timed out
    assert watcher.max_live == 1
    first, second = watcher.pods()
    assert (first.labels["try_number"], second.labels["try_number"]) == ("1", "2")
    assert first.phases[-1] == "Running"  # it was still running when try 2 deleted it
    assert "Deleting live pod" in result.output and first.name in result.output
    assert not clusters[first.cluster].pods("ml") or all(p.metadata.name != first.name
                                                        for p in clusters[first.cluster].pods("ml"))


def test_a_cluster_that_goes_away_mid_run_fails_the_task_as_kpo_does(sandbox, clusters):
    """k8s_gb's apiserver is killed while the pod runs: KPO cannot read the pod and the task fails."""
    killed = threading.Event()

    def kill_once_running() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if any(p.cluster == "k8s_gb" and "Running" in p.phases for p in watcher.pods()):
                clusters["k8s_gb"].kill_apiserver()
                killed.set()
                return
            time.sleep(0.2)

    with PodWatcher(clusters, "realk8s_cluster_lost") as watcher:
        killer = threading.Thread(target=kill_once_running, daemon=True)
        killer.start()
        started = time.monotonic()
        result = sandbox.run_dag("realk8s_cluster_lost", env=run_env(clusters))
        killer.join(5)
    assert killed.is_set(), result.output[-5000:]
    assert result.state == "failed", result.output[-5000:]
    assert result.task("job")["state"] == "failed"
    # what KPO raises when the API is unreachable: urllib3 gives up connecting to the apiserver
    port = clusters["k8s_gb"].server.rsplit(":", 1)[1]
    assert "Connection refused" in result.output and port in result.output, result.output[-5000:]
    print(f"task failed {time.monotonic() - started:.0f} s after the run started")
