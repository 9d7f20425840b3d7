"""Resources in the units Kubernetes tasks ask for: pods, CPU, memory, GPUs, any extended resource.

One vocabulary for the cluster inventory (what a cluster can take), the reservations (what a
planned task holds) and the planner (whether a start fits). A resource amount is a plain
mapping of resource name to float:

* ``pods``: a count; every task asks for one,
* ``cpu``: cores (``"500m"`` is 0.5),
* ``memory`` and ``ephemeral-storage``: bytes (``"16Gi"``),
* anything else (``nvidia.com/gpu``, ``amd.com/gpu``, ...): a count.

A resource absent from a capacity is unlimited; a resource absent from a demand is not asked
for. A declared capacity may be an integer, which means that many pods (the meaning
``capacity`` has always had: at most this many planned carbon-aware tasks overlap).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "POD",
    "Booking",
    "ResourceError",
    "Resources",
    "format_resources",
    "parse_quantity",
    "parse_resources",
]

#: A resource amount: resource name to quantity (cores, bytes or a count).
Resources = Mapping[str, float]
#: What a task asks for when it says nothing else: one pod.
POD: Resources = {"pods": 1.0}

_SUFFIX = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^\s*([+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?\s*$")
_NAME = re.compile(r"^(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class ResourceError(ValueError):
    """Raised for a resource name or quantity that cannot be read; the message names it."""


class Booking(NamedTuple):
    """Load already planned on a candidate: ``demand`` held over ``[start, end)`` (epoch seconds)."""

    cluster_id: str
    start: float
    end: float
    demand: Resources = POD


def parse_quantity(value: Any, *, name: str = "quantity") -> float:
    """Read a Kubernetes quantity (``"500m"``, ``"16Gi"``, ``2``, ``"1e3"``) as a float >= 0.

    :param name: what the value is, for the error message (e.g. ``capacity['memory']``).
    """
    if isinstance(value, bool):
        raise ResourceError(f"{name} must be a quantity such as 4, '500m' or '16Gi', got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (match := _QUANTITY.match(value)):
        number = float(match.group(1)) * _SUFFIX[match.group(2) or ""]
    else:
        raise ResourceError(f"{name} must be a quantity such as 4, '500m' or '16Gi', got {value!r}")
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise ResourceError(f"{name} must be a finite quantity >= 0, got {value!r}")
    return number


def parse_resources(spec: Any, *, where: str = "capacity") -> dict[str, float] | None:
    """Read a capacity or demand: ``None``, a positive integer (that many pods) or a mapping.

    :param where: what the value is, for the error message (e.g. ``cluster_conn_ids['gb'].capacity``).
    :return: resource name to amount, or ``None`` for unlimited.
    """
    if spec is None:
        return None
    if isinstance(spec, bool) or (isinstance(spec, (int, float)) and not isinstance(spec, Mapping)):
        if isinstance(spec, bool) or not float(spec).is_integer() or spec < 1:
            raise ResourceError(f"{where} must be a positive integer (pods) or a dict of resources, got {spec!r}")
        return {"pods": float(spec)}
    if not isinstance(spec, Mapping):
        raise ResourceError(
            f"{where} must be a positive integer (pods) or a dict such as "
            f"{{'pods': 50, 'cpu': '64', 'memory': '256Gi', 'nvidia.com/gpu': 8}}, got {spec!r}"
        )
    if not spec:
        raise ResourceError(f"{where} is an empty dict; name at least one resource, or leave it out for unlimited")
    out: dict[str, float] = {}
    for key, amount in spec.items():
        if not isinstance(key, str) or not _NAME.match(key):
            raise ResourceError(f"{where} has resource name {key!r}; use a Kubernetes resource name such as "
                                "'cpu', 'memory' or 'nvidia.com/gpu'")
        out[key] = parse_quantity(amount, name=f"{where}[{key!r}]")
    return out


def format_resources(amount: Resources | None) -> str:
    """Format an amount for messages: ``pods 3, cpu 1.5, memory 2Gi`` (``unlimited`` for None)."""
    if amount is None:
        return "unlimited"
    parts = []
    for key in sorted(amount, key=lambda k: (k != "pods", k)):
        value = amount[key]
        if key in ("memory", "ephemeral-storage") and value >= 2**20:
            text = next(f"{value / 2**p:g}{u}" for p, u in ((40, "Ti"), (30, "Gi"), (20, "Mi")) if value >= 2**p)
        else:
            text = f"{value:g}"
        parts.append(f"{key} {text}")
    return ", ".join(parts) or "nothing"
