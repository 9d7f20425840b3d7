"""Emulate a Kubernetes API server on loopback, for tests and the ``airflow-carbon demo``.

This is an **emulator**, not Kubernetes. It speaks enough of the core/v1 REST API for the
real ``KubernetesPodOperator`` (sync and deferrable), the official ``kubernetes`` client and
``kubernetes_asyncio`` to create, read, list (label and field selectors), watch, patch and
delete pods, stream their logs and list their events. There is no scheduler (a pod is bound
to the first fake node whose labels match its node selector and required node affinity),
no RBAC, no admission, no resource accounting and no container runtime: a fake kubelet moves
each pod Pending -> Running -> Succeeded (or Failed on request) on short timers and writes a
deterministic log.

One :class:`KubeEmulator` is one "cluster" with its own port and state; start several to
get several clusters, each reached through its own Airflow Kubernetes connection::

    with KubeEmulator("k8s_se", carbon_zone="SE-SE1") as emulator:
        os.environ.update(emulator.connection_env())  # AIRFLOW_CONN_K8S_SE
        ...  # run KubernetesPodOperator(kubernetes_conn_id="k8s_se", ...)
        assert emulator.pods()[0].phase == "Succeeded"

The server runs in a background thread with its own event loop, so synchronous code
(``dag.test()``, the task runner) and asynchronous code (triggers) can both call it.
Importing this module imports neither pytest nor Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import shlex
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from airflow.models import Connection

__all__ = [
    "EXIT_CODE_KEY",
    "FAIL_KEY",
    "LOG_KEY",
    "RUN_SECONDS_KEY",
    "XCOM_KEY",
    "KubeEmulator",
    "KubeletTiming",
    "PodRecord",
    "RequestRecord",
    "SelectorError",
    "connections_env",
    "start_clusters",
]

log = logging.getLogger(__name__)

UTC = timezone.utc

#: Prefix of the pod annotations (or labels) that steer the fake kubelet.
ANNOTATION_PREFIX = "emulator.airflow-carbon/"
#: ``"true"`` makes the pod's containers exit non-zero, so the pod ends ``Failed``.
FAIL_KEY = ANNOTATION_PREFIX + "fail"
#: Exit code of a failing container (default 1); a non-zero value alone also fails the pod.
EXIT_CODE_KEY = ANNOTATION_PREFIX + "exit-code"
#: Seconds the containers run before they exit, overriding :attr:`KubeletTiming.run_duration`.
RUN_SECONDS_KEY = ANNOTATION_PREFIX + "run-seconds"
#: Extra log lines (newline separated) each container prints while it runs.
LOG_KEY = ANNOTATION_PREFIX + "log"
#: The JSON the XCom sidecar serves as ``/airflow/xcom/return.json`` (``do_xcom_push=True``).
XCOM_KEY = ANNOTATION_PREFIX + "xcom"

_EMPTY_XCOM = "__airflow_xcom_result_empty__"
_WS_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_STDOUT, _STDERR, _ERROR = 1, 2, 3

#: The bearer token written into the kubeconfig; the emulator records but never checks it.
FAKE_TOKEN = "emulator-token-not-a-secret"

KUBERNETES_VERSION = "v1.33.0"

_HISTORY_LIMIT = 10_000
_DEFAULT_WATCH_TIMEOUT = 1800.0
_XCOM_SIDECAR = "airflow-xcom-sidecar"

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

# kind in the URL -> (Kind, namespaced)
_KINDS: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "events": ("Event", True),
    "namespaces": ("Namespace", False),
    "nodes": ("Node", False),
}


@dataclass(frozen=True)
class KubeletTiming:
    """Delays, in seconds, the fake kubelet waits between the states of a pod.

    :param schedule_delay: from creation to being bound to a node.
    :param start_delay: from being bound to the containers running.
    :param run_duration: from running to the containers exiting; ``None`` runs until
        :meth:`KubeEmulator.finish_pod` is called.
    """

    schedule_delay: float = 0.05
    start_delay: float = 0.15
    run_duration: float | None = 0.4


@dataclass
class PodRecord:
    """What happened to one pod, kept after the pod is deleted."""

    cluster: str
    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    node_selector: dict[str, str]
    affinity: dict[str, Any] | None
    tolerations: list[dict[str, Any]]
    containers: list[str]
    images: list[str]
    commands: list[list[str]]
    created_at: datetime
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deleted_at: datetime | None = None
    node_name: str | None = None
    phase: str = "Pending"
    exit_codes: dict[str, int] = field(default_factory=dict)


@dataclass
class RequestRecord:
    """One HTTP request the emulator served; ``status`` is ``None`` while it is in flight."""

    method: str
    path: str
    query: dict[str, str]
    at: datetime
    status: int | None = None
    authorized: bool = False

    @property
    def is_watch(self) -> bool:
        """Return whether the request was a watch."""
        return "/watch/" in self.path or _truthy(self.query.get("watch"))


class SelectorError(ValueError):
    """A label or field selector the emulator cannot parse."""


# --------------------------------------------------------------------------- selectors

_Predicate = Callable[[dict[str, Any]], bool]
_KEY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {selector!r}")
    return key


def _parse_requirements(selector: str, *, labels: bool) -> list[tuple[str, str, frozenset[str]]]:
    """Parse a selector into ``(operator, key, values)`` requirements."""
    requirements: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(selector):
        set_match = _SET_RE.match(term) if labels else None
        if set_match:
            values = frozenset(v.strip() for v in set_match.group(3).split(",") if v.strip())
            requirements.append((set_match.group(2), _check_key(set_match.group(1), selector), values))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            requirements.append(("!=", key.strip(), frozenset([value.strip()])))
        elif "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            requirements.append(("=", key.strip(), frozenset([value.strip()])))
        elif labels and term.startswith("!"):
            requirements.append(("!", _check_key(term[1:].strip(), selector), frozenset()))
        elif labels:
            requirements.append(("exists", _check_key(term, selector), frozenset()))
        else:
            raise SelectorError(f"invalid selector: {selector!r}; can't understand {term!r}")
    if labels:
        for _, key, _ in requirements:
            _check_key(key, selector)
    return requirements


def _satisfies(
    requirements: list[tuple[str, str, frozenset[str]]], lookup: Callable[[str], str | None]
) -> bool:
    for operator, key, values in requirements:
        value = lookup(key)
        if operator in ("=", "in") and value not in values:
            return False
        if operator in ("!=", "notin") and value in values:
            return False
        if operator == "exists" and value is None:
            return False
        if operator == "!" and value is not None:
            return False
    return True


def parse_label_selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Return a predicate over a label mapping for a Kubernetes label selector.

    Equality (``a=b``, ``a==b``, ``a!=b``), existence (``a``, ``!a``) and set
    (``a in (x,y)``, ``a notin (x,y)``) requirements are supported, comma-joined.
    """
    requirements = _parse_requirements(selector, labels=True)
    return lambda labels: _satisfies(requirements, labels.get)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(selector: str) -> _Predicate:
    """Return a predicate over an object for a field selector (``a.b=c``, ``a.b!=c``)."""
    requirements = _parse_requirements(selector, labels=False)
    return lambda obj: _satisfies(requirements, lambda path: _field_value(obj, path))


