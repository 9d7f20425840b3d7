"""The facade class: one :class:`KubeEmulator` is one emulated cluster on its own loopback port.

It adds the lifecycle (a background thread running its own event loop, so synchronous code
such as ``dag.test()`` and asynchronous triggers can both call it) and the Airflow connection
helpers to the store, kubelet and server parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web

from airflow_carbon_provider.testing.kube_emulator._common import FAKE_TOKEN
from airflow_carbon_provider.testing.kube_emulator.server import ApiServer

log = logging.getLogger(__name__)


class KubeEmulator(ApiServer):
    """A loopback Kubernetes API emulator: one instance is one cluster.

    :param name: the cluster's name, used in the kubeconfig, node names and logs; also the
        default connection id of :meth:`connection_env`.
    :param carbon_zone: default ``carbon_zone`` extra of the connections it builds.
    :param timing: the fake kubelet's delays.
    :param nodes: fake nodes as ``{node name: labels}`` or ``{node name: EmulatedNode(labels,
        allocatable, unschedulable, ready)}``; pods bind to the first Ready, uncordoned node
        whose labels satisfy their node selector and required node affinity, or stay
        ``Pending`` as unschedulable (there is no resource accounting: a full node still
        takes pods). Defaults to one node named ``<name>-node-1``. Each node's
        ``status.allocatable`` defaults to pods 110, cpu 8, memory 32Gi.
    :param host: the address to listen on; loopback by default.
    :param port: the port; 0 lets the OS choose a free one.

    Fault switches, settable at any time from any thread:

    - ``refuse_pod_creation``: an HTTP status (such as 403 or 500) with which every pod
      creation is refused, or ``None``.
    - ``fail_all_pods``: every pod's containers exit with code 1.
    - ``refuse_node_list``: an HTTP status (such as 403) with which listing nodes is refused,
      or ``None`` (what a connection without ``list`` on nodes sees).
    - ``node_list_delay``: seconds the API waits before it answers a node list (a hanging API).

    Per pod, the annotations (or labels) :data:`~airflow_carbon_provider.testing.kube_emulator._common.FAIL_KEY`, :data:`~airflow_carbon_provider.testing.kube_emulator._common.EXIT_CODE_KEY`,
    :data:`~airflow_carbon_provider.testing.kube_emulator._common.RUN_SECONDS_KEY`, :data:`~airflow_carbon_provider.testing.kube_emulator._common.LOG_KEY` and :data:`~airflow_carbon_provider.testing.kube_emulator._common.XCOM_KEY` steer the fake kubelet
    and the XCom sidecar.
    """

    # ------------------------------------------------------------------ lifecycle

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
