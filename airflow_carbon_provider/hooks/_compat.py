"""Airflow version shims: reading a connection from async code, the secrets masker, ``[carbon]`` config."""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, Connection


#: Comms without an asynchronous path answer one request at a time: reads take turns.
_IN_PROCESS_READS = threading.Lock()


def _comms_answer_only_synchronously() -> bool:
    """Return whether the task SDK's comms here cannot answer an asynchronous request.

    One rule for two cases. ``dag.test()`` and ``airflow dags test`` run the task and its
    trigger in-process, with comms that have ``send`` but no ``asend``; a worker on Airflow
    3.1 (task SDK 1.1) has comms whose ``asend`` is a placeholder that raises
    ``NotImplementedError`` (its triggerer's comms implement it). Either way the SDK's
    asynchronous connection read swallows the error and reports every connection stored in
    the database as not defined (environment-variable connections are found before the
    comms are asked), so the synchronous getter must be used instead.
    """
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover - no task SDK
        return False
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None:
        return False
    asend = getattr(type(comms), "asend", None)
    return asend is None or _only_raises_not_implemented(asend)


def _only_raises_not_implemented(method: Any) -> bool:
    """Return whether ``method``'s body does nothing but raise ``NotImplementedError``."""
    code = getattr(method, "__code__", None)
    return code is not None and code.co_names == ("NotImplementedError",)


async def aget_connection_and_extras(hook: BaseHook, conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """Return the connection and its decoded extra, read with the async getters.

    Uses ``airflow.providers.common.compat`` when it is installed (it knows which Airflow
    releases mask secrets synchronously inside ``aget_connection``); otherwise
    ``BaseHook.aget_connection`` (Airflow 3.1+), and a worker thread as the last resort.
    Where the comms cannot answer asynchronously (``dag.test()``; a worker on Airflow 3.1),
    the synchronous getter runs in a worker thread, one read at a time.
    """
    if _comms_answer_only_synchronously():

        def read() -> tuple[Connection, dict[str, Any]]:
            with _IN_PROCESS_READS:
                conn = hook.get_connection(conn_id)
                return conn, dict(conn.extra_dejson)

        return await asyncio.to_thread(read)
    try:
        from airflow.providers.common.compat.connection import (
            get_async_connection,
            get_async_extra_dejson,
        )
    except ImportError:
        if hasattr(hook, "aget_connection"):
            conn = await hook.aget_connection(conn_id)
        else:  # pragma: no cover - Airflow before 3.1
            conn = await asyncio.to_thread(hook.get_connection, conn_id)
        return conn, await asyncio.to_thread(lambda: dict(conn.extra_dejson))
    conn = await get_async_connection(conn_id, hook=hook)
    return conn, dict(await get_async_extra_dejson(conn))


def is_connection_not_found(exc: BaseException) -> bool:
    """Return whether ``exc`` says that a connection id is not defined (the one rule for it).

    The task SDK and Airflow core raise ``AirflowNotFoundException`` (from different
    modules, by release); a raw task-SDK error response with ``CONNECTION_NOT_FOUND`` counts
    too. Anything else (a secrets backend that is down, say) is not "not found".
    """
    if any(cls.__name__ == "AirflowNotFoundException" for cls in type(exc).__mro__):
        return True
    code = getattr(getattr(exc, "error", None), "error", None)
    return str(getattr(code, "value", code)) == "CONNECTION_NOT_FOUND"


CONFIG_SECTION = "carbon"


def carbon_conf(key: str) -> str | None:
    """Return ``[carbon] key`` (``AIRFLOW__CARBON__KEY`` wins), or None when unset or empty.

    Read at call time, so a changed variable is seen by the next connection read.
    """
    env = os.environ.get(f"AIRFLOW__{CONFIG_SECTION.upper()}__{key.upper()}")
    if env is not None:
        return env.strip() or None
    try:
        from airflow.configuration import conf

        value = conf.get(CONFIG_SECTION, key, fallback=None)
    except Exception:  # no Airflow config to read: the environment alone decides
        return None
    return str(value).strip() or None if value is not None else None


def mask_secret(secret: str) -> None:
    """Register ``secret`` with Airflow's secrets masker in this process and the supervisor."""
    try:
        masker = importlib.import_module("airflow.sdk.log").mask_secret
    except (ImportError, AttributeError):  # pragma: no cover - older task SDK layout
        masker = importlib.import_module("airflow.sdk.execution_time.secrets_masker").mask_secret
    masker(secret)


async def amask_secret(secret: str) -> None:
    """Register ``secret`` with the secrets masker without blocking the event loop."""
    try:
        from airflow.sdk.log import amask_secret as masker
    except ImportError:  # pragma: no cover - Airflow before 3.3
        mask_secret(secret)
        return
    await masker(secret)


def mask_secrets(secrets: Iterable[str]) -> None:
    """Register every non-empty value of ``secrets`` with the masker."""
    for secret in secrets:
        if secret:
            mask_secret(secret)


async def amask_secrets(secrets: Iterable[str]) -> None:
    """Register every non-empty value of ``secrets`` with the masker, from async code."""
    for secret in secrets:
        if secret:
            await amask_secret(secret)
