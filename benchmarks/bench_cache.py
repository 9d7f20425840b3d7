"""Count the API requests that N concurrent async callers cause, with and without the shared cache.

Runs a counting Electricity Maps look-alike on loopback (aiohttp), then for 1, 100, 1,000 and
10,000 concurrent callers spread over 5 zones, each building its own ``ElectricityMapsHook``
(as separate triggers would) and calling ``aget_current``, it counts the requests the server
received: once through the shared single-flight cache, once with the cache off (the naive
one-request-per-caller behaviour). Prints a table. Run it with::

    /work/venv/bin/python benchmarks/bench_cache.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

ROOT = Path(__file__).resolve().parents[1]
BODY = json.loads(
    (
        ROOT
        / "tests/data/api-samples/electricitymaps/carbon-intensity_latest.real-compact.BE.2024-11-28.json"
    ).read_text()
)
ZONES = ["DE", "FR", "GB", "SE", "PL"]
CALLERS = [1, 100, 1_000, 10_000]
NOW = datetime(2024, 11, 28, 15, 30, tzinfo=timezone.utc)  # inside the recorded interval


def free_port() -> int:
    """Return a loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_server(port: int, counter: Counter) -> web.AppRunner:
    """Start the counting server; every request increments ``counter[zone]``."""

    async def latest(request: web.Request) -> web.Response:
        zone = request.query.get("zone", "")
        counter[zone] += 1
        await asyncio.sleep(0.005)  # a little latency, so concurrent callers really overlap
        return web.json_response({**BODY, "zone": zone})

    app = web.Application()
    app.router.add_get("/v3/carbon-intensity/latest", latest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    return runner


async def run(callers: int, *, cached: bool, counter: Counter) -> tuple[int, float]:
    """Return (requests made, seconds) for ``callers`` concurrent callers."""
    from airflow_carbon_provider.hooks.cache import IntensityCache
    from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook

    counter.clear()
    cache = IntensityCache() if cached else None
    async with ClientSession(connector=TCPConnector(limit=200)) as session:

        async def caller(i: int) -> float:
            hook = ElectricityMapsHook("bench_em", cache=cache, clock=lambda: NOW, aiohttp_session=session)
            series = await hook.aget_current(ZONES[i % len(ZONES)])
            return series.values[0]

        started = time.perf_counter()
        values = await asyncio.gather(*(caller(i) for i in range(callers)))
        elapsed = time.perf_counter() - started
    assert all(v == BODY["carbonIntensity"] for v in values)
    return sum(counter.values()), elapsed


async def main() -> None:
    """Run every size and print the table."""
    counter: Counter = Counter()
    port = free_port()
    os.environ["AIRFLOW_CONN_BENCH_EM"] = json.dumps(
        {"conn_type": "electricitymaps", "host": f"http://127.0.0.1:{port}", "password": "bench-key"}
    )
    runner = await start_server(port, counter)
    try:
        rows = []
        for callers in CALLERS:
            naive, naive_s = await run(callers, cached=False, counter=counter)
            cached, cached_s = await run(callers, cached=True, counter=counter)
            rows.append((callers, min(callers, len(ZONES)), naive, cached, naive_s, cached_s))
    finally:
        await runner.cleanup()
    header = ("callers", "zones", "naive requests", "cached requests", "naive s", "cached s")
    print(f"{header[0]:>8} {header[1]:>6} {header[2]:>15} {header[3]:>16} {header[4]:>9} {header[5]:>9}")
    for callers, zones, naive, cached, naive_s, cached_s in rows:
        print(f"{callers:>8,} {zones:>6} {naive:>15,} {cached:>16,} {naive_s:>9.2f} {cached_s:>9.2f}")
    print(
        "\nnaive: cache off, one request per caller. cached: the shared single-flight cache, "
        "one request per zone.\nEach caller builds its own hook; all share one loopback server "
        f"(Python {sys.version.split()[0]})."
    )


if __name__ == "__main__":
    asyncio.run(main())