def _selector_predicate(query: Mapping[str, str]) -> _Predicate:
    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = parse_field_selector(query.get("fieldSelector", ""))
    return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)


# --------------------------------------------------------------------------- small helpers


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"true", "1", "yes", "t"}


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts_nano(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _status_body(code: int, message: str, reason: str | None = None, **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _status(code: int, message: str, reason: str | None = None, **details: Any) -> web.Response:
    return web.json_response(_status_body(code, message, reason, **details), status=code)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status)


def _merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch (strategic merge is treated the same)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _json_patch(target: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch (add, replace, remove, test)."""
    doc = copy.deepcopy(target)
    for op in operations:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        elif kind == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != op.get("value"):
                raise ValueError(f"test failed at {op['path']}")
        else:
            raise ValueError(f"unsupported JSON patch operation {kind!r}")
    return doc


def _node_matches(node_labels: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    return any(_term_matches(node_labels, term) for term in terms)


def _term_matches(node_labels: Mapping[str, str], term: Mapping[str, Any]) -> bool:
    for expression in term.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in node_labels
        if operator == "In" and not (present and node_labels[key] in values):
            return False
        if operator == "NotIn" and present and node_labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# --------------------------------------------------------------------------- the emulator


class _Watcher:
    def __init__(self, kind: str, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()


class KubeEmulator:
    """A loopback Kubernetes API emulator: one instance is one cluster.

    :param name: the cluster's name, used in the kubeconfig, node names and logs; also the
        default connection id of :meth:`connection_env`.
    :param carbon_zone: default ``carbon_zone`` extra of the connections it builds.
    :param timing: the fake kubelet's delays.
    :param nodes: fake nodes as ``{node name: labels}``; pods bind to the first node whose
        labels satisfy their node selector and required node affinity, or stay ``Pending``
        as unschedulable. Defaults to one node named ``<name>-node-1``.
    :param strict_namespaces: refuse pods in namespaces that do not exist (as Kubernetes
        does) instead of creating the namespace on the fly.
    :param host: the address to listen on; loopback by default.
    :param port: the port; 0 lets the OS choose a free one.

    Fault switches, settable at any time from any thread:

    - :attr:`refuse_pod_creation`: an HTTP status (such as 403 or 500) with which every pod
      creation is refused, or ``None``.
    - :attr:`fail_all_pods`: every pod's containers exit with code 1.
    - :attr:`hold_pending`: new pods stay ``Pending`` (not yet scheduled) until cleared.

    Per pod, the annotations (or labels) :data:`FAIL_KEY`, :data:`EXIT_CODE_KEY`,
    :data:`RUN_SECONDS_KEY`, :data:`LOG_KEY` and :data:`XCOM_KEY` steer the fake kubelet
    and the XCom sidecar.
    """

    def __init__(
        self,
        name: str = "emulator",
        *,
        carbon_zone: str | None = None,
        timing: KubeletTiming | None = None,
        nodes: Mapping[str, Mapping[str, str]] | None = None,
        strict_namespaces: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.name = name
        self.carbon_zone = carbon_zone
        self.timing = timing or KubeletTiming()
        self.strict_namespaces = strict_namespaces
        self.refuse_pod_creation: int | None = None
        self.fail_all_pods = False
        self.hold_pending = False
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._nodes = {
            node: dict(labels)
            for node, labels in (
                nodes or {f"{name}-node-1": {"kubernetes.io/hostname": f"{name}-node-1"}}
            ).items()
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
        self._objects["nodes"][("", node)] = {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {**self._new_metadata(node, None, moment), "labels": dict(labels)},
            "spec": {},
            "status": {
                "addresses": [{"type": "InternalIP", "address": f"192.168.0.{index}"}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "nodeInfo": {"kubeletVersion": KUBERNETES_VERSION + "-emulator"},
            },
        }

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

    # ------------------------------------------------------------------ lifecycle

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

    def start(self, timeout: float = 10.0) -> KubeEmulator:
        """Start the server in a background thread and return once it accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"kube emulator {self.name!r} is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"kube-emulator-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"kube emulator {self.name!r} did not start within {timeout}s")
        if failure:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"kube emulator {self.name!r} failed to start") from failure[0]
        log.info("Kube emulator %r listening on %s", self.name, self.url)
        return self

    async def _startup(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server, close open watches and log streams, and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(timeout)
            except Exception:
                log.warning("Kube emulator %r did not shut down cleanly", self.name, exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None
        self._port = None

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        with self._lock:
            for watcher in self._watchers:
                watcher.queue.put_nowait(None)
            for event in self._pod_changed.values():
                event.set()
            tasks = list(self._kubelets.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> KubeEmulator:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

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

    # ------------------------------------------------------------------ connections

    def kube_config(self, namespace: str = "default") -> dict[str, Any]:
        """Return a kubeconfig (as a dict) that points at this emulator, with a fake token."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": {"server": self.url}}],
            "users": [{"name": f"{self.name}-user", "user": {"token": FAKE_TOKEN}}],
            "contexts": [
                {
                    "name": self.name,
                    "context": {"cluster": self.name, "user": f"{self.name}-user", "namespace": namespace},
                }
            ],
            "current-context": self.name,
            "preferences": {},
        }

    def connection_extras(
        self, *, carbon_zone: str | None = None, namespace: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Return the extras of an Airflow ``kubernetes`` connection to this emulator."""
        extras: dict[str, Any] = {
            "kube_config": self.kube_config(namespace or "default"),
            "in_cluster": False,
        }
        zone = carbon_zone if carbon_zone is not None else self.carbon_zone
        if zone is not None:
            extras["carbon_zone"] = zone
        if namespace is not None:
            extras["namespace"] = namespace
        extras.update(extra)
        return extras

    def connection_json(
        self, *, carbon_zone: str | None = None, namespace: str | None = None, **extra: Any
    ) -> str:
        """Return the JSON value of an ``AIRFLOW_CONN_<ID>`` variable for this emulator."""
        return json.dumps(
            {
                "conn_type": "kubernetes",
                "description": f"Kubernetes API emulator {self.name!r} (not a real cluster)",
                "extra": self.connection_extras(carbon_zone=carbon_zone, namespace=namespace, **extra),
            }
        )

    def connection_env(
        self,
        conn_id: str | None = None,
        *,
        carbon_zone: str | None = None,
        namespace: str | None = None,
        **extra: Any,
    ) -> dict[str, str]:
        """Return ``{"AIRFLOW_CONN_<ID>": json}`` for a connection to this emulator.

        :param conn_id: the connection id; defaults to the emulator's name.
        """
        conn_id = conn_id or self.name
        return {
            f"AIRFLOW_CONN_{conn_id.upper()}": self.connection_json(
                carbon_zone=carbon_zone, namespace=namespace, **extra
            )
        }

    def connection(
        self,
        conn_id: str | None = None,
        *,
        carbon_zone: str | None = None,
        namespace: str | None = None,
        **extra: Any,
    ) -> Connection:
        """Return an Airflow ``Connection`` to this emulator (imports Airflow)."""
        from airflow.models import Connection

        return Connection(
            conn_id=conn_id or self.name,
            conn_type="kubernetes",
            description=f"Kubernetes API emulator {self.name!r} (not a real cluster)",
            extra=json.dumps(self.connection_extras(carbon_zone=carbon_zone, namespace=namespace, **extra)),
        )

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
        self.hold_pending = False
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

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Any]) -> Any:
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            at=_now(),
            authorized=request.headers.get("Authorization", "").startswith("Bearer "),
        )
        with self._lock:
            self._requests.append(record)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _status(exc.status, exc.reason)
        except SelectorError as exc:
            response = _status(400, str(exc))
        except Exception as exc:
            log.exception("Kube emulator %r failed on %s %s", self.name, request.method, request.path_qs)
            response = _status(500, f"emulator error: {exc!r}")
        record.status = response.status
        return response

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=f"request body is not JSON: {exc}") from exc

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts == ["version"]:
            return _json(self._version())
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return web.Response(text="ok")
        if parts == ["api"]:
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self._host}:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if parts[:2] != ["api", "v1"]:
            return self._not_found(request)
        rest = parts[2:]
        watch = False
        if rest[:1] == ["watch"]:
            rest, watch = rest[1:], True
        if not rest:
            return _json(self._resource_list())
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace: str | None = rest[1]
            kind, tail = rest[2], rest[3:]
        else:
            namespace, kind, tail = None, rest[0], rest[1:]
        if kind not in _KINDS or len(tail) > 2:
            return self._not_found(request)
        namespaced = _KINDS[kind][1]
        if namespace is not None and not namespaced:
            return self._not_found(request)
        watch = watch or _truthy(request.query.get("watch"))
        if not tail:
            if method == "GET":
                return await (
                    self._watch(request, kind, namespace) if watch else self._list(request, kind, namespace)
                )
            if method == "POST":
                return await self._create(request, kind, namespace)
            return self._not_allowed(request)
        name = tail[0]
        if namespaced and namespace is None:
            return self._not_found(request)
        key = (namespace or "", name)
        sub = tail[1] if len(tail) > 1 else None
        if sub is None:
            if method == "GET":
                return self._get(kind, key)
            if method in ("PATCH", "PUT"):
                return await self._update(request, kind, key, status_only=False)
            if method == "DELETE":
                return self._delete(kind, key)
            return self._not_allowed(request)
        if kind == "pods" and sub == "status":
            if method == "GET":
                return self._get(kind, key)
            if method in ("PATCH", "PUT"):
                return await self._update(request, kind, key, status_only=True)
            return self._not_allowed(request)
        if kind == "pods" and sub == "log" and method == "GET":
            return await self._log(request, key)
        if kind == "pods" and sub == "exec" and method in ("GET", "POST"):
            return await self._exec(request, key)
        return self._not_found(request)

    def _not_found(self, request: web.Request) -> web.Response:
        return _status(
            404,
            f"the server could not find the requested resource ({request.method} {request.path}) in the emulator",
        )

    def _not_allowed(self, request: web.Request) -> web.Response:
        return _status(405, f"{request.method} is not supported on {request.path} by the emulator")

    def _version(self) -> dict[str, str]:
        major, minor, _ = KUBERNETES_VERSION.lstrip("v").split(".")
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"{KUBERNETES_VERSION}-emulator+airflow-carbon",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "none (Python emulator)",
            "compiler": "none",
            "platform": "linux/amd64",
        }

    def _resource_list(self) -> dict[str, Any]:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources = [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": verbs,
            }
            for plural, (kind, namespaced) in _KINDS.items()
        ]
        resources.append(
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}
        )
        resources.append(
            {
                "name": "pods/status",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get", "patch", "update"],
            }
        )
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources}

    # ------------------------------------------------------------------ REST verbs

    def _matching(self, kind: str, namespace: str | None, predicate: _Predicate) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (ns, _), obj in self._objects[kind].items()
            if (namespace is None or ns == namespace) and predicate(obj)
        ]

    async def _list(self, request: web.Request, kind: str, namespace: str | None) -> web.Response:
        predicate = _selector_predicate(request.query)
        with self._lock:
            items = self._matching(kind, namespace, predicate)
            rv = str(self._rv)
        return _json(
            {
                "kind": _KINDS[kind][0] + "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, kind: str, namespace: str | None) -> web.StreamResponse:
        predicate = _selector_predicate(request.query)
        since = request.query.get("resourceVersion", "")
        try:
            since_rv = int(since) if since not in ("", "0") else None
            timeout = float(request.query.get("timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            return _status(400, f"invalid resourceVersion or timeoutSeconds: {dict(request.query)!r}")
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watcher = _Watcher(kind, namespace)
        expired = False
        with self._lock:
            if since_rv is None:
                initial = [("ADDED", obj) for obj in self._matching(kind, namespace, lambda obj: True)]
            elif since_rv < self._history_floor:
                initial, expired = [], True
            else:
                initial = [
                    (event_type, copy.deepcopy(obj))
                    for rv, k, ns, event_type, obj in self._history
                    if rv > since_rv and k == kind and (namespace is None or ns == namespace)
                ]
            if not expired:
                self._watchers.append(watcher)
        try:
            if expired:
                gone = _status_body(
                    410, f"too old resource version: {since_rv} ({self._history_floor})", "Expired"
                )
                await self._write_event(response, "ERROR", gone)
                return response
            for event_type, obj in initial:
                if predicate(obj):
                    await self._write_event(response, event_type, obj)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if item is None:
                    break
                event_type, obj = item
                if predicate(obj):
                    await self._write_event(response, event_type, obj)
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    async def _write_event(response: web.StreamResponse, event_type: str, obj: dict[str, Any]) -> None:
        await response.write(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

    def _get(self, kind: str, key: tuple[str, str]) -> web.Response:
        with self._lock:
            obj = self._objects[kind].get(key)
            if obj is None:
                return _status(404, f'{kind} "{key[1]}" not found', name=key[1], kind=kind)
            return _json(copy.deepcopy(obj))

    async def _create(self, request: web.Request, kind: str, namespace: str | None) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            return _status(400, "the request body must be a JSON object")
        if kind == "pods":
            return self._create_pod(body, namespace or "default")
        if kind == "namespaces":
            name = (body.get("metadata") or {}).get("name")
            if not name:
                return _status(422, "Namespace: metadata.name: Required value", "Invalid")
            with self._lock:
                if ("", name) in self._objects["namespaces"]:
                    return _status(409, f'namespaces "{name}" already exists', name=name, kind="namespaces")
                obj = self._store_namespace(name, _now())
                return _json(copy.deepcopy(obj), status=201)
        if kind == "events":
            metadata = body.setdefault("metadata", {})
            name = metadata.get("name") or f"event.{uuid.uuid4().hex[:16]}"
            with self._lock:
                metadata.update(self._new_metadata(name, namespace or "default", _now()))
                body.setdefault("kind", "Event")
                body.setdefault("apiVersion", "v1")
                return _json(self._commit("events", body, "ADDED"), status=201)
        return _status(405, f"creating {kind} is not supported by the emulator")

    def _create_pod(self, body: dict[str, Any], namespace: str) -> web.Response:
        if self.refuse_pod_creation is not None:
            code = int(self.refuse_pod_creation)
            message = (
                f'pods is forbidden: User "system:serviceaccount:{namespace}:airflow" cannot create resource '
                f'"pods" in API group "" in the namespace "{namespace}" (fault injected by the emulator)'
                if code == 403
                else f"pod creation refused with {code} (fault injected by the emulator)"
            )
            return _status(code, message, kind="pods")
        if body.get("kind", "Pod") != "Pod":
            return _status(400, f"the kind of the object must be Pod, not {body.get('kind')!r}")
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        body_ns = metadata.get("namespace")
        if body_ns and body_ns != namespace:
            return _status(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        containers = spec.get("containers") or []
        if not containers or not all(isinstance(c, dict) and c.get("name") for c in containers):
            return _status(422, "Pod is invalid: spec.containers: Required value", "Invalid", kind="pods")
        name = metadata.get("name")
        if not name and metadata.get("generateName"):
            name = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not name:
            return _status(422, "Pod is invalid: metadata.name: Required value", "Invalid", kind="pods")
        moment = _now()
        with self._lock:
            if ("", namespace) not in self._objects["namespaces"]:
                if self.strict_namespaces:
                    return _status(
                        404, f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
                    )
                self._store_namespace(namespace, moment)
            if (namespace, name) in self._objects["pods"]:
                return _status(409, f'pods "{name}" already exists', name=name, kind="pods")
            pod = copy.deepcopy(body)
            pod["kind"], pod["apiVersion"] = "Pod", "v1"
            pod_meta = pod.setdefault("metadata", {})
            pod_meta.update(self._new_metadata(name, namespace, moment))
            pod_meta.setdefault("labels", {})
            pod_meta.setdefault("annotations", {})
            pod_spec = pod.setdefault("spec", {})
            pod_spec.setdefault("restartPolicy", "Always")
            pod_spec.setdefault("dnsPolicy", "ClusterFirst")
            pod_spec.setdefault("schedulerName", "default-scheduler")
            pod_spec.setdefault("serviceAccountName", "default")
            pod_spec.setdefault("terminationGracePeriodSeconds", 30)
            for container in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
                image = str(container.get("image", ""))
                container.setdefault(
                    "imagePullPolicy",
                    "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent",
                )
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                container.setdefault("terminationMessagePolicy", "File")
            pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            snapshot = self._commit("pods", pod, "ADDED")
            uid = pod_meta["uid"]
            record = PodRecord(
                cluster=self.name,
                namespace=namespace,
                name=name,
                uid=uid,
                labels=dict(pod_meta["labels"]),
                annotations=dict(pod_meta["annotations"]),
                node_selector=dict(pod_spec.get("nodeSelector") or {}),
                affinity=copy.deepcopy(pod_spec.get("affinity")),
                tolerations=copy.deepcopy(pod_spec.get("tolerations") or []),
                containers=[c["name"] for c in pod_spec["containers"]],
                images=[str(c.get("image", "")) for c in pod_spec["containers"]],
                commands=[
                    [*(c.get("command") or []), *(c.get("args") or [])] for c in pod_spec["containers"]
                ],
                created_at=moment,
            )
            self._records.append(record)
            self._record_by_uid[uid] = record
            self._logs[uid] = {}
            self._kubelets[uid] = asyncio.get_running_loop().create_task(self._kubelet(namespace, name, uid))
        return _json(snapshot, status=201)

    async def _update(
        self, request: web.Request, kind: str, key: tuple[str, str], *, status_only: bool
    ) -> web.Response:
        body = await self._body(request)
        content_type = request.content_type
        with self._lock:
            current = self._objects[kind].get(key)
            if current is None:
                return _status(404, f'{kind} "{key[1]}" not found', name=key[1], kind=kind)
            try:
                if request.method == "PUT":
                    if not isinstance(body, dict):
                        return _status(400, "the request body must be a JSON object")
                    sent_rv = (body.get("metadata") or {}).get("resourceVersion")
                    if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                        return _status(
                            409,
                            f'Operation cannot be fulfilled on {kind} "{key[1]}": the object has been modified',
                            "Conflict",
                        )
                    updated = copy.deepcopy(body)
                elif content_type == "application/json-patch+json":
                    if not isinstance(body, list):
                        return _status(400, "a JSON patch must be a list of operations")
                    updated = _json_patch(current, body)
                elif content_type in (
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/json",
                ):
                    updated = _merge_patch(current, body)
                else:
                    return _status(415, f"unsupported patch content type {content_type!r}")
            except (KeyError, IndexError, ValueError, TypeError) as exc:
                return _status(422, f"the patch could not be applied: {exc}", "Invalid")
            # The server owns identity; the main resource ignores status and the status
            # subresource ignores everything else, as in Kubernetes.
            if status_only:
                result = copy.deepcopy(current)
                result["status"] = updated.get("status", current.get("status"))
            else:
                result = updated
                if "status" in current:
                    result["status"] = copy.deepcopy(current["status"])
            meta = result.setdefault("metadata", {})
            for fixed in ("name", "namespace", "uid", "creationTimestamp"):
                if fixed in current["metadata"]:
                    meta[fixed] = current["metadata"][fixed]
            result["kind"], result["apiVersion"] = current["kind"], current["apiVersion"]
            snapshot = self._commit(kind, result, "MODIFIED")
            if kind == "pods":
                record = self._record_by_uid.get(meta["uid"])
                if record is not None:
                    record.labels = dict(meta.get("labels") or {})
                    record.annotations = dict(meta.get("annotations") or {})
        return _json(snapshot)

    def _delete(self, kind: str, key: tuple[str, str]) -> web.Response:
        if kind not in ("pods", "events"):
            return _status(405, f"deleting {kind} is not supported by the emulator")
        with self._lock:
            current = self._objects[kind].get(key)
            if current is None:
                return _status(404, f'{kind} "{key[1]}" not found', name=key[1], kind=kind)
            moment = _now()
            current["metadata"]["deletionTimestamp"] = _ts(moment)
            current["metadata"]["deletionGracePeriodSeconds"] = 0
            snapshot = self._commit(kind, current, "DELETED")
            if kind == "pods":
                uid = current["metadata"]["uid"]
                task = self._kubelets.pop(uid, None)
                if task is not None:
                    task.cancel()
                record = self._record_by_uid.get(uid)
                if record is not None:
                    record.deleted_at = moment
        return _json(snapshot)

    # ------------------------------------------------------------------ exec

    async def _exec(self, request: web.Request, key: tuple[str, str]) -> web.StreamResponse:
        """Serve the two exec calls KPO makes on its XCom sidecar, over the channel protocol.

        ``cat``-ing ``/airflow/xcom/return.json`` answers the pod's :data:`XCOM_KEY` value, and
        a ``kill`` on stdin stops the sidecar. Any other command fails with exit code 126.
        """
        query = request.query
        command = " ".join(query.getall("command", []))
        with self._lock:
            pod = self._objects["pods"].get(key)
            if pod is None:
                return _status(404, f'pods "{key[1]}" not found', name=key[1], kind="pods")
            names = [c["name"] for c in pod["spec"]["containers"]]
            container = query.get("container") or (names[0] if len(names) == 1 else "")
            state = self._container_state(pod, container) if container in names else None
            if state is None or "running" not in state:
                return _status(400, f"unable to upgrade connection: container {container!r} is not running")
            uid = pod["metadata"]["uid"]
            xcom = self._steer(pod, XCOM_KEY)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _status(400, "exec needs a websocket upgrade (channel.k8s.io protocol)")
        ws = web.WebSocketResponse(protocols=_WS_PROTOCOLS)
        await ws.prepare(request)

        async def send(channel: int, payload: str) -> None:
            await ws.send_bytes(bytes([channel]) + payload.encode())

        exit_code = 0
        try:
            if "/airflow/xcom/return.json" in command:
                await send(_STDOUT, xcom if xcom else _EMPTY_XCOM + "\n")
            elif _truthy(query.get("stdin")):
                message = await ws.receive(timeout=30)
                data = message.data if isinstance(message.data, (bytes, str)) else b""
                text = data[1:].decode(errors="replace") if isinstance(data, bytes) else data[1:]
                if container == _XCOM_SIDECAR and "kill" in text:
                    with self._lock:
                        self._sidecar_kill.setdefault(uid, asyncio.Event()).set()
                else:
                    exit_code = 126
            else:
                exit_code = 126
            if exit_code:
                await send(_STDERR, f"emulator: command not emulated: {command}\n")
                status: dict[str, Any] = {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: {exit_code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
                }
            else:
                status = {"metadata": {}, "status": "Success"}
            await send(_ERROR, json.dumps(status))
        except (asyncio.TimeoutError, ConnectionResetError):
            pass
        finally:
            await ws.close()
        return ws

    # ------------------------------------------------------------------ logs

    async def _log(self, request: web.Request, key: tuple[str, str]) -> web.StreamResponse:
        query = request.query
        with self._lock:
            pod = self._objects["pods"].get(key)
            if pod is None:
                return _status(404, f'pods "{key[1]}" not found', name=key[1], kind="pods")
            uid = pod["metadata"]["uid"]
            spec = pod["spec"]
            names = [c["name"] for c in spec["containers"]]
            init_names = [c["name"] for c in spec.get("initContainers") or []]
            container = query.get("container")
            if not container:
                if len(names) != 1:
                    return _status(
                        400, f"a container name must be specified for pod {key[1]}, choose one of: {names}"
                    )
                container = names[0]
            if container not in names + init_names:
                return _status(400, f"container {container} is not valid for pod {key[1]}")
            state = self._container_state(pod, container)
            if state is None or "waiting" in state:
                reason = ((state or {}).get("waiting") or {}).get("reason", "ContainerCreating")
                return _status(
                    400, f'container "{container}" in pod "{key[1]}" is waiting to start: {reason}'
                )
        try:
            since_seconds = query.get("sinceSeconds")
            cutoff = _now() - timedelta(seconds=int(since_seconds)) if since_seconds else None
            if query.get("sinceTime"):
                cutoff = datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
            tail = int(query["tailLines"]) if query.get("tailLines") else None
        except ValueError as exc:
            return _status(400, f"invalid log options: {exc}")
        stamps = _truthy(query.get("timestamps"))

        def render(lines: list[tuple[datetime, str]]) -> bytes:
            return "".join(
                (f"{_ts_nano(moment)} {text}\n" if stamps else f"{text}\n")
                for moment, text in lines
                if cutoff is None or moment >= cutoff
            ).encode()

        with self._lock:
            lines = list(self._logs.get(uid, {}).get(container, []))
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        if not _truthy(query.get("follow")):
            return web.Response(body=render(lines), content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = len(self._logs.get(uid, {}).get(container, []))
        try:
            if lines:
                await response.write(render(lines))
            while self._stopping is not None and not self._stopping.is_set():
                with self._lock:
                    changed = self._pod_change(uid)
                    current = self._objects["pods"].get(key)
                    alive = current is not None and current["metadata"]["uid"] == uid
                    all_lines = self._logs.get(uid, {}).get(container, [])
                    fresh, sent = all_lines[sent:], len(all_lines)
                    state = self._container_state(current, container) if alive and current else None
                if fresh:
                    await response.write(render(fresh))
                if not alive or state is None or "terminated" in state:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), 5.0)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    @staticmethod
    def _container_state(pod: Mapping[str, Any], container: str) -> dict[str, Any] | None:
        status = pod.get("status") or {}
        for entry in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            if entry.get("name") == container:
                return entry.get("state")
        return None

    def _append_log(self, uid: str, container: str, text: str, moment: datetime) -> None:
        self._logs.setdefault(uid, {}).setdefault(container, []).extend(
            (moment, line) for line in text.splitlines()
        )

    # ------------------------------------------------------------------ fake kubelet

    def _steer(self, pod: Mapping[str, Any], key: str) -> str | None:
        metadata = pod.get("metadata") or {}
        for source in (metadata.get("annotations") or {}, metadata.get("labels") or {}):
            if key in source:
                return str(source[key])
        return None

    def _event(
        self, pod: Mapping[str, Any], event_type: str, reason: str, message: str, component: str
    ) -> None:
        meta = pod["metadata"]
        moment = _now()
        obj = {
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": self._new_metadata(
                f"{meta['name']}.{uuid.uuid4().hex[:16]}", meta["namespace"], moment
            ),
            "involvedObject": {
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": "v1",
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": _ts(moment),
            "lastTimestamp": _ts(moment),
            "count": 1,
            "type": event_type,
            "reportingComponent": component,
        }
        self._commit("events", obj, "ADDED")

    def _mutate(self, namespace: str, name: str, uid: str, change: Callable[[dict[str, Any]], None]) -> bool:
        """Apply ``change`` to the live pod and commit it; return False if the pod is gone."""
        with self._lock:
            pod = self._objects["pods"].get((namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return False
            change(pod)
            self._commit("pods", pod, "MODIFIED")
            return True

    @staticmethod
    def _condition(kind: str, status: str, moment: datetime, reason: str | None = None) -> dict[str, Any]:
        condition = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": _ts(moment)}
        if reason:
            condition["reason"] = reason
        return condition

    async def _kubelet(self, namespace: str, name: str, uid: str) -> None:
        try:
            await self._run_pod(namespace, name, uid)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("Fake kubelet of %r failed on pod %s/%s", self.name, namespace, name)
        finally:
            with self._lock:
                self._kubelets.pop(uid, None)

    async def _run_pod(self, namespace: str, name: str, uid: str) -> None:
        timing = self.timing
        await asyncio.sleep(timing.schedule_delay)
        while self.hold_pending:  # noqa: ASYNC110 - a plain attribute, settable from any thread
            await asyncio.sleep(0.05)
        with self._lock:
            pod = self._objects["pods"].get((namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            node = next((n for n, labels in self._nodes.items() if _node_matches(labels, pod)), None)
            node_index = list(self._nodes).index(node) + 1 if node else 0
            self._ip_counter += 1
            pod_ip = f"10.{(sum(self.name.encode()) % 200) + 20}.{self._ip_counter // 250}.{self._ip_counter % 250 + 2}"
        moment = _now()
        if node is None:
            message = (
                f"0/{len(self._nodes)} nodes are available: {len(self._nodes)} node(s) didn't match "
                "Pod's node affinity/selector (emulator)."
            )

            def unschedulable(pod: dict[str, Any]) -> None:
                pod["status"]["conditions"] = [
                    {**self._condition("PodScheduled", "False", moment, "Unschedulable"), "message": message}
                ]

            with self._lock:
                if self._mutate(namespace, name, uid, unschedulable):
                    self._event(pod, "Warning", "FailedScheduling", message, "default-scheduler")
            return

        spec = pod["spec"]
        containers = [c["name"] for c in spec["containers"]]
        init_containers = [c["name"] for c in spec.get("initContainers") or []]
        images = {
            c["name"]: str(c.get("image", ""))
            for c in [*(spec.get("initContainers") or []), *spec["containers"]]
        }
        host_ip = f"192.168.0.{node_index}"

        def waiting(container: str) -> dict[str, Any]:
            return {
                "name": container,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
                "ready": False,
                "restartCount": 0,
                "image": images[container],
                "imageID": "",
                "started": False,
            }

        def bind(pod: dict[str, Any]) -> None:
            pod["spec"]["nodeName"] = node
            status = pod["status"]
            status["hostIP"] = host_ip
            status["hostIPs"] = [{"ip": host_ip}]
            status["startTime"] = _ts(moment)
            status["conditions"] = [
                self._condition("PodReadyToStartContainers", "False", moment),
                self._condition("Initialized", "False" if init_containers else "True", moment),
                self._condition("Ready", "False", moment, "ContainersNotReady"),
                self._condition("ContainersReady", "False", moment, "ContainersNotReady"),
                self._condition("PodScheduled", "True", moment),
            ]
            status["containerStatuses"] = [waiting(c) for c in containers]
            if init_containers:
                status["initContainerStatuses"] = [waiting(c) for c in init_containers]

        with self._lock:
            if not self._mutate(namespace, name, uid, bind):
                return
            record = self._record_by_uid[uid]
            record.scheduled_at, record.node_name = moment, node
            self._event(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {namespace}/{name} to {node}",
                "default-scheduler",
            )

        await asyncio.sleep(timing.start_delay)
        started = _now()
        container_ids = {c: f"emulator://{uuid.uuid4().hex}" for c in images}

        def run(pod: dict[str, Any]) -> None:
            status = pod["status"]
            status["phase"] = "Running"
            status["podIP"] = pod_ip
            status["podIPs"] = [{"ip": pod_ip}]
            status["conditions"] = [
                self._condition("PodReadyToStartContainers", "True", started),
                self._condition("Initialized", "True", started),
                self._condition("Ready", "True", started),
                self._condition("ContainersReady", "True", started),
                self._condition("PodScheduled", "True", moment),
            ]
            for entry in status.get("initContainerStatuses") or []:
                entry.update(
                    state={
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": _ts(started),
                            "finishedAt": _ts(started),
                            "containerID": container_ids[entry["name"]],
                        }
                    },
                    imageID=f"emulator-image://{entry['image']}",
                    containerID=container_ids[entry["name"]],
                )
            for entry in status["containerStatuses"]:
                entry.update(
                    state={"running": {"startedAt": _ts(started)}},
                    ready=True,
                    started=True,
                    imageID=f"emulator-image://{entry['image']}",
                    containerID=container_ids[entry["name"]],
                )

        extra_lines = self._steer(pod, LOG_KEY)
        with self._lock:
            if not self._mutate(namespace, name, uid, run):
                return
            record = self._record_by_uid[uid]
            record.started_at, record.phase = started, "Running"
            for container in spec.get("initContainers") or []:
                self._write_start_log(uid, container, node, started)
                self._append_log(
                    uid,
                    container["name"],
                    f"[emulator] container {container['name']} exited with code 0",
                    started,
                )
            for container in spec["containers"]:
                self._write_start_log(uid, container, node, started)
                if extra_lines:
                    self._append_log(uid, container["name"], extra_lines, started)
            self._signal_pod(uid)
            for container in containers:
                self._event(
                    pod,
                    "Normal",
                    "Pulled",
                    f'Container image "{images[container]}" already present on machine',
                    "kubelet",
                )
                self._event(pod, "Normal", "Created", f"Created container: {container}", "kubelet")
                self._event(pod, "Normal", "Started", f"Started container {container}", "kubelet")

        exit_code = await self._await_exit(pod, uid)
        failed = exit_code != 0
        workers = [c for c in containers if c != _XCOM_SIDECAR]

        def terminate(
            names: list[str], finished: datetime, phase: str | None
        ) -> Callable[[dict[str, Any]], None]:
            def change(pod: dict[str, Any]) -> None:
                status = pod["status"]
                reason = "PodCompleted" if phase else "ContainersNotReady"
                status["conditions"] = [
                    self._condition("PodReadyToStartContainers", "False" if phase else "True", finished),
                    self._condition("Initialized", "True", started),
                    self._condition("Ready", "False", finished, reason),
                    self._condition("ContainersReady", "False", finished, reason),
                    self._condition("PodScheduled", "True", moment),
                ]
                if phase:
                    status["phase"] = phase
                for entry in status["containerStatuses"]:
                    if entry["name"] not in names:
                        continue
                    code = 0 if entry["name"] == _XCOM_SIDECAR else exit_code
                    terminated: dict[str, Any] = {
                        "exitCode": code,
                        "reason": "Error" if code else "Completed",
                        "startedAt": _ts(started),
                        "finishedAt": _ts(finished),
                        "containerID": container_ids[entry["name"]],
                    }
                    if code:
                        terminated["message"] = f"emulator: container exited with code {code} on request"
                    entry.update(state={"terminated": terminated}, ready=False, started=False)

            return change

        phase = "Failed" if failed else "Succeeded"
        finished = _now()
        with self._lock:
            for container in workers:
                self._append_log(
                    uid, container, f"[emulator] container {container} exited with code {exit_code}", finished
                )
            # KPO's XCom sidecar keeps the pod Running until KPO kills it through exec.
            sidecar = len(workers) < len(containers)
            if not self._mutate(
                namespace, name, uid, terminate(workers, finished, None if sidecar else phase)
            ):
                return
            record = self._record_by_uid[uid]
            record.exit_codes = dict.fromkeys(workers, exit_code)
            if not sidecar:
                record.finished_at, record.phase = finished, phase
                return
            killed = self._sidecar_kill.setdefault(uid, asyncio.Event())
        await killed.wait()
        finished = _now()
        with self._lock:
            self._append_log(
                uid, _XCOM_SIDECAR, f"[emulator] container {_XCOM_SIDECAR} exited with code 0", finished
            )
            if self._mutate(namespace, name, uid, terminate([_XCOM_SIDECAR], finished, phase)):
                record.finished_at, record.phase = finished, phase
                record.exit_codes[_XCOM_SIDECAR] = 0

    def _write_start_log(self, uid: str, container: Mapping[str, Any], node: str, moment: datetime) -> None:
        name = container["name"]
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        self._append_log(
            uid, name, f"[emulator] container {name} started on node {node} of cluster {self.name}", moment
        )
        self._append_log(
            uid,
            name,
            "+ " + (shlex.join(str(a) for a in argv) if argv else f"<{container.get('image')} entrypoint>"),
            moment,
        )

    async def _await_exit(self, pod: Mapping[str, Any], uid: str) -> int:
        """Wait until the containers exit and return their exit code."""
        fail = _truthy(self._steer(pod, FAIL_KEY)) or self.fail_all_pods
        code_text = self._steer(pod, EXIT_CODE_KEY)
        try:
            exit_code = int(code_text) if code_text is not None else (1 if fail else 0)
            seconds_text = self._steer(pod, RUN_SECONDS_KEY)
            duration = float(seconds_text) if seconds_text is not None else self.timing.run_duration
        except ValueError:
            log.warning("Ignoring malformed emulator annotations on pod %s", pod["metadata"]["name"])
            exit_code, duration = (1 if fail else 0), self.timing.run_duration
        if fail and exit_code == 0:
            exit_code = 1
        with self._lock:
            event, codes = self._finish.setdefault(uid, (asyncio.Event(), []))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), duration)
        if self.fail_all_pods and exit_code == 0:
            exit_code = 1
        return codes[-1] if codes else exit_code


# --------------------------------------------------------------------------- several clusters


@contextlib.contextmanager
def start_clusters(
    zones: Mapping[str, str | None] | Iterable[str], **kwargs: Any
) -> Iterator[dict[str, KubeEmulator]]:
    """Start one emulator per connection id and stop them all on exit.

    :param zones: ``{conn_id: carbon_zone}``, or just connection ids.
    :param kwargs: passed to every :class:`KubeEmulator`.
    :return: the running emulators by connection id (each named after its id).
    """
    mapping: dict[str, str | None] = dict(zones) if isinstance(zones, Mapping) else dict.fromkeys(zones)
    with contextlib.ExitStack() as stack:
        emulators = {
            conn_id: stack.enter_context(KubeEmulator(conn_id, carbon_zone=zone, **kwargs))
            for conn_id, zone in mapping.items()
        }
        yield emulators


def connections_env(emulators: Mapping[str, KubeEmulator], **extra: Any) -> dict[str, str]:
    """Return the ``AIRFLOW_CONN_*`` variables for ``{conn_id: emulator}``."""
    env: dict[str, str] = {}
    for conn_id, emulator in emulators.items():
        env.update(emulator.connection_env(conn_id, **extra))
    return env
