"""Airflow version shims: reading a connection from async code, the ``[carbon]`` config section."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, Connection


async def aget_connection_and_extras(hook: BaseHook, conn_id: str) -> tuple[Connection, dict[str, Any]]:
    """Return the connection and its decoded extra, read with the async getters.

    Uses ``airflow.providers.common.compat`` when it is installed (it knows which Airflow
    releases mask secrets synchronously inside ``aget_connection``); otherwise
    ``BaseHook.aget_connection`` (Airflow 3.1+), and a worker thread as the last resort.
    """
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
