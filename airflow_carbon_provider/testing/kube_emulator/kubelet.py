"""The fake kubelet: pod lifecycle on timers, container logs and the XCom sidecar's exec.

There is no container runtime. Each pod is bound to the first node its node selector and
required node affinity accept, then moved Pending -> Running -> Succeeded (or Failed on request)
on :class:`~airflow_carbon_provider.testing.kube_emulator._common.KubeletTiming`'s delays, writing a deterministic log; pod annotations steer it
(:data:`FAIL_KEY`, :data:`EXIT_CODE_KEY`, :data:`RUN_SECONDS_KEY`, :data:`LOG_KEY`,
:data:`XCOM_KEY`). Real kwok nodes cannot serve logs or exec here, so these paths stay on
the emulator (see ``docs/howto/testing.rst``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shlex
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from airflow_carbon_provider.testing.kube_emulator._common import (
    _EMPTY_XCOM,
    _ERROR,
    _STDERR,
    _STDOUT,
    _WS_PROTOCOLS,
    _XCOM_SIDECAR,
    EXIT_CODE_KEY,
    FAIL_KEY,
    LOG_KEY,
    RUN_SECONDS_KEY,
    XCOM_KEY,
    _now,
    _status,
    _truthy,
    _ts,
    _ts_nano,
)
from airflow_carbon_provider.testing.kube_emulator.selectors import node_matches
from airflow_carbon_provider.testing.kube_emulator.store import EmulatorStore

log = logging.getLogger(__name__)


class FakeKubelet(EmulatorStore):
    """Run each pod's life on timers; serve its logs and its XCom sidecar's exec calls."""

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
        with self._lock:
            pod = self._objects["pods"].get((namespace, name))
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            node = next(
                (n for n, labels in self._nodes.items() if self._node_takes_pods(n) and node_matches(labels, pod)),
                None,
            )
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
