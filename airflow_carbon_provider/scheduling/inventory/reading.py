"""Reading a cluster: the candidate's hook, the bounded list calls, the shared cache, the public entry points.

See :mod:`airflow_carbon_provider.scheduling.inventory` for what is read and why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_carbon_provider.core.resources import ResourceError, Resources, format_resources
from airflow_carbon_provider.hooks.cache import CacheKey, IntensityCache
from airflow_carbon_provider.scheduling.candidates import ClusterCandidate
from airflow_carbon_provider.scheduling.fetching import run_bounded
from airflow_carbon_provider.scheduling.inventory.arithmetic import effective_capacity, free_resources

__all__ = [
    "DEFAULT_INVENTORY_TIMEOUT",
    "DEFAULT_INVENTORY_TTL",
    "ClusterReading",
    "Inventory",
    "aread_inventories",
    "aread_inventory",
    "inventory_cache",
    "inventory_timeout",
    "inventory_ttl",
    "read_inventories",
    "read_inventory",
]

log = logging.getLogger("airflow_carbon_provider.scheduling.inventory")

#: Seconds a cluster reading is reused; ``[carbon] inventory_ttl`` overrides it.
DEFAULT_INVENTORY_TTL = 30.0
#: Seconds one cluster reading may take; ``[carbon] inventory_timeout`` overrides it.
DEFAULT_INVENTORY_TIMEOUT = 3.0
#: Ask the API for the pods that have not terminated only.
_LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"

inventory_cache = IntensityCache(max_entries=1024)
"""The process-wide cache of cluster readings (separate from the carbon data's)."""


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class ClusterReading:
    """One reading of one cluster, shared (cached) by every candidate on it.

    :param nodes: node objects (only the fields the arithmetic reads).
    :param pods: pod objects that had not terminated, bound to a node.
    :param read_at: when the reading was taken (UTC).
    :param error: one line saying why the cluster could not be read, or ``None``.
    """

    nodes: tuple[Mapping[str, Any], ...] = ()
    pods: tuple[Mapping[str, Any], ...] = ()
    read_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None


@dataclass(frozen=True)
class Inventory:
    """What one candidate can take now, and where each figure came from.

    :param key: the candidate's :attr:`~airflow_carbon_provider.scheduling.candidates.ClusterCandidate.key`.
    :param free: resource name to amount it can take now; ``None`` means unlimited (nothing
        known). A resource absent from it is unlimited.
    :param source: ``cluster`` (read from the API), ``declared`` (the candidate's
        ``capacity``), ``cluster+declared`` (per resource the smaller) or ``unknown``.
    :param read_at: when the cluster was read (or tried), UTC; ``None`` when it was not asked.
    :param cluster: what the cluster said it has free, ``None`` when it could not be read.
    :param declared: the candidate's declared capacity, ``None`` when it declares none.
    :param error: why the cluster could not be read, in one line without secrets.
    :param nodes: how many nodes were counted (Ready, schedulable, matching the node selector).
    """

    key: str
    free: dict[str, float] | None
    source: str
    read_at: datetime | None = None
    cluster: dict[str, float] | None = None
    declared: dict[str, float] | None = None
    error: str | None = None
    nodes: int = 0

    def fits(self, demand: Resources) -> bool:
        """Return whether ``demand`` fits in what is free now (unlimited resources always fit)."""
        if self.free is None:
            return True
        return all(amount <= self.free[key] for key, amount in demand.items() if key in self.free)

    def describe(self) -> str:
        """Return one line for logs: ``k8s_se: pods 3, cpu 1.5 (cluster+declared)``."""
        text = f"{self.key}: {format_resources(self.free)} ({self.source})"
        return f"{text}; cluster not read: {self.error}" if self.error else text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (for XCom, events and logs)."""
        return {
            "key": self.key, "free": self.free, "source": self.source,
            "read_at": self.read_at.isoformat().replace("+00:00", "Z") if self.read_at else None,
            "cluster": self.cluster, "declared": self.declared, "error": self.error, "nodes": self.nodes,
        }


def _inventory(
    cand: ClusterCandidate, reading: ClusterReading | None, tolerations: Sequence[Any] | None = None,
    exclude_label: str | None = None,
) -> Inventory:
    declared = cand.resources
    cluster, counted = (None, 0)
    if reading is not None and reading.error is None:
        pods = reading.pods if exclude_label is None else tuple(
            p for p in reading.pods if exclude_label not in ((p.get("metadata") or {}).get("labels") or {}))
        try:
            cluster, counted = free_resources(reading.nodes, pods, cand.node_selector, tolerations)
        except ResourceError as exc:  # a quantity we cannot read: trust the declaration instead
            reading = ClusterReading(read_at=reading.read_at, error=f"unreadable quantity: {exc}")
    free, source = effective_capacity(cluster, declared)
    return Inventory(
        cand.key, free, source, reading.read_at if reading else None, cluster, declared,
        reading.error if reading else None, counted,
    )


# --------------------------------------------------------------------------- configuration


def _conf_seconds(key: str, default: float, low: float, high: float) -> float:
    try:
        from airflow_carbon_provider.ledger.config import conf_get

        raw = conf_get(key)
    except Exception:  # config unreadable: the built-in default
        raw = None
    if raw in (None, ""):
        return default
    try:
        value = float(str(raw))
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        log.warning("[carbon] %s %r is not a number of seconds in %g..%g; using %g", key, raw, low, high, default)
        return default
    return value


def inventory_ttl() -> float:
    """Return ``[carbon] inventory_ttl`` (seconds, 0 turns caching off), else :data:`DEFAULT_INVENTORY_TTL`."""
    return _conf_seconds("inventory_ttl", DEFAULT_INVENTORY_TTL, 0.0, 3600.0)


def inventory_timeout() -> float:
    """Return ``[carbon] inventory_timeout`` (seconds), else :data:`DEFAULT_INVENTORY_TIMEOUT`."""
    return _conf_seconds("inventory_timeout", DEFAULT_INVENTORY_TIMEOUT, 0.1, 300.0)


# --------------------------------------------------------------------------- reading a cluster


def _cluster_key(cand: ClusterCandidate) -> CacheKey:
    """Return the cache key of the cluster ``cand`` is on: candidates on one cluster share it."""
    where = f"{cand.conn_id}|{cand.config_file or ''}|{cand.cluster_context or ''}|{cand.in_cluster}"
    return CacheKey(where, "*", "allocatable", "inventory")


#: What could follow a credential in an error text (kubeconfig loaders quote their input rarely, but may).
_REDACT = re.compile(r"(?i)(bearer\s+|token[\"']?\s*[=:]\s*[\"']?|password[\"']?\s*[=:]\s*[\"']?)[^\s,;\"']+")


def _describe_failure(exc: BaseException, cand: ClusterCandidate, budget: float) -> str:
    """Return one line saying why the cluster could not be read; never a token or a kubeconfig."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        what = {401: "Unauthorized (401)", 403: "Forbidden (403)"}.get(status, f"HTTP {status}")
        hint = ("; grant the connection's user list on nodes and pods cluster-wide"
                if status in (401, 403) else "")
        return f"{what} listing nodes and pods on {cand.conn_id}{hint}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer from {cand.conn_id} within {budget:g} s"
    from airflow_carbon_provider.hooks._compat import is_connection_not_found

    if is_connection_not_found(exc):
        return f"connection {cand.conn_id!r} is not defined"
    names = {type(e).__name__ for e in _chain(exc)}
    if names & {"MaxRetryError", "NewConnectionError", "ConnectionRefusedError", "ProtocolError",
                "ConnectionError", "ReadTimeoutError", "SSLError", "OSError"}:
        reason = "timed out" if "ReadTimeoutError" in names else "connection failed"
        return f"{cand.conn_id} unreachable ({reason}: {type(exc).__name__})"
    first = _REDACT.sub(r"\1***", str(exc).splitlines()[0][:160]) if str(exc) else ""
    return f"cannot read {cand.conn_id}: {type(exc).__name__}{': ' + first if first else ''}"


def _chain(exc: BaseException) -> Iterable[BaseException]:
    """Yield ``exc`` and what caused it (``__cause__``, ``__context__``, urllib3's ``reason``)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        reason = getattr(seen, "reason", None)
        seen = seen.__cause__ or seen.__context__ or (reason if isinstance(reason, BaseException) else None)


def _hook_class() -> Any:
    """Import ``KubernetesHook`` (the first import costs seconds: Airflow and the cncf provider)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook


def _hook(cand: ClusterCandidate, extras: Mapping[str, Any] | None = None) -> Any:
    """Return the candidate's ``KubernetesHook``, built as the operator's KPO builds its own."""
    hook = _hook_class()(conn_id=cand.conn_id, config_file=cand.config_file,
                          cluster_context=cand.cluster_context, in_cluster=cand.in_cluster)
    if extras is not None:
        # The connection was read with the async getters; the sync hook must not read it again
        # (a blocking connection lookup inside the triggerer). conn_extras is its cached read.
        hook.__dict__["conn_extras"] = dict(extras)
    return hook


def _list_json(call: Callable[..., Any], budget: float, **kwargs: Any) -> list[dict[str, Any]]:
    import json

    response = call(_preload_content=False, _request_timeout=budget, **kwargs)
    try:
        return list(json.loads(response.data).get("items") or [])
    finally:
        response.release_conn()


def _slim_node(node: Mapping[str, Any]) -> dict[str, Any]:
    status = node.get("status") or {}
    return {"metadata": {"name": (node.get("metadata") or {}).get("name"),
                         "labels": (node.get("metadata") or {}).get("labels") or {}},
            "spec": {"unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
                     "taints": (node.get("spec") or {}).get("taints") or []},
            "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                      for c in status.get("conditions") or []],
                       "allocatable": status.get("allocatable") or {}}}


