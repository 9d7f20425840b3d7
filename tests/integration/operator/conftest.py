"""Run the real operator in this process against emulated clusters, one call at a time.

The task runner is not involved: a small stand-in for the task instance records XCom and
keeps a task state store, so each test can drive ``execute``, ``execute_complete`` or a retry
directly and then ask the emulators what happened. The end-to-end tests under
``tests/integration/e2e`` run the same operator through ``dag.test()``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_carbon_provider.testing.kube_emulator import KubeEmulator, KubeletTiming, connections_env
from airflow_carbon_provider.testing.replay import DEMO_CLUSTERS, DEMO_MOMENT, replay_connection_env

UTC = timezone.utc
FAST = KubeletTiming(schedule_delay=0.05, start_delay=0.1, run_duration=0.3)
#: Half an hour after the demo's moment: GB ~101, US ~205, DE ~489 gCO2eq/kWh, flat for a while.
NOW_IN_TRACE = DEMO_MOMENT + timedelta(minutes=30)


@dataclass
class FakeStore:
    """Airflow 3.3's task state store: kept across tries of one task instance."""

    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


@dataclass
class FakeTI:
    """What the operator reads of a task instance."""

    try_number: int = 1
    start_date: datetime = field(default_factory=lambda: datetime.now(UTC))
    dag_id: str = "carbon_dag"
    task_id: str = "train"
    run_id: str = "manual__1"
    map_index: int = -1
    xcom: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value, default=str))

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcom.get(key)


def context_for(ti: FakeTI, store: FakeStore | None = None) -> dict[str, Any]:
    """Return the parts of a task context the operator and KPO read."""
    from types import SimpleNamespace

    ctx: dict[str, Any] = {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "dag": SimpleNamespace(dag_id=ti.dag_id)}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


@pytest.fixture
def clusters(monkeypatch, tmp_path) -> Iterator[dict[str, KubeEmulator]]:
    """Three emulated clusters (k8s_de home, k8s_gb, k8s_us) and the demo trace replayed at 23:30.

    Each cluster has one node labelled ``team=ml`` and ``<de|gb|us>-pool=yes``: a pod whose node
    selector names another cluster's pool stays Pending, as on a real cluster.
    """
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(tmp_path / "spool.jsonl"))
    for name, value in replay_connection_env(moment=NOW_IN_TRACE, lead=timedelta(0)).items():
        monkeypatch.setenv(name, value)
    with contextlib.ExitStack() as stack:
        running = {
            conn_id: stack.enter_context(KubeEmulator(conn_id, carbon_zone=zone, timing=FAST, nodes={
                f"{conn_id}-node-1": {"kubernetes.io/hostname": f"{conn_id}-node-1", "team": "ml",
                                      f"{conn_id.removeprefix('k8s_')}-pool": "yes"}}))
            for conn_id, zone in DEMO_CLUSTERS.items()
        }
        for name, value in connections_env(running).items():
            monkeypatch.setenv(name, value)
        yield running


def _kpo_takes(argument: str) -> bool:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return argument in inspect.signature(KubernetesPodOperator.__init__).parameters


_KPO_TAKES_LOG_EVENTS_ON_STARTUP = _kpo_takes("log_events_on_startup")


def pod_args(**kw: Any) -> dict[str, Any]:
    """Return the operator arguments every test here shares (fast polling, no log streaming)."""
    args: dict[str, Any] = {
        "task_id": "train", "image": "busybox", "name": "train", "cluster_conn_ids": list(DEMO_CLUSTERS),
        "expected_duration": "10m", "max_delay": "0s", "get_logs": False, "poll_interval": 0.2,
        "startup_check_interval_seconds": 0.2, "startup_timeout_seconds": 10,
    }
    if _KPO_TAKES_LOG_EVENTS_ON_STARTUP:  # not cncf-kubernetes 10.13.0's (Airflow 3.1's constraints)
        args["log_events_on_startup"] = False
    args.update(kw)
    return args


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Return the URL of a server that accepts connections and never answers (an API that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    sock.close()
