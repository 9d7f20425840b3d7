"""Constants, records and small HTTP helpers every part of the emulator shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

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

#: What an emulated node offers when its spec names nothing else.
DEFAULT_ALLOCATABLE: dict[str, str] = {"pods": "110", "cpu": "8", "memory": "32Gi"}


@dataclass(frozen=True)
class EmulatedNode:
    """One fake node: its labels, what it offers, and whether pods may be placed on it.

    :param labels: the node's labels (``kubernetes.io/hostname`` is added).
    :param allocatable: ``status.allocatable`` (and ``capacity``), as Kubernetes quantities.
    :param unschedulable: cordoned (``spec.unschedulable``): the fake kubelet binds nothing there.
    :param ready: the ``Ready`` condition; a node that is not Ready takes no pods either.
    """

    labels: dict[str, str] = field(default_factory=dict)
    allocatable: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALLOCATABLE))
    unschedulable: bool = False
    ready: bool = True


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
        :meth:`~airflow_carbon_provider.testing.kube_emulator.emulator.KubeEmulator.finish_pod` is called.
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