def _slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    spec = pod.get("spec") or {}

    def slim(containers: Any) -> list[dict[str, Any]]:
        return [{"resources": c.get("resources") or {}, "restartPolicy": c.get("restartPolicy")}
                for c in containers or []]

    meta = pod.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
            "spec": {"nodeName": spec.get("nodeName"), "containers": slim(spec.get("containers")),
                     "initContainers": slim(spec.get("initContainers")), "overhead": spec.get("overhead")},
            "status": {"phase": (pod.get("status") or {}).get("phase")}}


def _read_cluster(hook: Any, budget: float) -> ClusterReading:
    """List nodes and live pods cluster-wide with ``hook`` (blocking; each request bounded by ``budget``)."""
    read_at = datetime.now(timezone.utc)
    api = hook.core_v1_client
    nodes = _list_json(api.list_node, budget)
    pods = _list_json(api.list_pod_for_all_namespaces, budget, field_selector=_LIVE_PODS)
    return ClusterReading(
        tuple(_slim_node(n) for n in nodes),
        tuple(_slim_pod(p) for p in pods if (p.get("spec") or {}).get("nodeName")),
        read_at,
    )


def _failed(cand: ClusterCandidate, exc: BaseException, budget: float, started: datetime) -> ClusterReading:
    message = _describe_failure(exc, cand, budget)
    # Logged here, where the reading is fetched: once per cluster per TTL, not once per caller.
    log.warning("Cannot read the free resources of %s (%s); using declared capacities until the next "
                "reading", cand.conn_id, message)
    return ClusterReading(read_at=started, error=message)


