"""Fixtures for the ``real_kubernetes`` tests: three real control planes and an Airflow home.

The binaries are built once per Kubernetes version by ``build.sh`` into ``~/.cache``. When they
are missing and ``go`` is on PATH, the session builds them first (tens of minutes, once); with no
Go the tests are skipped saying how to build, and under ``CI=true`` they fail instead, since
``.ci/run`` builds them before pytest. ``AIRFLOW_CARBON_K8S_BUILD=0`` turns the automatic build
off (the tests then skip saying so).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon_provider.testing.replay import DEMO_MOMENT, replay_connection_env
from airflow_carbon_provider.testing.sandbox import AirflowSandbox, example_dags_folder
from tests.realk8s.cluster import (
    BUILD_SCRIPT,
    K8S_VERSION,
    NodeSpec,
    RealCluster,
    bin_dir,
    build_binaries,
    missing_binaries,
    start_clusters,
)

DAGS = Path(__file__).parent / "dags"
#: Half an hour after the demo's moment: GB ~101, US ~205, DE ~489 gCO2eq/kWh, flat for a while,
#: so the plan is "start now on k8s_gb" and nothing waits for a window.
NOW_IN_TRACE = DEMO_MOMENT + timedelta(minutes=30)
#: (zone, region) per cluster, as the emulator fixtures of tests/integration/operator name them.
CLUSTERS = {"k8s_de": ("DE", "eu-central-1"), "k8s_gb": ("GB", "eu-west-2"), "k8s_us": ("US-CAL-CISO", "us-west-1")}
NAMESPACES = ("default", "ml", "inference", "inference-gb")


def _nodes(conn_id: str, region: str) -> list[NodeSpec]:
    """Two nodes per cluster in two zones, both in the cluster's pool (``<de|gb|us>-pool=yes``)."""
    pool = f"{conn_id.removeprefix('k8s_')}-pool"
    return [
        NodeSpec(f"{conn_id.replace('_', '-')}-node-{suffix}", {  # node names are DNS names
            "team": "ml", pool: "yes", "topology.kubernetes.io/region": region,
            "topology.kubernetes.io/zone": f"{region}{suffix}",
        })
        for suffix in ("a", "b")
    ]


def _binaries_or_skip() -> None:
    missing = missing_binaries()
    if not missing:
        return
    how = f"run `bash {BUILD_SCRIPT.relative_to(Path.cwd()) if BUILD_SCRIPT.is_relative_to(Path.cwd()) else BUILD_SCRIPT}`"
    reason = f"real Kubernetes {K8S_VERSION} binaries not built ({', '.join(missing)} missing in {bin_dir()})"
    if shutil.which("go") is None:
        reason += f" and no `go` on PATH: install Go 1.26+ and {how}"
    elif os.environ.get("AIRFLOW_CARBON_K8S_BUILD", "1") == "0":
        reason += f"; AIRFLOW_CARBON_K8S_BUILD=0 turns the automatic build off: {how}"
    else:
        print(f"\nrealk8s: building {', '.join(missing)} with {BUILD_SCRIPT} (once per version; "
              "about half an hour on two cores)", file=sys.stderr, flush=True)
        started = time.monotonic()
        build_binaries()
        print(f"realk8s: built in {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr, flush=True)
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " (under CI .ci/run builds them first)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_clusters() -> Iterator[dict[str, RealCluster]]:
    """Start three real clusters (k8s_de home, k8s_gb, k8s_us) for the session; stop them after."""
    _binaries_or_skip()
    started = time.monotonic()
    running = start_clusters(
        {conn_id: (zone, _nodes(conn_id, region)) for conn_id, (zone, region) in CLUSTERS.items()},
        namespaces=NAMESPACES,
    )
    wall = time.monotonic() - started
    each = ", ".join(f"{name} {c.startup_seconds:.1f} s" for name, c in running.items())
    print(f"\nrealk8s: 3 clusters ({K8S_VERSION}) up in {wall:.1f} s wall clock ({each})",
          file=sys.stderr, flush=True)
    try:
        yield running
    finally:
        for cluster in running.values():
            cluster.stop()


@pytest.fixture
def clusters(real_clusters: dict[str, RealCluster]) -> Iterator[dict[str, RealCluster]]:
    """Return the session's clusters, with no pod left over from an earlier test."""
    for cluster in real_clusters.values():
        cluster.delete_all_pods()
    yield real_clusters
    for cluster in real_clusters.values():
        if "kube-apiserver" not in cluster._procs:  # a test killed it: bring it back for the next one
            cluster.start_apiserver()
        cluster.delete_all_pods()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowSandbox]:
    """Return a migrated SQLite Airflow home holding the example training DAG and our test DAGs."""
    box = AirflowSandbox(tmp_path_factory.mktemp("realk8s_home"))
    # The example as shipped, but for its pod logs: no kubelet runs and kwok serves none here.
    example = (example_dags_folder() / "example_carbon_aware_training.py").read_text()
    assert example.count("get_logs=True") == 1, "the example DAG changed: revisit this copy"
    (box.dags_folder / "example_carbon_aware_training.py").write_text(example.replace("get_logs=True", "get_logs=False"))
    for dag_file in sorted(DAGS.glob("*.py")):
        box.add_dag_file(dag_file)
    box.migrate()
    yield box


