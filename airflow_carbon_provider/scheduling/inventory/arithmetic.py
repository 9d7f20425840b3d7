"""The inventory's arithmetic, pure: what a task or a pod asks for, and what matching nodes have free.

Objects are dicts in the Kubernetes API's JSON shape (camelCase), as a list call returns them,
so the same functions serve the emulator, a real cluster and tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_carbon_provider.core.resources import POD, Resources, parse_quantity

__all__ = ["effective_capacity", "free_resources", "pod_demand", "task_demand"]

#: Only pods in these phases hold resources.
TERMINATED = ("Succeeded", "Failed")


# --------------------------------------------------------------------------- demand


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _amounts(spec: Any, where: str) -> dict[str, float]:
    if not spec:
        return {}
    return {str(k): parse_quantity(v, name=f"{where}[{k!r}]") for k, v in dict(spec).items()}


def _container_requests(container_resources: Any, where: str) -> dict[str, float]:
    """Return what one container requests: its requests, and its limit where it names no request.

    Kubernetes defaults a container's request to its limit when only the limit is given.
    """
    if container_resources is None:
        return {}
    limits = _amounts(_field(container_resources, "limits"), f"{where}.limits")
    requests = _amounts(_field(container_resources, "requests"), f"{where}.requests")
    return {**limits, **requests}


def task_demand(container_resources: Any) -> dict[str, float]:
    """Return what a task with these ``container_resources`` asks a cluster for: one pod plus its requests.

    :param container_resources: KPO's ``container_resources``: a ``V1ResourceRequirements``,
        a dict with ``requests`` and ``limits``, or ``None`` (just one pod). A resource with
        a limit but no request counts its limit, as Kubernetes defaults the request to it.
    :raises ~airflow_carbon_provider.core.resources.ResourceError: for a quantity that cannot be read.
    """
    return {**POD, **_container_requests(container_resources, "container_resources")}


def _add(into: dict[str, float], amount: Mapping[str, float]) -> None:
    for key, value in amount.items():
        into[key] = into.get(key, 0.0) + value


def _max(into: dict[str, float], amount: Mapping[str, float]) -> None:
    for key, value in amount.items():
        into[key] = max(into.get(key, 0.0), value)


def pod_demand(pod: Mapping[str, Any]) -> dict[str, float]:
    """Return what a pod (a dict in the API's JSON shape) holds on its node: one pod plus its requests.

    Kubernetes' rule: the larger, per resource, of the sum over the app containers (plus
    restartable init containers, i.e. sidecars) and the largest single init container (plus
    the sidecars started before it), then the pod ``overhead`` on top.
    """
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    main: dict[str, float] = {}
    for container in spec.get("containers") or []:
        _add(main, _container_requests(container.get("resources"), f"pod {name}"))
    init_peak: dict[str, float] = {}
    sidecars: dict[str, float] = {}
    for container in spec.get("initContainers") or []:
        requests = _container_requests(container.get("resources"), f"pod {name}")
        if container.get("restartPolicy") == "Always":  # a sidecar: runs alongside, holds its requests
            _add(sidecars, requests)
            _max(init_peak, sidecars)
        else:
            step = dict(sidecars)
            _add(step, requests)
            _max(init_peak, step)
    _add(main, sidecars)
    _max(main, init_peak)
    _add(main, _amounts(spec.get("overhead"), f"pod {name}.overhead"))
    return {**main, "pods": 1.0}


# --------------------------------------------------------------------------- arithmetic


def _node_is_usable(node: Mapping[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _matches(labels: Mapping[str, str], node_selector: Mapping[str, str] | None) -> bool:
    return all(labels.get(k) == v for k, v in (node_selector or {}).items())


def _tolerates(toleration: Any, taint: Mapping[str, Any]) -> bool:
    """Return whether one toleration (a ``V1Toleration`` or a dict) tolerates one taint, as Kubernetes rules."""
    effect = _field(toleration, "effect")
    if effect and effect != taint.get("effect"):
        return False
    key = _field(toleration, "key") or ""
    if (_field(toleration, "operator") or "Equal") == "Exists":
        return not key or key == taint.get("key")
    return bool(key == taint.get("key") and (_field(toleration, "value") or "") == (taint.get("value") or ""))


def _repels(node: Mapping[str, Any], tolerations: Sequence[Any]) -> bool:
    """Return whether the node has a ``NoSchedule``/``NoExecute`` taint none of ``tolerations`` tolerates."""
    return any(
        taint.get("effect") in ("NoSchedule", "NoExecute") and not any(_tolerates(t, taint) for t in tolerations)
        for taint in (node.get("spec") or {}).get("taints") or []
    )


def free_resources(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Any] | None = None,
) -> tuple[dict[str, float], int]:
    """Return what the matching nodes can still take, and how many nodes were counted.

    :param nodes: node objects in the API's JSON shape (``metadata.labels``, ``spec.unschedulable``,
        ``status.conditions``, ``status.allocatable``).
    :param pods: pod objects in the API's JSON shape; those not bound to a counted node, and
        those that have terminated (``Succeeded``, ``Failed``), hold nothing.
    :param node_selector: only nodes with all these labels count (the candidate's node pool).
    :param tolerations: the task's tolerations (``V1Toleration`` or dicts); when given, nodes
        with a ``NoSchedule`` or ``NoExecute`` taint that they do not tolerate do not count.
        ``None`` (the default) ignores taints.
    :return: ``(free, nodes counted)``; each resource is the nodes' allocatable sum minus what
        bound pods request, never below zero. Resources no node offers are absent.
    """
    allocatable: dict[str, float] = {}
    counted: set[str] = set()
    for node in nodes:
        metadata = node.get("metadata") or {}
        if not _node_is_usable(node) or not _matches(metadata.get("labels") or {}, node_selector):
            continue
        if tolerations is not None and _repels(node, tolerations):
            continue
        counted.add(metadata.get("name", ""))
        name = metadata.get("name", "?")
        _add(allocatable, _amounts((node.get("status") or {}).get("allocatable"), f"node {name} allocatable"))
    used: dict[str, float] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in TERMINATED:
            continue
        if (pod.get("spec") or {}).get("nodeName") not in counted:
            continue
        _add(used, pod_demand(pod))
    free = {key: max(0.0, total - used.get(key, 0.0)) for key, total in allocatable.items()}
    return free, len(counted)


def effective_capacity(
    cluster: Resources | None, declared: Resources | None
) -> tuple[dict[str, float] | None, str]:
    """Combine what the cluster has free with the declared cap: per resource, the smaller.

    :return: ``(free, source)``; ``free`` is ``None`` (unlimited) when neither is known, and
        ``source`` is ``cluster``, ``declared``, ``cluster+declared`` or ``unknown``.
    """
    if cluster is None and declared is None:
        return None, "unknown"
    if declared is None:
        return dict(cluster or {}), "cluster"
    if cluster is None:
        return dict(declared), "declared"
    merged = dict(cluster)
    for key, value in declared.items():
        merged[key] = min(value, merged.get(key, math.inf))
    return merged, "cluster+declared"
