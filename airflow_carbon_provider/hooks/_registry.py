"""Find the hook for a carbon connection id, and read a Kubernetes connection's carbon extras.

The operators and the trigger name carbon sources only by connection id; the connection's
type says which hook serves it. ``carbontrace_default`` works without any connection: it
replays the trace bundled with the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from airflow.sdk import BaseHook

from airflow_carbon_provider.exceptions import CarbonConfigError
from airflow_carbon_provider.hooks import HOOK_CLASSES

__all__ = ["acarbon_hook", "carbon_hook", "read_connection_extras"]

TRACE_DEFAULT = "carbontrace_default"


def _not_found(exc: Exception) -> bool:
    return type(exc).__name__ in ("AirflowNotFoundException", "ConnectionNotFound") or "isn't defined" in str(exc)


def _hook_for_type(conn_id: str, conn_type: str | None, clock: Callable[[], datetime] | None = None) -> Any:
    path = HOOK_CLASSES.get(conn_type or "")
    if path is None:
        raise CarbonConfigError(
            f"connection {conn_id!r} has type {conn_type!r}, which is not a carbon-intensity source; use one of "
            f"{', '.join(sorted(HOOK_CLASSES))}",
            provider="planner",
        )
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(conn_id, clock=clock)


def carbon_hook(conn_id: str, clock: Callable[[], datetime] | None = None) -> Any:
    """Return the hook that serves carbon connection ``conn_id`` (reads the connection now).

    :param clock: the hook's notion of now (default: the wall clock).
    """
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if _not_found(exc) and conn_id == TRACE_DEFAULT:
            return _hook_for_type(conn_id, "carbontrace", clock)
        if _not_found(exc):
            raise CarbonConfigError(
                f"carbon connection {conn_id!r} is not defined; create it or set AIRFLOW_CONN_{conn_id.upper()}",
                provider="planner",
            ) from exc
        raise
    return _hook_for_type(conn_id, conn.conn_type, clock)


async def acarbon_hook(conn_id: str, clock: Callable[[], datetime] | None = None) -> Any:
    """Return the hook for ``conn_id`` without blocking the event loop (for triggers)."""
    from airflow_carbon_provider.hooks._compat import aget_connection_and_extras

    try:
        conn, _extras = await aget_connection_and_extras(BaseHook(), conn_id)
    except Exception as exc:
        if _not_found(exc) and conn_id == TRACE_DEFAULT:
            return _hook_for_type(conn_id, "carbontrace", clock)
        if _not_found(exc):
            raise CarbonConfigError(
                f"carbon connection {conn_id!r} is not defined; create it or set AIRFLOW_CONN_{conn_id.upper()}",
                provider="planner",
            ) from exc
        raise
    return _hook_for_type(conn_id, conn.conn_type, clock)


def read_connection_extras(conn_id: str) -> dict[str, Any]:
    """Return the carbon-related extras of a Kubernetes connection (``carbon_zone``, ``carbon_conn_id``)."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if _not_found(exc):
            raise CarbonConfigError(
                f"Kubernetes connection {conn_id!r} is not defined; create it or set "
                f"AIRFLOW_CONN_{conn_id.upper()}",
                provider="planner",
            ) from exc
        raise
    extras = conn.extra_dejson or {}
    found = {}
    for key in ("carbon_zone", "carbon_conn_id"):
        value = extras.get(key, extras.get(f"extra__kubernetes__{key}"))
        if value not in (None, ""):
            found[key] = value
    return found
