"""Where a carbon-aware task may run: candidates, validated once at parse time.

A candidate is a Kubernetes connection and the grid zone it draws power from, with the
placement that makes a pod land in that zone (namespace, node selector, affinity, kubeconfig
context). Its :attr:`ClusterCandidate.key` names it everywhere a decision refers to it, so two
node pools of one connection are never confused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_carbon_provider.core.places import PlaceError, parse_place
from airflow_carbon_provider.core.resources import ResourceError, parse_resources

__all__ = [
    "CARBON_CONN_EXTRA",
    "DEFAULT_CARBON_CONN_ID",
    "ZONE_EXTRA",
    "ClusterCandidate",
    "ScheduleConfigError",
    "check_place",
    "check_zone",
    "parse_candidates",
]

DEFAULT_CARBON_CONN_ID = "carbontrace_default"
ZONE_EXTRA = "carbon_zone"
CARBON_CONN_EXTRA = "carbon_conn_id"
_ZONE = re.compile(r"^[A-Z0-9][A-Z0-9_.\-]*$")


class ScheduleConfigError(ValueError):
    """Raised for a carbon-aware task configured in a way that cannot work."""

@dataclass(frozen=True)
class ClusterCandidate:
    """One place a task may run: a Kubernetes connection and the grid zone it draws from.

    :param conn_id: the Kubernetes connection id.
    :param zone: the grid zone key of the carbon source; ``None`` means the connection's extra
        ``carbon_zone``, or, with ``where``, the key the place resolves to (filled in at run time).
    :param namespace: the namespace to use on this candidate (default: the operator's).
    :param node_selector: a node selector for this candidate (e.g. a region-labelled pool).
    :param affinity: an affinity for this candidate, as a Kubernetes dict.
    :param carbon_conn_id: the carbon-intensity connection for this zone (default: the
        Kubernetes connection's extra ``carbon_conn_id``, then the task's ``carbon_conn_id``).
    :param capacity: the declared capacity: an integer (at most this many planned carbon-aware
        tasks overlap here, i.e. that many pods) or a dict of resources such as
        ``{"pods": 50, "cpu": 64.0, "memory": 274877906944.0, "nvidia.com/gpu": 8.0}`` (stored
        as :func:`~airflow_carbon_provider.core.resources.parse_resources` reads it). It caps
        what the cluster inventory reads from the cluster (see
        :mod:`~airflow_carbon_provider.scheduling.inventory`).
    :param signal: ``average`` or ``marginal`` when known at parse time, to refuse a mix early.
    :param config_file: a kubeconfig path for this candidate (KPO's ``config_file``); default
        the connection's own configuration.
    :param cluster_context: the kubeconfig context for this candidate (KPO's ``cluster_context``).
    :param in_cluster: use the in-cluster configuration for this candidate (KPO's ``in_cluster``).
    :param where: the place as the user named it when it is not a zone key: a cloud region
        (``aws:eu-central-1``) or coordinates (``52.37,4.9``); see :mod:`~airflow_carbon_provider.core.places`.
        Kept beside the resolved ``zone`` so decisions show both (``aws:eu-central-1 → DE``).
    """

    conn_id: str
    zone: str | None = None
    namespace: str | None = None
    node_selector: dict[str, str] | None = None
    affinity: dict[str, Any] | None = None
    carbon_conn_id: str | None = None
    capacity: int | dict[str, float] | None = None
    signal: str | None = None
    config_file: str | None = None
    cluster_context: str | None = None
    in_cluster: bool | None = None
    where: str | None = None

    @property
    def place(self) -> str | None:
        """Return where this candidate is, as written and as resolved (``aws:us-west-1 → US-CAL-CISO``)."""
        if self.where and self.zone and self.zone != self.where:  # equal: not resolved (the lookup failed)
            return f"{self.where} \u2192 {self.zone}"
        return self.where or self.zone

    @property
    def key(self) -> str:
        """A unique name for this candidate: connection id, ``@context`` and ``[node selector]`` if any."""
        key = f"{self.conn_id}@{self.cluster_context}" if self.cluster_context else self.conn_id
        if self.node_selector:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.node_selector.items()))
            return f"{key}[{labels}]"
        return key

    @property
    def resources(self) -> dict[str, float] | None:
        """Return the declared capacity in resource units (an integer is that many pods); None if unlimited."""
        return parse_resources(self.capacity, where=f"cluster_conn_ids[{self.conn_id!r}].capacity")

    @property
    def pod_capacity(self) -> int | None:
        """Return how many pods the declared capacity allows; None if it does not limit pods."""
        declared = self.resources
        if declared is None or "pods" not in declared:
            return None
        return max(1, int(declared["pods"]))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (what the trigger's kwargs hold)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterCandidate:
        """Rebuild from :meth:`to_dict`."""
        return cls(**dict(data))


def check_place(value: Any, where: str) -> tuple[str | None, str | None]:
    """Read a place as written; return ``(zone, None)`` for a zone key, ``(None, place)`` otherwise.

    A cloud region or coordinates is resolved to the carbon source's key at run time, when
    the source's type is known (:meth:`~airflow_carbon_provider.scheduling.CarbonSchedule.resolve`).
    """
    try:
        place = parse_place(value, where)
    except PlaceError as exc:
        raise ScheduleConfigError(str(exc)) from None
    return (place.text, None) if place.kind == "zone" else (None, place.text)


def check_zone(zone: Any, where: str) -> str:
    if isinstance(zone, str) and zone != zone.upper() and _ZONE.match(zone.upper()):
        raise ScheduleConfigError(
            f"{where}: zone {zone!r} is lower case; carbon sources name zones in upper case: use {zone.upper()!r}"
        )
    if not isinstance(zone, str) or not _ZONE.match(zone):
        raise ScheduleConfigError(
            f"{where}: zone {zone!r} is not a zone key; use the key your carbon source names, "
            "e.g. 'DE', 'SE-SE1', 'US-CAL-CISO' or 'CAISO_NORTH'"
        )
    return zone


def parse_candidates(cluster_conn_ids: Any, *, allow_mixed_signals: bool = False) -> list[ClusterCandidate]:
    """Validate ``cluster_conn_ids`` (a list of connection ids or a mapping) into candidates.

    A mapping's values are a zone string or a dict with ``zone`` and optionally ``namespace``,
    ``node_selector``, ``affinity``, ``carbon_conn_id``, ``capacity``, ``signal`` and
    ``conn_id`` (to use one connection several times, e.g. one cluster with node pools in
    several regions: then the mapping's keys are just names).
    """
    if isinstance(cluster_conn_ids, str):
        cluster_conn_ids = [cluster_conn_ids]
    if not cluster_conn_ids:
        raise ScheduleConfigError(
            "cluster_conn_ids is empty; give at least one Kubernetes connection id (the first is home)"
        )
    candidates: list[ClusterCandidate] = []
    if isinstance(cluster_conn_ids, Mapping):
        for name, spec in cluster_conn_ids.items():
            where = f"cluster_conn_ids[{name!r}]"
            if spec is None or isinstance(spec, str):
                zone, place = check_place(spec, where) if spec else (None, None)
                candidates.append(ClusterCandidate(str(name), zone, where=place))
                continue
            if not isinstance(spec, Mapping):
                raise ScheduleConfigError(f"{where} must be a zone string or a dict with 'zone', got {spec!r}")
            known = {"zone", "namespace", "node_selector", "affinity", "carbon_conn_id", "capacity", "signal",
                     "conn_id", "config_file", "cluster_context", "in_cluster"}
            unknown = sorted(set(spec) - known)
            if unknown:
                raise ScheduleConfigError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(known)}")
            zone, place = check_place(spec["zone"], where) if spec.get("zone") is not None else (None, None)
            capacity = spec.get("capacity")
            if capacity is not None:
                try:
                    declared = parse_resources(capacity, where=f"{where}.capacity")
                except ResourceError as exc:
                    raise ScheduleConfigError(str(exc)) from exc
                if not isinstance(capacity, int):
                    capacity = declared
            signal = spec.get("signal")
            if signal is not None and signal not in ("average", "marginal"):
                raise ScheduleConfigError(f"{where}: signal must be 'average' or 'marginal', got {signal!r}")
            for key in ("node_selector", "affinity"):
                if spec.get(key) is not None and not isinstance(spec[key], Mapping):
                    raise ScheduleConfigError(f"{where}: {key} must be a dict, got {type(spec[key]).__name__}")
            for key in ("config_file", "cluster_context", "namespace", "carbon_conn_id"):
                if spec.get(key) is not None and not isinstance(spec[key], str):
                    raise ScheduleConfigError(f"{where}: {key} must be a string, got {type(spec[key]).__name__}")
            if spec.get("in_cluster") is not None and not isinstance(spec["in_cluster"], bool):
                raise ScheduleConfigError(f"{where}: in_cluster must be true or false, got {spec['in_cluster']!r}")
            candidates.append(
                ClusterCandidate(
                    conn_id=str(spec.get("conn_id") or name),
                    zone=zone,
                    where=place,
                    namespace=spec.get("namespace"),
                    node_selector=dict(spec["node_selector"]) if spec.get("node_selector") else None,
                    affinity=dict(spec["affinity"]) if spec.get("affinity") else None,
                    carbon_conn_id=spec.get("carbon_conn_id"),
                    capacity=capacity,
                    signal=signal,
                    config_file=spec.get("config_file"),
                    cluster_context=spec.get("cluster_context"),
                    in_cluster=spec.get("in_cluster"),
                )
            )
    elif isinstance(cluster_conn_ids, Sequence):
        for item in cluster_conn_ids:
            if isinstance(item, ClusterCandidate):
                candidates.append(item)
            elif isinstance(item, str) and item.strip():
                candidates.append(ClusterCandidate(item.strip()))
            else:
                raise ScheduleConfigError(
                    f"cluster_conn_ids holds {item!r}; give Kubernetes connection ids as strings"
                )
    else:
        raise ScheduleConfigError(
            f"cluster_conn_ids must be a list of connection ids or a dict of id to zone, got "
            f"{type(cluster_conn_ids).__name__}"
        )
    keys = [c.key for c in candidates]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ScheduleConfigError(f"cluster_conn_ids names {duplicates} more than once; list each candidate once")
    signals = {c.signal for c in candidates if c.signal}
    if len(signals) > 1 and not allow_mixed_signals:
        raise ScheduleConfigError(
            "cluster_conn_ids mixes average and marginal signals; use one kind for every candidate or pass "
            "allow_mixed_signals=True"
        )
    return candidates

