"""What each candidate cluster can take now, read from the cluster and capped by what was declared.

For a candidate the inventory is, in :mod:`~airflow_carbon_provider.core.resources` units
(``pods``, ``cpu``, ``memory``, ``nvidia.com/gpu``, any extended resource):

* **from the cluster**, through the Kubernetes API with the candidate's connection (the same
  ``KubernetesHook`` path, ``config_file``, ``cluster_context`` and ``in_cluster`` as the
  operator): the sum of ``status.allocatable`` over the nodes that are Ready, not cordoned
  (``spec.unschedulable``) and match the candidate's ``node_selector``, minus the requests of
  the pods bound to them that have not terminated (Kubernetes' rule: the larger of the sum
  over containers and the largest init container, plus the pod overhead; a container that
  names only a limit requests its limit). ``pods`` is the nodes' allocatable pods minus the
  pods bound to them. Given the task's ``tolerations``, nodes with a ``NoSchedule`` or
  ``NoExecute`` taint they do not tolerate do not count either.
* **declared**: :attr:`~airflow_carbon_provider.scheduling.candidates.ClusterCandidate.capacity`
  (an integer means that many pods). A declared capacity is a cap the user sets: when the
  cluster can be read too, each resource is the smaller of the two (a resource named by only
  one side takes that side's figure).
* neither: unlimited (``free`` is ``None``).

:class:`Inventory` says where the figures came from (``source``), when the cluster was read,
and, in one line without secrets, why it could not be (403 Forbidden listing nodes,
unreachable, no answer within the budget). A failure never raises into the task: the
inventory falls back to the declared capacity and logs the failure once per TTL.

Readings are cached per cluster (connection, kubeconfig file, context, in-cluster flag) for
``[carbon] inventory_ttl`` seconds (default 30), in one process-wide cache with single-flight
fetches (the machinery of :mod:`~airflow_carbon_provider.hooks.cache`): a hundred triggers
asking at once cost one reading (one list of nodes and one of pods) per cluster; candidates
that are node pools of one cluster share it. Every reading has a wall-clock budget
(``timeout``, default ``[carbon] inventory_timeout`` or 3 s). The synchronous Kubernetes
client runs in a daemon thread; the asynchronous functions read the connection with the async
getters first, so a trigger never calls a blocking connection lookup on its event loop.

In parts: :mod:`~airflow_carbon_provider.scheduling.inventory.arithmetic` (pure: demands and
free resources from API objects) and :mod:`~airflow_carbon_provider.scheduling.inventory.reading`
(the hook, the bounded calls, the cache, the result type and the entry points).
"""

from __future__ import annotations

from airflow_carbon_provider.scheduling.inventory.arithmetic import (
    effective_capacity,
    free_resources,
    pod_demand,
    task_demand,
)
from airflow_carbon_provider.scheduling.inventory.reading import (
    DEFAULT_INVENTORY_TIMEOUT,
    DEFAULT_INVENTORY_TTL,
    ClusterReading,
    Inventory,
    aread_inventories,
    aread_inventory,
    inventory_cache,
    inventory_timeout,
    inventory_ttl,
    read_inventories,
    read_inventory,
)

__all__ = [
    "DEFAULT_INVENTORY_TIMEOUT",
    "DEFAULT_INVENTORY_TTL",
    "ClusterReading",
    "Inventory",
    "aread_inventories",
    "aread_inventory",
    "effective_capacity",
    "free_resources",
    "inventory_cache",
    "inventory_timeout",
    "inventory_ttl",
    "pod_demand",
    "read_inventories",
    "read_inventory",
    "task_demand",
]
