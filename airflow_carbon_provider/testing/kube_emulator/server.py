"""The HTTP side: the core/v1 REST API (discovery, list, watch, get, create, update, patch, delete).

Enough for the real ``KubernetesPodOperator`` (sync and deferrable), ``kubernetes`` and
``kubernetes_asyncio``. No authentication (the bearer token is recorded, never checked), no
RBAC, no admission and no validation beyond what the clients need; those are verified against
real kube-apiservers under ``tests/realk8s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from airflow_carbon_provider.testing.kube_emulator._common import (
    _DEFAULT_WATCH_TIMEOUT,
    _KINDS,
    KUBERNETES_VERSION,
    PodRecord,
    RequestRecord,
    _json,
    _now,
    _status,
    _status_body,
    _truthy,
    _ts,
)
from airflow_carbon_provider.testing.kube_emulator.kubelet import FakeKubelet
from airflow_carbon_provider.testing.kube_emulator.patch import json_patch, merge_patch
from airflow_carbon_provider.testing.kube_emulator.selectors import (
    SelectorError,
    _Predicate,
    selector_predicate,
)
from airflow_carbon_provider.testing.kube_emulator.store import _Watcher

log = logging.getLogger(__name__)


class ApiServer(FakeKubelet):
    """Serve one emulated cluster's REST API over aiohttp."""

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
            if method == "GET" and kind == "nodes" and not watch:
                refused = await self._node_list_faults()
                if refused is not None:
                    return refused
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

    async def _node_list_faults(self) -> web.Response | None:
        """Apply the node-list fault switches: a delay (a hanging API), then a refusal (RBAC)."""
        if self.node_list_delay > 0:
            await asyncio.sleep(self.node_list_delay)
        code = self.refuse_node_list
        if code is None:
            return None
        message = (
            'nodes is forbidden: User "airflow" cannot list resource "nodes" in API group "" at the cluster '
            "scope (fault injected by the emulator)"
            if code == 403
            else f"listing nodes refused with {code} (fault injected by the emulator)"
        )
        return _status(int(code), message, kind="nodes")

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
        predicate = selector_predicate(request.query)
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
        predicate = selector_predicate(request.query)
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
                # Unlike Kubernetes, a missing namespace is created on the fly (tests/realk8s
                # checks that our pods go only to namespaces that exist).
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
                    updated = json_patch(current, body)
                elif content_type in (
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/json",
                ):
                    updated = merge_patch(current, body)
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