def run_env(clusters: dict[str, RealCluster], **extra: str) -> dict[str, str]:
    """Return the connections (one per cluster, as the airflow user) and the replayed carbon source."""
    env: dict[str, str] = {}
    for cluster in clusters.values():
        env.update(cluster.connection_env())
    env.update(replay_connection_env(moment=NOW_IN_TRACE, lead=timedelta(0)))
    env.update(extra)
    return env


@dataclass
class SeenPod:
    """What the watcher saw of one pod over its life."""

    cluster: str
    namespace: str
    name: str
    phases: list[str] = field(default_factory=list)
    node: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    affinity: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    unschedulable: str | None = None


class PodWatcher:
    """Poll every cluster for the pods of one DAG while it runs (pods are deleted when they end).

    Records each pod's phases, node, placement and the most pods ever live at once.
    """

    def __init__(self, clusters: dict[str, RealCluster], dag_id: str, interval: float = 0.25) -> None:
        self.clusters, self.dag_id, self.interval = clusters, dag_id, interval
        self.seen: dict[tuple[str, str], SeenPod] = {}
        self.max_live = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._apis = {name: c.admin_api(retries=0) for name, c in clusters.items()}

    def __enter__(self) -> PodWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            live = 0
            for name, api in self._apis.items():
                try:
                    pods = api.list_pod_for_all_namespaces(label_selector=f"dag_id={self.dag_id}",
                                                          _request_timeout=2).items
                except Exception:  # an apiserver a test killed: nothing to see there
                    continue
                for pod in pods:
                    seen = self.seen.setdefault((name, pod.metadata.name), SeenPod(
                        name, pod.metadata.namespace, pod.metadata.name,
                        node_selector=dict(pod.spec.node_selector or {}),
                        affinity=pod.spec.affinity.to_dict() if pod.spec.affinity else None,
                        labels=dict(pod.metadata.labels or {})))
                    phase = pod.status.phase or "?"
                    if not seen.phases or seen.phases[-1] != phase:
                        seen.phases.append(phase)
                    seen.node = pod.spec.node_name or seen.node
                    for condition in pod.status.conditions or []:
                        if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                            seen.unschedulable = condition.message
                    if pod.metadata.deletion_timestamp is None and phase in ("Pending", "Running"):
                        live += 1
            self.max_live = max(self.max_live, live)
            self._stop.wait(self.interval)

    def pods(self) -> list[SeenPod]:
        """Return every pod seen, in the order first seen."""
        return list(self.seen.values())
