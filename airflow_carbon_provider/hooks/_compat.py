"""Read a connection from async code without blocking the event loop, on every Airflow we support."""

from __future__ import annotations

import asyncio
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
