"""The cluster inventory against a real control plane: RBAC refusal, then kwok nodes' allocatable minus a pod.

What the emulator cannot show: a real kube-apiserver's RBAC refusing the connection's user a
cluster-wide node list (the Role the fixture grants is namespaced), the node objects kwok
keeps, and a pod that the real scheduler bound and kwok moved to Running.
"""

from __future__ import annotations

import time

import pytest

from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.scheduling.candidates import ClusterCandidate
from airflow_carbon_provider.scheduling.inventory import read_inventory
from tests.realk8s.cluster import AIRFLOW_USER, RUN_FOR

pytestmark = [pytest.mark.real_kubernetes, pytest.mark.integration]

GI = 2.0**30
#: The ClusterRole docs/howto/inventory.rst asks for.
INVENTORY_RULES = [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]}]


def test_inventory_reads_kwok_allocatable_minus_a_running_pod_once_rbac_allows(clusters, monkeypatch):
    gb = clusters["k8s_gb"]
    for name, value in gb.connection_env().items():
        monkeypatch.setenv(name, value)
    pool = ClusterCandidate("k8s_gb", node_selector={"topology.kubernetes.io/zone": "eu-west-2a"}, capacity=5)

    # The fixture's user may handle pods in its namespaces only: listing nodes is refused.
    refused = read_inventory(pool, cache=IntensityCache(), timeout=5)
    assert (refused.source, refused.free) == ("declared", {"pods": 5.0})
    assert refused.error is not None and refused.error.startswith("Forbidden (403) listing nodes and pods on k8s_gb")

    admin, rbac = gb.admin_api(), gb.rbac_api()
    admin.create_namespaced_pod("ml", {
        "metadata": {"name": "trainer", "annotations": {RUN_FOR: "300s"}},
        "spec": {"nodeSelector": {"topology.kubernetes.io/zone": "eu-west-2a"}, "containers": [{
            "name": "main", "image": "busybox:1",
            "resources": {"requests": {"cpu": "3", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": "1"}}}]},
    })
    rbac.create_cluster_role({"metadata": {"name": "carbon-inventory"}, "rules": INVENTORY_RULES})
    rbac.create_cluster_role_binding({
        "metadata": {"name": "carbon-inventory"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "carbon-inventory"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AIRFLOW_USER}],
    })
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pod = admin.read_namespaced_pod("trainer", "ml")
            if pod.spec.node_name and pod.status.phase == "Running":
                break
            time.sleep(0.2)
        assert pod.spec.node_name == "k8s-gb-node-a" and pod.status.phase == "Running"

        inv = read_inventory(pool, cache=IntensityCache(), timeout=5)
        assert inv.error is None and inv.nodes == 1 and inv.source == "cluster+declared"
        # NodeSpec's allocatable (cpu 32, memory 128Gi, pods 110, 4 GPUs) less the pod (the GPU by its limit).
        assert {k: inv.cluster[k] for k in ("cpu", "memory", "pods", "nvidia.com/gpu")} == {
            "cpu": 29.0, "memory": 120 * GI, "pods": 109.0, "nvidia.com/gpu": 3.0}
        assert inv.free["pods"] == 5.0 and inv.free["cpu"] == 29.0  # declared pods cap the cluster's 109
    finally:
        rbac.delete_cluster_role_binding("carbon-inventory")
        rbac.delete_cluster_role("carbon-inventory")
