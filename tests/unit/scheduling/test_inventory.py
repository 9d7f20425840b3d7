"""The cluster inventory's arithmetic: which nodes count, which pods hold what, and the declared cap."""

from __future__ import annotations

import pytest
from kubernetes.client import V1ResourceRequirements

from airflow_carbon_provider.core.resources import ResourceError
from airflow_carbon_provider.scheduling.candidates import (
    ClusterCandidate,
    ScheduleConfigError,
    parse_candidates,
)
from airflow_carbon_provider.scheduling.inventory import (
    ClusterReading,
    Inventory,
    effective_capacity,
    free_resources,
    pod_demand,
    task_demand,
)
from airflow_carbon_provider.scheduling.inventory.reading import _describe_failure, _inventory

GI = 2.0**30


def node(name, labels=None, *, cpu="8", memory="32Gi", pods="110", gpu=None, ready=True, cordoned=False):
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpu is not None:
        allocatable["nvidia.com/gpu"] = gpu
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "allocatable": allocatable},
    }


def pod(on, *, requests=None, limits=None, phase="Running", init=None):
    resources = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    spec = {"nodeName": on, "containers": [{"name": "main", "resources": resources}]}
    if init:
        spec["initContainers"] = init
    return {"metadata": {"name": "p"}, "spec": spec, "status": {"phase": phase}}


def test_free_is_allocatable_of_matching_nodes_minus_live_pods_requests():
    nodes = [node("a", {"pool": "gpu"}, gpu="4"), node("b", {"pool": "gpu"}, gpu="4"), node("c", {"pool": "cpu"})]
    pods = [pod("a", requests={"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}),
            pod("c", requests={"cpu": "4"}),  # another pool: not counted
            pod(None, requests={"cpu": "1"})]  # not bound: holds nothing yet
    free, counted = free_resources(nodes, pods, {"pool": "gpu"})
    assert counted == 2
    assert free == {"cpu": 15.5, "memory": 63 * GI, "pods": 219.0, "nvidia.com/gpu": 7.0}


def test_cordoned_and_not_ready_nodes_do_not_count():
    nodes = [node("a"), node("b", cordoned=True), node("c", ready=False)]
    free, counted = free_resources(nodes, [pod("b", requests={"cpu": "1"})])
    assert counted == 1
    assert free == {"cpu": 8.0, "memory": 32 * GI, "pods": 110.0}


def test_terminated_pods_hold_nothing():
    pods = [pod("a", requests={"cpu": "2"}, phase="Succeeded"), pod("a", requests={"cpu": "2"}, phase="Failed"),
            pod("a", requests={"cpu": "2"}, phase="Pending")]
    free, _ = free_resources([node("a")], pods)
    assert free["cpu"] == 6.0 and free["pods"] == 109.0


def test_free_never_goes_below_zero():
    free, _ = free_resources([node("a", cpu="1")], [pod("a", requests={"cpu": "3"})])
    assert free["cpu"] == 0.0


def test_a_container_with_only_a_limit_requests_its_limit():
    assert pod_demand(pod("a", requests={"cpu": "1"}, limits={"cpu": "2", "memory": "1Gi"})) == {
        "pods": 1.0, "cpu": 1.0, "memory": GI}


def test_init_containers_count_by_their_peak_and_sidecars_add_up():
    init = [{"name": "fetch", "resources": {"requests": {"cpu": "3"}}},
            {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "250m"}}}]
    demand = pod_demand(pod("a", requests={"cpu": "1", "memory": "1Gi"}, init=init))
    # max(init peak 3, main 1 + sidecar 0.25) = 3; memory from main only
    assert demand == {"pods": 1.0, "cpu": 3.0, "memory": GI}
    init[0]["resources"]["requests"]["cpu"] = "500m"
    assert pod_demand(pod("a", requests={"cpu": "1"}, init=init))["cpu"] == 1.25


def test_task_demand_from_container_resources():
    assert task_demand(None) == {"pods": 1.0}
    assert task_demand(V1ResourceRequirements(requests={"cpu": "2", "memory": "8Gi"},
                                              limits={"nvidia.com/gpu": "1", "cpu": "4"})) == {
        "pods": 1.0, "cpu": 2.0, "memory": 8 * GI, "nvidia.com/gpu": 1.0}
    assert task_demand({"limits": {"memory": "512Mi"}}) == {"pods": 1.0, "memory": 0.5 * GI}
    with pytest.raises(ResourceError, match=r"container_resources\.requests\['cpu'\]"):
        task_demand({"requests": {"cpu": "two"}})


def test_declared_caps_the_cluster_per_resource_and_neither_is_unlimited():
    assert effective_capacity({"pods": 100.0, "cpu": 8.0}, {"pods": 5.0, "nvidia.com/gpu": 2.0}) == (
        {"pods": 5.0, "cpu": 8.0, "nvidia.com/gpu": 2.0}, "cluster+declared")
    assert effective_capacity({"cpu": 8.0}, None) == ({"cpu": 8.0}, "cluster")
    assert effective_capacity(None, {"pods": 3.0}) == ({"pods": 3.0}, "declared")
    assert effective_capacity(None, None) == (None, "unknown")


def test_an_unreadable_cluster_falls_back_to_the_declared_capacity_and_says_why():
    cand = ClusterCandidate("k8s_se", capacity=4)
    inv = _inventory(cand, ClusterReading(error="Forbidden (403) listing nodes and pods on k8s_se"))
    assert (inv.free, inv.source, inv.cluster) == ({"pods": 4.0}, "declared", None)
    assert "403" in inv.describe()
    unknown = _inventory(ClusterCandidate("k8s_se"), ClusterReading(error="k8s_se unreachable"))
    assert (unknown.free, unknown.source) == (None, "unknown")
    assert unknown.fits({"pods": 1.0, "cpu": 1000.0})


