"""Emulate a Kubernetes API server on loopback, for tests and the ``airflow-carbon demo``.

This is an **emulator**, not Kubernetes. It speaks enough of the core/v1 REST API for the
real ``KubernetesPodOperator`` (sync and deferrable), the official ``kubernetes`` client and
``kubernetes_asyncio`` to create, read, list (label and field selectors), watch, patch and
delete pods, stream their logs and list their events. There is no scheduler (a pod is bound
to the first fake node whose labels match its node selector and required node affinity),
no RBAC, no admission, no resource accounting (nodes report ``allocatable`` and pods keep
their requests, so a client can do the arithmetic, but a full node still takes pods) and no
container runtime: a fake kubelet moves
each pod Pending -> Running -> Succeeded (or Failed on request) on short timers and writes a
deterministic log. What it cannot show is checked against real control planes in
``tests/realk8s`` (``docs/howto/testing.rst`` says which behaviour is verified where).

One :class:`KubeEmulator` is one "cluster" with its own port and state; start several to
get several clusters, each reached through its own Airflow Kubernetes connection::

    with KubeEmulator("k8s_se", carbon_zone="SE-SE1") as emulator:
        os.environ.update(emulator.connection_env())  # AIRFLOW_CONN_K8S_SE
        ...  # run KubernetesPodOperator(kubernetes_conn_id="k8s_se", ...)
        assert emulator.pods()[0].phase == "Succeeded"

The server runs in a background thread with its own event loop, so synchronous code
(``dag.test()``, the task runner) and asynchronous code (triggers) can both call it.
Importing this package imports neither pytest nor Airflow.

The package is split by concern: :mod:`.selectors` (label, field and node selection),
:mod:`.patch` (merge and JSON patch), :mod:`.store` (objects, resourceVersions, watches,
records), :mod:`.kubelet` (pod lifecycle, logs, exec), :mod:`.server` (the REST API) and
:mod:`.emulator` (the :class:`KubeEmulator` facade: lifecycle and connections).
"""

from __future__ import annotations

from airflow_carbon_provider.testing.kube_emulator._common import (
    DEFAULT_ALLOCATABLE,
    EXIT_CODE_KEY,
    FAIL_KEY,
    LOG_KEY,
    RUN_SECONDS_KEY,
    XCOM_KEY,
    EmulatedNode,
    KubeletTiming,
    PodRecord,
    RequestRecord,
)
from airflow_carbon_provider.testing.kube_emulator.emulator import (
    KubeEmulator,
    connections_env,
    start_clusters,
)
from airflow_carbon_provider.testing.kube_emulator.selectors import SelectorError

__all__ = [
    "DEFAULT_ALLOCATABLE",
    "EXIT_CODE_KEY",
    "FAIL_KEY",
    "LOG_KEY",
    "RUN_SECONDS_KEY",
    "XCOM_KEY",
    "EmulatedNode",
    "KubeEmulator",
    "KubeletTiming",
    "PodRecord",
    "RequestRecord",
    "SelectorError",
    "connections_env",
    "start_clusters",
]
