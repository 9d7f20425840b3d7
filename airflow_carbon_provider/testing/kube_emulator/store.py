"""The emulator's object store: objects by kind, resourceVersions, watch fan-out, pod records.

:class:`EmulatorStore` holds every piece of one emulated cluster's state and what tests read
back from it; :mod:`.kubelet`, :mod:`.server` and the :class:`~.emulator.KubeEmulator` facade
build on it. Everything here runs under one re-entrant lock, on the emulator's own loop
or from the test's thread.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from aiohttp import web

from airflow_carbon_provider.testing.kube_emulator._common import (
    _HISTORY_LIMIT,
    _KINDS,
    KUBERNETES_VERSION,
    EmulatedNode,
    KubeletTiming,
    PodRecord,
    RequestRecord,
    _now,
    _ts,
)


class _Watcher:
    def __init__(self, kind: str, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()


class EmulatorStore:
    """The state of one emulated cluster and the read-back API tests use (see :class:`~airflow_carbon_provider.testing.kube_emulator.emulator.KubeEmulator`)."""

    def __init__(
        self,
        name: str = "emulator",
        *,
        carbon_zone: str | None = None,
        timing: KubeletTiming | None = None,
        nodes: Mapping[str, Mapping[str, str] | EmulatedNode] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.name = name
        self.carbon_zone = carbon_zone
        self.timing = timing or KubeletTiming()
        self.refuse_pod_creation: int | None = None
        self.fail_all_pods = False
        self.refuse_node_list: int | None = None
        self.node_list_delay = 0.0
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._node_specs = {
            node: spec if isinstance(spec, EmulatedNode) else EmulatedNode(labels=dict(spec))
            for node, spec in (nodes or {f"{name}-node-1": {}}).items()
        }
        self._nodes = {
            node: {"kubernetes.io/hostname": node, **spec.labels} for node, spec in self._node_specs.items()
        }
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._reset_state()


    # ------------------------------------------------------------------ state

    def _reset_state(self) -> None:
        with self._lock:
            # resourceVersions keep growing across resets, so old watches never see them repeat.
            self._rv = getattr(self, "_rv", 1000)
            self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {kind: {} for kind in _KINDS}
            self._history: list[tuple[int, str, str, str, dict[str, Any]]] = []
            self._history_floor = self._rv
            self._watchers: list[_Watcher] = []
            self._records: list[PodRecord] = []
            self._record_by_uid: dict[str, PodRecord] = {}
            self._requests: list[RequestRecord] = []
            self._logs: dict[str, dict[str, list[tuple[datetime, str]]]] = {}
            self._kubelets: dict[str, asyncio.Task[None]] = {}
            self._pod_changed: dict[str, asyncio.Event] = {}
            self._finish: dict[str, tuple[asyncio.Event, list[int]]] = {}
            self._sidecar_kill: dict[str, asyncio.Event] = {}
            self._ip_counter = 0
            created = _now()
            for namespace in ("default", "kube-system", "kube-public"):
                self._store_namespace(namespace, created)
            for index, (node, labels) in enumerate(self._nodes.items(), start=1):
                self._store_node(node, labels, index, created)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _new_metadata(self, name: str, namespace: str | None, moment: datetime) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(self._next_rv()),
            "creationTimestamp": _ts(moment),
        }
        if namespace is not None:
            metadata["namespace"] = namespace
        return metadata

    def _store_namespace(self, namespace: str, moment: datetime) -> dict[str, Any]:
        obj = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                **self._new_metadata(namespace, None, moment),
                "labels": {"kubernetes.io/metadata.name": namespace},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        self._objects["namespaces"][("", namespace)] = obj
        return obj

    def _store_node(self, node: str, labels: Mapping[str, str], index: int, moment: datetime) -> None:
        spec = self._node_specs[node]
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"} if spec.ready else {
            "type": "Ready", "status": "False", "reason": "KubeletNotReady"}
        self._objects["nodes"][("", node)] = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {**self._new_metadata(node, None, moment), "labels": dict(labels)},
            "spec": {"unschedulable": True} if spec.unschedulable else {},
            "status": {
                "addresses": [{"type": "InternalIP", "address": f"192.168.0.{index}"}],
                "conditions": [ready],
                "allocatable": dict(spec.allocatable),
                "capacity": dict(spec.allocatable),
                # Every field the official clients require, so typed clients can read the node.
                "nodeInfo": {
                    "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "emulator://0",
                    "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux",
                    "osImage": "Kube emulator (not a real node)", "systemUUID": "",
                    "kubeletVersion": KUBERNETES_VERSION + "-emulator",
                },
            },
        }

    def _node_takes_pods(self, node: str) -> bool:
        """Return whether the fake kubelet may bind a pod to ``node`` (Ready, not cordoned), under the lock."""
        obj = self._objects["nodes"].get(("", node))
        if obj is None or (obj.get("spec") or {}).get("unschedulable"):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions") or [])

    def cordon(self, node: str, unschedulable: bool = True) -> None:
        """Set ``spec.unschedulable`` on a node (``kubectl cordon``; ``False`` uncordons it)."""

        def change() -> None:
            with self._lock:
                obj = copy.deepcopy(self._objects["nodes"][("", node)])
                obj["spec"] = {"unschedulable": True} if unschedulable else {}
                self._commit("nodes", obj, "MODIFIED")

        if self._loop is None:
            change()
        else:
            self._call_soon(change)

    def _commit(self, kind: str, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        """Store (or drop) an object with a new resourceVersion and tell the watchers.

        Run on the emulator's loop, under the lock.
        """
        metadata = obj["metadata"]
        rv = self._next_rv()
        metadata["resourceVersion"] = str(rv)
        key = (metadata.get("namespace", ""), metadata["name"])
        if event_type == "DELETED":
            self._objects[kind].pop(key, None)
        else:
            self._objects[kind][key] = obj
        snapshot = copy.deepcopy(obj)
        self._history.append((rv, kind, key[0], event_type, snapshot))
        if len(self._history) > _HISTORY_LIMIT:
            dropped = self._history[: len(self._history) - _HISTORY_LIMIT]
            self._history_floor = dropped[-1][0]
            del self._history[: len(dropped)]
        for watcher in self._watchers:
            if watcher.kind == kind and watcher.namespace in (None, key[0]):
                watcher.queue.put_nowait((event_type, snapshot))
        if kind == "pods":
            self._signal_pod(metadata["uid"])
        return snapshot

    def _signal_pod(self, uid: str) -> None:
        event = self._pod_changed.pop(uid, None)
        if event is not None:
            event.set()

    def _pod_change(self, uid: str) -> asyncio.Event:
        return self._pod_changed.setdefault(uid, asyncio.Event())


    @property
    def port(self) -> int:
        """Return the port the emulator listens on; it must be started."""
        if self._port is None:
            raise RuntimeError(f"kube emulator {self.name!r} is not running")
        return self._port

    @property
    def url(self) -> str:
        """Return the base URL of the API, such as ``http://127.0.0.1:40123``."""
        return f"http://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        """Return whether the server is up."""
        return self._port is not None


    def _call_soon(self, func: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``func`` on the emulator's loop and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"kube emulator {self.name!r} is not running")

        async def call() -> Any:
            return func()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return func()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)


    # ------------------------------------------------------------------ introspection

    def pods(self, namespace: str | None = None) -> list[PodRecord]:
        """Return every pod ever created on this cluster (deleted ones too), oldest first."""
        with self._lock:
            return [
                replace(record, labels=dict(record.labels), annotations=dict(record.annotations))
                for record in self._records
                if namespace is None or record.namespace == namespace
            ]

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return a copy of a live pod object as the API serves it, or ``None``."""
        with self._lock:
            obj = self._objects["pods"].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """Return the log a live pod's container has written so far, without timestamps."""
        with self._lock:
            obj = self._objects["pods"].get((namespace, name))
            if obj is None:
                raise KeyError(f"no pod {namespace}/{name} on {self.name!r}")
            container = container or obj["spec"]["containers"][0]["name"]
            lines = self._logs.get(obj["metadata"]["uid"], {}).get(container, [])
            return "".join(text + "\n" for _, text in lines)

    @property
    def requests(self) -> list[RequestRecord]:
        """Return the requests served so far, oldest first."""
        with self._lock:
            return [replace(r, query=dict(r.query)) for r in self._requests]

    def request_count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """Count served requests, optionally by method and by a substring of the path."""
        with self._lock:
            return sum(
                1
                for r in self._requests
                if (method is None or r.method == method.upper())
                and (path_contains is None or path_contains in r.path)
            )

    def reset(self) -> None:
        """Forget every pod, event and request, and clear the fault switches."""

        def clear() -> None:
            for task in list(self._kubelets.values()):
                task.cancel()
            for watcher in self._watchers:
                watcher.queue.put_nowait(None)
            self._reset_state()

        self.refuse_pod_creation = None
        self.fail_all_pods = False
        self.refuse_node_list = None
        self.node_list_delay = 0.0
        if self._loop is None:
            self._reset_state()
        else:
            self._call_soon(clear)

    def finish_pod(self, namespace: str, name: str, exit_code: int = 0) -> None:
        """Make a running pod's containers exit now with ``exit_code``."""

        def finish() -> None:
            with self._lock:
                obj = self._objects["pods"].get((namespace, name))
                if obj is None:
                    raise KeyError(f"no pod {namespace}/{name} on {self.name!r}")
                uid = obj["metadata"]["uid"]
            event, codes = self._finish.setdefault(uid, (asyncio.Event(), []))
            codes.append(exit_code)
            event.set()

        self._call_soon(finish)
