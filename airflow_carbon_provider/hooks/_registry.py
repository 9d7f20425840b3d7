"""Find the hook for a carbon connection id, and read a Kubernetes connection's carbon extras.

The operators and the trigger name carbon sources only by connection id; the connection's
type says which hook serves it. Every carbon connection must exist, ``carbontrace_default``
(the operators' default, a trace replay) included: replayed data is planned on only when
someone defined it on purpose.

Resolved hooks are kept for :data:`HOOK_TTL` seconds per (connection id, clock, event loop),
so thousands of triggers in one triggerer read each connection about once per TTL instead of
twice per zone at every re-plan (measured by ``benchmarks/bench_triggers.py``); a rotated key
is picked up within the TTL.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from airflow.sdk import BaseHook

from airflow_carbon_provider.exceptions import CarbonConfigError
from airflow_carbon_provider.hooks import HOOK_CLASSES
from airflow_carbon_provider.hooks._compat import is_connection_not_found
from airflow_carbon_provider.sources._flow import MISS, SingleFlight

__all__ = ["acarbon_hook", "carbon_hook", "read_connection_extras"]

TRACE_DEFAULT = "carbontrace_default"


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


HOOK_TTL = 300.0
_hooks: dict[tuple[Any, ...], tuple[float, Any]] = {}
_flights = SingleFlight()
_lock = threading.Lock()


def _remembered(key: tuple[Any, ...]) -> Any:
    with _lock:
        hit = _hooks.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        _hooks.pop(key, None)
    return None


def _lookup(key: tuple[Any, ...]) -> Any:
    hook = _remembered(key)
    return MISS if hook is None else hook


def _remember(key: tuple[Any, ...], hook: Any) -> None:
    with _lock:
        if len(_hooks) > 1024:  # many short-lived clocks (tests) or loops: start afresh
            _hooks.clear()
        _hooks[key] = (time.monotonic() + HOOK_TTL, hook)


def forget_hooks() -> None:
    """Drop every remembered hook (connections are read again on next use)."""
    with _lock:
        _hooks.clear()


def carbon_hook(conn_id: str, clock: Callable[[], datetime] | None = None) -> Any:
    """Return the hook that serves carbon connection ``conn_id`` (reads the connection now).

    :param clock: the hook's notion of now (default: the wall clock).
    """
    key = ("sync", conn_id, clock)
    hook = _remembered(key)
    if hook is None:
        hook = _resolve(conn_id, clock)
        _remember(key, hook)
    return hook


def _resolve(conn_id: str, clock: Callable[[], datetime] | None) -> Any:
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        return _without_connection(conn_id, clock, exc)
    return _hook_for_type(conn_id, conn.conn_type, clock)


def _without_connection(conn_id: str, clock: Callable[[], datetime] | None, exc: Exception) -> Any:
    """Say what is missing: no carbon connection is ever made up, not even the replay default.

    ``carbontrace_default`` replays a historical trace. Planning on it without saying so
    would make a production task wait for replayed data, so it must be defined on purpose
    (the demo and the tests define it); otherwise the task falls open and the reason names
    the fix.
    """
    if not is_connection_not_found(exc):
        raise exc
    if conn_id == TRACE_DEFAULT:
        raise CarbonConfigError(
            f"no carbon-intensity connection is configured: carbon_conn_id defaults to {TRACE_DEFAULT!r}, which "
            "is not defined; create an electricitymaps, watttime or ukcarbonintensity connection and pass "
            f"carbon_conn_id=..., or define {TRACE_DEFAULT!r} (type carbontrace) to replay a trace on purpose",
            provider="planner",
        ) from exc
    raise CarbonConfigError(
        f"carbon connection {conn_id!r} is not defined; create it or set AIRFLOW_CONN_{conn_id.upper()}",
        provider="planner",
    ) from exc


async def acarbon_hook(conn_id: str, clock: Callable[[], datetime] | None = None) -> Any:
    """Return the hook for ``conn_id`` without blocking the event loop (for triggers).

    Concurrent callers for one key share a single connection read.
    """
    key = ("async", conn_id, clock, id(asyncio.get_running_loop()))

    async def read() -> Any:
        hook = await _aresolve(conn_id, clock)
        _remember(key, hook)
        return hook

    # The read runs in a task of its own (SingleFlight), so a caller that is cancelled (one
    # trigger of many) cancels only its own wait: the others still get the hook.
    return await _flights.acall(key, read, lookup=lambda: _lookup(key))


async def _aresolve(conn_id: str, clock: Callable[[], datetime] | None) -> Any:
    from airflow_carbon_provider.hooks._compat import aget_connection_and_extras

    try:
        conn, _extras = await aget_connection_and_extras(BaseHook(), conn_id)
    except Exception as exc:
        return _without_connection(conn_id, clock, exc)
    return _hook_for_type(conn_id, conn.conn_type, clock)


def read_connection_extras(conn_id: str) -> dict[str, Any]:
    """Return the carbon-related extras of a Kubernetes connection (``carbon_zone``, ``carbon_conn_id``)."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if is_connection_not_found(exc):
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