def _fetch_sync(cand: ClusterCandidate, budget: float) -> ClusterReading:
    started = datetime.now(timezone.utc)
    try:
        _hook_class()  # outside the budget: a one-time import is not a wait on the cluster
        result = run_bounded(lambda: _read_cluster(_hook(cand), budget), budget, f"inventory of {cand.conn_id}")
    except Exception as exc:
        return _failed(cand, exc, budget, started)
    return result


async def _in_thread(func: Callable[[], Any], budget: float, what: str) -> Any:
    """Run blocking ``func`` in a daemon thread; await it for at most ``budget`` seconds.

    A daemon thread, not the loop's executor: a hung API call then never holds one of the
    executor's few workers, and it dies with the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(value)

    def target() -> None:
        try:
            value, error = func(), None
        except BaseException as exc:  # handed to the awaiting task
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass

    threading.Thread(target=target, name=f"carbon-{what}", daemon=True).start()
    try:
        return await asyncio.wait_for(future, budget)
    except asyncio.TimeoutError:
        raise TimeoutError(f"{what} did not finish within {budget:g} s") from None


async def _fetch_async(cand: ClusterCandidate, budget: float) -> ClusterReading:
    started = datetime.now(timezone.utc)
    try:
        # Outside the budget and off the event loop: a one-time import is not a wait on the cluster.
        await asyncio.to_thread(_hook_class)
    except Exception as exc:
        return _failed(cand, exc, budget, started)
    deadline = time.monotonic() + budget

    async def read() -> ClusterReading:
        extras = await _aextras(cand.conn_id)
        left = max(0.01, deadline - time.monotonic())
        return await _in_thread(lambda: _read_cluster(_hook(cand, extras), left), left,
                                f"inventory of {cand.conn_id}")

    try:
        return await asyncio.wait_for(read(), budget)
    except Exception as exc:
        return _failed(cand, exc, budget, started)


async def _aextras(conn_id: str) -> dict[str, Any]:
    """Return the Kubernetes connection's extras, read with the async getters (``{}`` for an absent default)."""
    from airflow_carbon_provider.hooks._compat import aget_connection_and_extras, is_connection_not_found

    KubernetesHook = _hook_class()

    try:
        _conn, extras = await aget_connection_and_extras(KubernetesHook(conn_id=conn_id), conn_id)
    except Exception as exc:
        if conn_id == KubernetesHook.default_conn_name and is_connection_not_found(exc):
            return {}  # as KubernetesHook: no default connection means the cluster-derived credentials
        raise
    return extras


