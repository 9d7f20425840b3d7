"""The cluster inventory against the Kubernetes API emulator: free resources, fallbacks, cache.

Each test reads the emulator through an Airflow Kubernetes connection (``AIRFLOW_CONN_*``) and
the real ``KubernetesHook``, as the operator does. What only a real control plane shows (real
node objects from kwok, the scheduler's binding) is in ``tests/realk8s/test_inventory_on_real_cluster.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.scheduling.candidates import ClusterCandidate
from airflow_carbon_provider.scheduling.inventory import (
    aread_inventories,
    aread_inventory,
    read_inventories,
    read_inventory,
)
from airflow_carbon_provider.testing.kube_emulator import RUN_SECONDS_KEY, EmulatedNode, KubeEmulator
from tests.integration.kube.conftest import FAST

pytestmark = pytest.mark.integration

GI = 2.0**30
NODES = {
    "gpu-a": EmulatedNode({"pool": "gpu"}, {"pods": "10", "cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "4"}),
    "gpu-b": EmulatedNode({"pool": "gpu"}, {"pods": "10", "cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "4"},
                          unschedulable=True),
    "cpu-a": EmulatedNode({"pool": "cpu"}),
}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    with KubeEmulator("k8s_inv", timing=FAST, nodes=NODES) as emulator:
        for name, value in emulator.connection_env().items():
            monkeypatch.setenv(name, value)
        yield emulator


@pytest.fixture
def other(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    with KubeEmulator("k8s_other", timing=FAST) as emulator:
        for name, value in emulator.connection_env().items():
            monkeypatch.setenv(name, value)
        yield emulator


def _run_pod(emulator: KubeEmulator, requests: dict[str, str], node_selector: dict[str, str]) -> None:
    api = client.CoreV1Api(config.new_client_from_config_dict(emulator.kube_config()))
    api.create_namespaced_pod("default", {
        "metadata": {"name": "trainer", "annotations": {RUN_SECONDS_KEY: "60"}},
        "spec": {"nodeSelector": node_selector, "containers": [
            {"name": "main", "image": "busybox:1", "resources": {"requests": requests}}]},
    })
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (emulator.pod("default", "trainer") or {}).get("spec", {}).get("nodeName"):
            return
        time.sleep(0.02)
    raise AssertionError("the emulator did not bind the pod")


def _node_lists(emulator: KubeEmulator) -> int:
    return emulator.request_count("GET", "/api/v1/nodes")


def test_inventory_reads_free_resources_of_the_candidates_node_pool(cluster: KubeEmulator) -> None:
    _run_pod(cluster, {"cpu": "3", "memory": "8Gi", "nvidia.com/gpu": "1"}, {"pool": "gpu"})
    gpu = ClusterCandidate("k8s_inv", node_selector={"pool": "gpu"}, capacity={"pods": 2, "nvidia.com/gpu": 8})
    inv = read_inventory(gpu, cache=IntensityCache())
    # gpu-b is cordoned: only gpu-a counts, less the running pod's requests.
    assert inv.cluster == {"pods": 9.0, "cpu": 13.0, "memory": 56 * GI, "nvidia.com/gpu": 3.0}
    assert inv.free == {"pods": 2.0, "cpu": 13.0, "memory": 56 * GI, "nvidia.com/gpu": 3.0}
    assert (inv.source, inv.nodes, inv.error) == ("cluster+declared", 1, None)
    assert inv.read_at is not None
    whole = read_inventory(ClusterCandidate("k8s_inv"), cache=IntensityCache())
    assert whole.source == "cluster" and whole.nodes == 2 and whole.free["pods"] == 119.0


def test_a_forbidden_node_list_falls_back_to_the_declared_capacity_logged_once(
    cluster: KubeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.refuse_node_list = 403
    cache = IntensityCache()
    cand = ClusterCandidate("k8s_inv", capacity=3)
    with caplog.at_level(logging.WARNING, logger="airflow_carbon_provider.scheduling.inventory"):
        found = [read_inventory(cand, cache=cache, ttl=30) for _ in range(5)]
    assert {(i.source, str(i.free)) for i in found} == {("declared", "{'pods': 3.0}")}
    assert found[0].error == (
        "Forbidden (403) listing nodes and pods on k8s_inv; grant the connection's user list on nodes and pods "
        "cluster-wide")
    warnings = [r for r in caplog.records if "Cannot read the free resources" in r.getMessage()]
    assert len(warnings) == 1  # once per TTL, not per call
    assert "emulator-token" not in caplog.text
    assert _node_lists(cluster) == 1


def test_a_hanging_api_falls_back_within_the_budget(cluster: KubeEmulator) -> None:
    cluster.node_list_delay = 5
    cand = ClusterCandidate("k8s_inv", capacity={"pods": 2})
    started = time.monotonic()
    inv = read_inventory(cand, timeout=0.5, cache=IntensityCache())
    assert time.monotonic() - started < 1.5
    assert (inv.source, inv.free) == ("declared", {"pods": 2.0})
    assert inv.error is not None and ("within 0.5 s" in inv.error or "timed out" in inv.error)


async def test_a_hanging_api_falls_back_within_the_budget_on_an_event_loop(cluster: KubeEmulator) -> None:
    cluster.node_list_delay = 5
    started = time.monotonic()
    inv = await aread_inventory(ClusterCandidate("k8s_inv"), timeout=0.5, cache=IntensityCache())
    assert time.monotonic() - started < 1.5
    assert (inv.source, inv.free, inv.error) == ("unknown", None, "no answer from k8s_inv within 0.5 s")


async def test_concurrent_callers_share_one_reading_per_cluster(cluster: KubeEmulator, other: KubeEmulator) -> None:
    cluster.node_list_delay = 0.2  # keep the first reading in flight while the others arrive
    cache = IntensityCache()
    pools = [ClusterCandidate("k8s_inv", node_selector={"pool": "gpu"}), ClusterCandidate("k8s_inv"),
             ClusterCandidate("k8s_other")]
    results = await asyncio.gather(*(aread_inventory(pools[i % 3], cache=cache) for i in range(100)))
    assert {r.source for r in results} == {"cluster"}
    assert _node_lists(cluster) == 1 and _node_lists(other) == 1
    assert cluster.request_count("GET", "/api/v1/pods") == 1
    assert (await aread_inventories(pools, cache=cache))["k8s_other"].free == {
        "pods": 110.0, "cpu": 8.0, "memory": 32 * GI}
    assert _node_lists(other) == 1


def test_a_reading_expires_after_its_ttl(cluster: KubeEmulator) -> None:
    clock = [0.0]
    cache = IntensityCache(monotonic=lambda: clock[0])
    cand = ClusterCandidate("k8s_inv", node_selector={"pool": "cpu"})
    assert read_inventories([cand], cache=cache, ttl=30)[cand.key].free["cpu"] == 8.0
    _run_pod(cluster, {"cpu": "2"}, {"pool": "cpu"})
    clock[0] = 29.0
    assert read_inventory(cand, cache=cache, ttl=30).free["cpu"] == 8.0  # cached
    assert _node_lists(cluster) == 1
    clock[0] = 31.0
    assert read_inventory(cand, cache=cache, ttl=30).free["cpu"] == 6.0  # read again
    assert _node_lists(cluster) == 2


def test_the_emulator_serves_nodes_like_the_api_and_binds_nothing_to_a_cordoned_node(cluster: KubeEmulator) -> None:
    api = client.CoreV1Api(config.new_client_from_config_dict(cluster.kube_config()))
    gpu = api.list_node(label_selector="pool=gpu").items
    assert [(n.metadata.name, n.spec.unschedulable, n.status.allocatable["nvidia.com/gpu"]) for n in gpu] == [
        ("gpu-a", None, "4"), ("gpu-b", True, "4")]
    assert api.read_node("cpu-a").status.allocatable == {"pods": "110", "cpu": "8", "memory": "32Gi"}
    cluster.cordon("gpu-a")
    api.create_namespaced_pod("default", {"metadata": {"name": "nowhere"}, "spec": {
        "nodeSelector": {"pool": "gpu"}, "containers": [{"name": "main", "image": "busybox:1"}]}})
    time.sleep(0.3)
    live = api.list_pod_for_all_namespaces(field_selector="status.phase!=Succeeded,status.phase!=Failed").items
    assert [(p.metadata.name, p.spec.node_name, p.status.phase) for p in live] == [("nowhere", None, "Pending")]


def test_an_unreachable_cluster_falls_back_saying_so(cluster: KubeEmulator) -> None:
    cluster.stop()  # the connection now points at a closed port
    inv = read_inventory(ClusterCandidate("k8s_inv", capacity=1), cache=IntensityCache(), timeout=5)
    assert (inv.source, inv.free) == ("declared", {"pods": 1.0})
    assert inv.error is not None and inv.error.startswith("k8s_inv unreachable (connection failed: ")
