"""Issue 8 item 7: one trigger cancelled while reading a connection does not cancel the others."""

from __future__ import annotations

import asyncio

import airflow_carbon_provider.hooks._registry as registry


async def test_a_cancelled_waiter_does_not_cancel_the_others(monkeypatch):
    started = asyncio.Event()
    release = asyncio.Event()
    reads = []

    async def slow_resolve(conn_id, clock):
        reads.append(conn_id)
        started.set()
        await release.wait()
        return f"hook for {conn_id}"

    monkeypatch.setattr(registry, "_aresolve", slow_resolve)
    first = asyncio.create_task(registry.acarbon_hook("em_shared"))
    await started.wait()
    others = [asyncio.create_task(registry.acarbon_hook("em_shared")) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()  # the trigger that started the read goes away
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*others) == ["hook for em_shared"] * 3
    assert first.cancelled() and reads == ["em_shared"]  # one read, shared
    assert await registry.acarbon_hook("em_shared") == "hook for em_shared"  # and remembered