# --------------------------------------------------------------------------- public entry points


def read_inventory(
    candidate: ClusterCandidate,
    *,
    timeout: float | None = None,
    ttl: float | None = None,
    read_cluster: bool = True,
    tolerations: Sequence[Any] | None = None,
    cache: IntensityCache | None = None,
    exclude_label: str | None = None,
) -> Inventory:
    """Return what ``candidate`` can take now; never raises for a cluster that cannot be read.

    :param timeout: seconds the cluster reading may take (default ``[carbon] inventory_timeout``, else 3).
    :param ttl: seconds a reading is reused (default ``[carbon] inventory_ttl``, else 30).
    :param read_cluster: ask the cluster at all; ``False`` uses the declared capacity alone.
    :param tolerations: the task's tolerations; when given, nodes with a ``NoSchedule`` or
        ``NoExecute`` taint they do not tolerate do not count (default: taints are ignored).
    :param cache: the cache to use (default :data:`inventory_cache`, shared by the process).
    :param exclude_label: pods carrying this label are not subtracted (their load is counted
        elsewhere: :data:`~airflow_carbon_provider.scheduling.fleet.RESERVED_LABEL` pods by their reservation).
    """
    if not read_cluster:
        return _inventory(candidate, None, tolerations, exclude_label)
    budget = inventory_timeout() if timeout is None else timeout
    reading = (inventory_cache if cache is None else cache).get(
        _cluster_key(candidate), lambda: _fetch_sync(candidate, budget), inventory_ttl() if ttl is None else ttl)
    return _inventory(candidate, reading, tolerations, exclude_label)


async def aread_inventory(
    candidate: ClusterCandidate,
    *,
    timeout: float | None = None,
    ttl: float | None = None,
    read_cluster: bool = True,
    tolerations: Sequence[Any] | None = None,
    cache: IntensityCache | None = None,
    exclude_label: str | None = None,
) -> Inventory:
    """Return what ``candidate`` can take now, without blocking the event loop; as :func:`read_inventory`."""
    if not read_cluster:
        return _inventory(candidate, None, tolerations, exclude_label)
    budget = inventory_timeout() if timeout is None else timeout
    reading = await (inventory_cache if cache is None else cache).aget(
        _cluster_key(candidate), lambda: _fetch_async(candidate, budget), inventory_ttl() if ttl is None else ttl)
    return _inventory(candidate, reading, tolerations, exclude_label)


async def aread_inventories(candidates: Sequence[ClusterCandidate], **kwargs: Any) -> dict[str, Inventory]:
    """Return every candidate's inventory by key, all clusters read at once (keywords as :func:`read_inventory`)."""
    found = await asyncio.gather(*(aread_inventory(c, **kwargs) for c in candidates))
    return {inv.key: inv for inv in found}


def read_inventories(candidates: Sequence[ClusterCandidate], **kwargs: Any) -> dict[str, Inventory]:
    """Return every candidate's inventory by key, clusters read in parallel threads (blocking).

    From an event loop use :func:`aread_inventories`.
    """
    results: dict[str, Inventory] = {}

    def read(cand: ClusterCandidate) -> None:
        results[cand.key] = read_inventory(cand, **kwargs)

    threads = [threading.Thread(target=read, args=(c,), name=f"carbon-inventory-{c.key}", daemon=True)
               for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()  # each read_inventory is bounded by its own budget
    return {c.key: results.get(c.key) or _inventory(c, None) for c in candidates}