def test_fits_checks_every_resource_it_knows():
    inv = Inventory("k", {"pods": 1.0, "cpu": 2.0}, "cluster")
    assert inv.fits({"pods": 1.0, "cpu": 2.0, "memory": 1e12})  # memory unknown: unlimited
    assert not inv.fits({"pods": 1.0, "cpu": 2.5})
    assert inv.to_dict()["free"] == {"pods": 1.0, "cpu": 2.0}


def test_failure_messages_are_one_line_and_name_the_fix():
    cand = ClusterCandidate("k8s_se")

    class Api(Exception):
        status, reason = 403, "Forbidden"

    assert _describe_failure(Api("token abc"), cand, 3) == (
        "Forbidden (403) listing nodes and pods on k8s_se; grant the connection's user list on nodes and pods "
        "cluster-wide")
    assert _describe_failure(TimeoutError(), cand, 2.5) == "no answer from k8s_se within 2.5 s"
    refused = ConnectionRefusedError(111, "Connection refused")
    wrapped = OSError("Max retries exceeded")
    wrapped.__cause__ = refused
    assert _describe_failure(wrapped, cand, 3) == "k8s_se unreachable (connection failed: OSError)"


def test_capacity_accepts_an_integer_or_a_dict_of_resources():
    gb, se = parse_candidates({
        "k8s_gb": {"zone": "GB", "capacity": 3},
        "k8s_se": {"zone": "SE", "capacity": {"pods": 10, "cpu": "64", "memory": "256Gi", "nvidia.com/gpu": 8}},
    })
    assert gb.capacity == 3 and gb.resources == {"pods": 3.0} and gb.pod_capacity == 3
    assert se.capacity == {"pods": 10.0, "cpu": 64.0, "memory": 256 * GI, "nvidia.com/gpu": 8.0}
    assert se.pod_capacity == 10
    assert ClusterCandidate.from_dict(se.to_dict()) == se  # trigger kwargs round trip
    assert ClusterCandidate("x", capacity={"cpu": 4.0}).pod_capacity is None
    with pytest.raises(ScheduleConfigError, match=r"cluster_conn_ids\['k8s_se'\]\.capacity\['memory'\]"):
        parse_candidates({"k8s_se": {"zone": "SE", "capacity": {"memory": "lots"}}})


def test_given_tolerations_nodes_with_an_untolerated_noschedule_taint_do_not_count():
    gpu = node("gpu", gpu="4")
    gpu["spec"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    soft = node("soft")
    soft["spec"]["taints"] = [{"key": "spot", "effect": "PreferNoSchedule"}]  # only a preference
    nodes = [gpu, soft]
    assert free_resources(nodes, [])[1] == 2  # taints ignored unless tolerations are given
    assert free_resources(nodes, [], tolerations=[])[1] == 1
    tolerate = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert free_resources(nodes, [], tolerations=[tolerate])[1] == 2
    assert free_resources(nodes, [], tolerations=[{"key": "nvidia.com/gpu", "value": "absent"}])[1] == 1
    from kubernetes.client import V1Toleration

    assert free_resources(nodes, [], tolerations=[V1Toleration(operator="Exists")])[1] == 2


def test_ttl_and_timeout_come_from_the_carbon_config_section(monkeypatch, caplog):
    from airflow_carbon_provider.scheduling.inventory import inventory_timeout, inventory_ttl

    monkeypatch.setenv("AIRFLOW__CARBON__INVENTORY_TTL", "5")
    monkeypatch.setenv("AIRFLOW__CARBON__INVENTORY_TIMEOUT", "1.5")
    assert (inventory_ttl(), inventory_timeout()) == (5.0, 1.5)
    monkeypatch.setenv("AIRFLOW__CARBON__INVENTORY_TTL", "soon")
    assert inventory_ttl() == 30.0
    assert "[carbon] inventory_ttl 'soon' is not a number of seconds" in caplog.text


def test_a_cached_reading_keeps_what_the_arithmetic_needs():
    from airflow_carbon_provider.scheduling.inventory.reading import _slim_node, _slim_pod

    tainted = node("gpu", {"pool": "gpu"}, gpu="1", cordoned=True)
    tainted["spec"]["taints"] = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
    tainted["status"]["images"] = ["a" * 1000]  # dropped
    slim = _slim_node(tainted)
    assert "images" not in slim["status"]
    assert free_resources([slim], [], tolerations=[]) == free_resources([tainted], [], tolerations=[])
    init = [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "3"}}}]
    full = pod("gpu", requests={"cpu": "1"}, limits={"nvidia.com/gpu": "1"}, init=init)
    assert pod_demand(_slim_pod(full)) == pod_demand(full) == {"pods": 1.0, "cpu": 3.0, "nvidia.com/gpu": 1.0}


def test_an_unexpected_error_is_one_line_without_a_credential():
    error = ValueError("Invalid kube-config: token: s3cr3t-value, user 'x'\nsecond line")
    message = _describe_failure(error, ClusterCandidate("k8s_se"), 3)
    assert message == "cannot read k8s_se: ValueError: Invalid kube-config: token: ***, user 'x'"
    assert "s3cr3t" not in _describe_failure(RuntimeError("Authorization: Bearer s3cr3t"), ClusterCandidate("a"), 3)
