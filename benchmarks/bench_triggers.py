"""Run N CarbonWindowTriggers in one event loop; count API requests and loop CPU beside DateTimeTrigger.

Run: ``python benchmarks/bench_triggers.py [--triggers 1000,10000] [--zones 3] [--repeat 1] [--before-after]``

A counting Electricity Maps look-alike (aiohttp, loopback, OS-assigned port, in a thread of
its own so that its CPU is not the triggers') serves ``/v3/carbon-intensity/forecast`` and
``/latest`` for K zones, with hourly values from the trace bundled with the package shifted
to today. An ``electricitymaps`` connection, defined as an ``AIRFLOW_CONN_*`` variable,
points at it, with a cache lifetime just under the re-plan interval so that every refresh
really needs new data.

For each N, one plan is made with :class:`~airflow_carbon_provider.scheduling.CarbonSchedule`
over K candidate clusters (one per zone), and N triggers are built from its kwargs (as the
triggerer would rebuild them), all planned to start ``--lead`` seconds ahead (half-way
between two refresh ticks) with ``--slack`` seconds to the latest start, re-planning every
``--replan-interval`` seconds. They run with ``asyncio.gather`` in one event loop. Then, in
the same process, N of Airflow's ``DateTimeTrigger`` fire as long after their start as ours
did (median).

Reported per N (medians over ``--repeat``): the requests the server counted, the requests a
per-trigger client without a shared cache would make for the same re-plans (N x K x
re-plans per trigger), requests per re-plan round and per trigger, the event loop thread's
CPU time (``time.thread_time``) over the run divided by N for both triggers and their
ratio, the CPU of every thread but the server's, wall time, how late the last trigger fired
after its planned start, and misfires (a trigger that fired before its planned start or
after its latest start; there must be none). Log records below WARNING are dropped for both
trigger classes, as a triggerer run at that level would drop them; warnings are counted.

``--before-after`` adds a row per N with shared re-plans switched off (every trigger fetches
and plans on its own, as before 0.2.0), measured in the same process and run.

Forecasts the hooks fetch are recorded (as in production) into a ledger in a temporary
folder unless ``AIRFLOW_CARBON_LEDGER_URL`` names one.

``--what-if-hook-memo`` adds a row per N with the carbon hooks resolved once per connection
id (a proposed change, patched in for the run; not the shipped code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

UTC = timezone.utc
CONN_ID = "bench_triggers_em"
API_KEY = "bench-triggers-api-key"
FORECAST_PATH = "/v3/carbon-intensity/forecast"
LATEST_PATH = "/v3/carbon-intensity/latest"
SERVER_LATENCY = 0.005  # seconds per answer, so that concurrent fetches really overlap
EXPECTED_DURATION = timedelta(hours=1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def trace_values(zones: int) -> dict[str, list[float]]:
    """Return ``zones`` hourly value lists from the bundled trace (zone names reused with a suffix)."""
    from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace

    trace = read_trace(bundled_trace_path())
    names = list(trace)
    out: dict[str, list[float]] = {}
    for i in range(zones):
        base = names[i % len(names)]
        name = base if i < len(names) else f"{base}-{i // len(names)}"
        out[name] = list(trace[base].values)
    return out


class LoopbackElectricityMaps:
    """A counting Electricity Maps v3 look-alike on 127.0.0.1, served from its own thread.

    Forecasts start at the current hour and follow the trace, shifted so that hour ``h``
    since the epoch reads the trace at ``h`` modulo its length; ``updatedAt`` is a minute ago.

    :param values: hourly intensities per zone.
    """

    def __init__(self, values: dict[str, list[float]]) -> None:
        self.values = values
        self.counts: Counter[tuple[str, str]] = Counter()
        self.rejected = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="loopback-em", daemon=True)
        self._error: BaseException | None = None

    # -- answers ------------------------------------------------------------------------

    def _value(self, zone: str, hour: int) -> float:
        series = self.values[zone]
        return series[hour % len(series)]

    def forecast_body(self, zone: str, horizon_hours: int, now: datetime) -> dict[str, Any]:
        """Return a forecast in the recorded shape: ``horizon_hours`` hourly points from this hour."""
        first = math.floor(now.timestamp() / 3600)
        return {
            "zone": zone,
            "forecast": [
                {
                    "carbonIntensity": round(self._value(zone, h)),
                    "datetime": _iso(datetime.fromtimestamp(h * 3600, UTC)),
                }
                for h in range(first, first + horizon_hours)
            ],
            "updatedAt": _iso(now - timedelta(minutes=1)),
        }

    def latest_body(self, zone: str, now: datetime) -> dict[str, Any]:
        """Return ``/latest`` in the recorded shape."""
        hour = math.floor(now.timestamp() / 3600)
        return {
            "zone": zone,
            "carbonIntensity": round(self._value(zone, hour)),
            "datetime": _iso(datetime.fromtimestamp(hour * 3600, UTC)),
            "updatedAt": _iso(now - timedelta(minutes=1)),
            "emissionFactorType": "lifecycle",
            "isEstimated": True,
        }

    async def _answer(self, request: web.Request) -> web.Response:
        zone = request.query.get("zone", "")
        self.counts[(request.path, zone)] += 1
        if request.headers.get("auth-token") != API_KEY:
            self.rejected += 1
            return web.json_response({"message": "Invalid auth-token"}, status=401)
        if zone not in self.values:
            return web.json_response({"message": f"Zone '{zone}' does not exist."}, status=404)
        await asyncio.sleep(SERVER_LATENCY)
        now = datetime.now(UTC)
        if request.path == FORECAST_PATH:
            body = self.forecast_body(zone, int(request.query.get("horizonHours", "24")), now)
        else:
            body = self.latest_body(zone, now)
        return web.json_response(body)

    # -- lifecycle ----------------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get(FORECAST_PATH, self._answer)
        app.router.add_get(LATEST_PATH, self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server  # the port is OS-assigned; aiohttp exposes it only here
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        assert self._runner is not None
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> LoopbackElectricityMaps:
        """Start serving; return once the port is known."""
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise RuntimeError(f"loopback server did not start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    @property
    def url(self) -> str:
        """Return the base URL (the connection's host)."""
        return f"http://127.0.0.1:{self.port}"

    def cpu_time(self) -> float:
        """Return the CPU seconds the server's thread has used (so it can be left out)."""
        assert self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def reset(self) -> None:
        """Forget the counts."""
        self.counts.clear()
        self.rejected = 0

    def by_path(self) -> dict[str, int]:
        """Return the request counts per path."""
        out: Counter[str] = Counter()
        for (path, _zone), count in self.counts.items():
            out[path] += count
        return dict(out)


@contextlib.contextmanager
def em_connection(url: str, cache_ttl: float) -> Iterator[None]:
    """Define the Electricity Maps connection as an environment variable, for the block only."""
    name = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    previous = os.environ.get(name)
    os.environ[name] = json.dumps({
        "conn_type": "electricitymaps",
        "host": url,
        "password": API_KEY,
        "extra": {"cache_ttl": cache_ttl, "max_retries": 0},
    })
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


class LogCounter:
    """Count WARNING-and-above records (structlog and stdlib) and keep a few distinct samples."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, str] = {}

    def add(self, level: str, name: str, message: str) -> None:
        """Count one record."""
        key = f"{level} {name}"
        self.counts[key] += 1
        if len(self.samples) < 6:
            self.samples.setdefault(f"{key}: {message[:50]}", message[:240])


class _StdlibCounter(logging.Handler):
    def __init__(self, counter: LogCounter) -> None:
        super().__init__(logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter.add(record.levelname.lower(), record.name, record.getMessage())


@contextlib.contextmanager
def quiet_logging() -> Iterator[LogCounter]:
    """Drop log records below WARNING for every logger, and count the rest instead of printing them.

    Airflow's trigger loggers are structlog loggers configured by Airflow itself; this swaps
    in a filtering configuration for the block (as a triggerer run at WARNING would filter),
    then restores Airflow's.
    """
    import structlog

    counter = LogCounter()

    def count(_logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        name = str(event.get("logger_name") or event.get("logger") or "structlog")
        counter.add(method, name, str(event.get("event", "")))
        raise structlog.DropEvent

    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    structlog.configure(
        processors=[count],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        cache_logger_on_first_use=False,
    )
    root.handlers[:] = [_StdlibCounter(counter)]
    root.setLevel(logging.WARNING)
    try:
        yield counter
    finally:
        structlog.configure(**saved_structlog)
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])


@dataclass
class Run:
    """What one measured run of N triggers gave."""

    kind: str
    triggers: int
    zones: int
    refreshes: int
    wall_s: float
    cpu_s: float
    process_cpu_s: float
    build_cpu_s: float
    max_late_ms: float
    misfires: int
    requests: int = 0
    requests_by_path: dict[str, int] = field(default_factory=dict)
    replans_per_trigger: float = 0.0
    api_errors: int = 0
    plan_changes: int = 0
    early: int = 0
    max_early_s: float = 0.0
    fire_offset_s: float = 0.0
    warnings: dict[str, int] = field(default_factory=dict)
    warning_samples: list[str] = field(default_factory=list)

    @property
    def cpu_us_per_trigger(self) -> float:
        """Loop-thread CPU per trigger over the run, in microseconds."""
        return 1e6 * self.cpu_s / self.triggers

    @property
    def process_cpu_us_per_trigger(self) -> float:
        """CPU per trigger of every thread but the server's (the loop plus its executor threads)."""
        return 1e6 * self.process_cpu_s / self.triggers

    @property
    def naive_requests(self) -> int:
        """What one client per trigger, without a shared cache, would send for the same re-plans."""
        return round(self.triggers * self.zones * self.replans_per_trigger)


def _mid_tick(moment: datetime, period: float) -> datetime:
    """Return the instant half-way between the refresh ticks around ``moment``."""
    t = (math.floor(moment.timestamp() / period) + 0.5) * period
    return datetime.fromtimestamp(t, UTC)


def _ticks_between(start: datetime, end: datetime, period: float) -> int:
    """Return how many wall-clock multiples of ``period`` lie strictly between two instants."""
    first = math.floor(start.timestamp() / period) + 1
    last = math.ceil(end.timestamp() / period) - 1
    return max(0, last - first + 1)


def plan_once(zones: Sequence[str], lead: float, slack: float) -> dict[str, Any]:
    """Plan once through CarbonSchedule (sync hooks, via the server); return the trigger kwargs."""
    from airflow_carbon_provider.scheduling import CarbonSchedule
    from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

    schedule = CarbonSchedule(
        {f"k8s_{z.lower()}": {"zone": z} for z in zones},
        expected_duration=EXPECTED_DURATION,
        max_delay=timedelta(seconds=lead + slack),
        carbon_conn_id=CONN_ID,
        min_saving_pct=5.0,
    )
    now = datetime.now(UTC)
    decision = schedule.plan(now, now)
    if decision.fail_open:
        raise RuntimeError(f"the set-up plan failed open: {decision.reason}")
    return CarbonWindowTrigger.from_decision(schedule, decision).serialize()[1]


async def _fire(trigger: Any) -> tuple[Any, datetime]:
    event = await trigger.run().__anext__()
    return event.payload, datetime.now(UTC)


async def _carbon_run(kwargs: dict[str, Any], n: int, zones: int, lead: float, slack: float,
                      interval: float, other_cpu: Callable[[], float] = lambda: 0.0) -> Run:
    from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

    start = datetime.now(UTC)
    planned = _mid_tick(start + timedelta(seconds=lead), interval)
    latest = planned + timedelta(seconds=slack)
    cpu0 = time.thread_time()
    triggers = [
        CarbonWindowTrigger(**{**kwargs, "planned_start": planned, "latest_start": latest,
                               "replan_interval_seconds": interval})
        for _ in range(n)
    ]
    build_cpu = time.thread_time() - cpu0
    run_start = datetime.now(UTC)
    wall0, cpu0, proc0, other0 = time.perf_counter(), time.thread_time(), time.process_time(), other_cpu()
    results = await asyncio.gather(*(_fire(t) for t in triggers))
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    proc = time.process_time() - proc0 - (other_cpu() - other0)
    misfires, late, changes, early, max_early = 0, 0.0, 0, 0, 0.0
    for payload, returned in results:
        fired = datetime.fromisoformat(payload["fired_at"])
        event_planned = datetime.fromisoformat(payload["planned_start"])
        if fired < event_planned or fired > latest or returned < event_planned or returned > latest:
            misfires += 1
        late = max(late, (returned - event_planned).total_seconds())
        changes += (payload["cluster"], event_planned) != (kwargs["planned_cluster"], planned)
        if fired < planned:
            early += 1
            max_early = max(max_early, (planned - fired).total_seconds())
    offset = statistics.median((returned - run_start).total_seconds() for _, returned in results)
    return Run(
        kind="CarbonWindowTrigger", triggers=n, zones=zones,
        refreshes=_ticks_between(run_start, planned, interval), wall_s=wall, cpu_s=cpu, process_cpu_s=proc, build_cpu_s=build_cpu, max_late_ms=1e3 * late, misfires=misfires,
        replans_per_trigger=statistics.fmean(p["replans"] for p, _ in results),
        api_errors=sum(p["api_errors"] for p, _ in results), plan_changes=changes, early=early,
        max_early_s=max_early, fire_offset_s=offset,
    )


async def _datetime_run(n: int, lead: float, slack: float) -> Run:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    cpu0 = time.thread_time()
    triggers = [DateTimeTrigger(datetime.now(UTC)) for _ in range(n)]
    build_cpu = time.thread_time() - cpu0
    moment = datetime.now(UTC) + timedelta(seconds=lead)
    latest = moment + timedelta(seconds=slack)
    triggers = [DateTimeTrigger(moment) for _ in range(n)]
    wall0, cpu0, proc0 = time.perf_counter(), time.thread_time(), time.process_time()
    results = await asyncio.gather(*(_fire(t) for t in triggers))
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    proc = time.process_time() - proc0
    misfires, late = 0, 0.0
    for _payload, returned in results:
        if returned < moment or returned > latest:
            misfires += 1
        late = max(late, (returned - moment).total_seconds())
    return Run(
        kind="DateTimeTrigger", triggers=n, zones=0, refreshes=0, wall_s=wall, cpu_s=cpu, process_cpu_s=proc,
        build_cpu_s=build_cpu, max_late_ms=1e3 * late, misfires=misfires,
    )


def measure_carbon(server: LoopbackElectricityMaps, n: int, zones: Sequence[str], *, lead: float = 10.0,
                   slack: float = 5.0, interval: float = 1.0) -> Run:
    """Run ``n`` CarbonWindowTriggers over ``zones`` in a fresh event loop, from a cold cache.

    The connection must already point at ``server`` (see :func:`em_connection`).
    """
    from airflow_carbon_provider.hooks.cache import shared_cache

    shared_cache.clear()
    for attempt in range(6):
        try:
            kwargs = plan_once(zones, lead, slack)
            break
        except RuntimeError as exc:
            # after a saturated run the connection reads it abandoned still queue in the one thread Airflow's
            # sync-to-async getter uses: wait for them to drain
            if attempt == 5:
                raise
            print(f"set-up plan failed ({exc}); retrying in 10 s", file=sys.stderr)
            time.sleep(10)
    shared_cache.clear()  # the set-up plan's answers must not serve the run
    server.reset()
    with quiet_logging() as logs:
        run = asyncio.run(_carbon_run(kwargs, n, len(zones), lead, slack, interval, server.cpu_time))
    run.requests = sum(server.counts.values())
    run.requests_by_path = server.by_path()
    run.warnings = dict(logs.counts)
    run.warning_samples = list(logs.samples.values())
    if server.rejected:
        raise RuntimeError(f"the server rejected {server.rejected} requests: the connection is wrong")
    return run


def measure_datetime(n: int, *, lead: float, slack: float = 5.0) -> Run:
    """Run ``n`` DateTimeTriggers firing ``lead`` seconds after the run starts, in a fresh event loop."""
    with quiet_logging() as logs:
        run = asyncio.run(_datetime_run(n, lead, slack))
    run.warnings = dict(logs.counts)
    run.warning_samples = list(logs.samples.values())
    return run


@contextlib.contextmanager
def loopback(zones: int, cache_ttl: float) -> Iterator[tuple[LoopbackElectricityMaps, list[str]]]:
    """Start the server and define the connection; yield the server and the zone names."""
    values = trace_values(zones)
    server = LoopbackElectricityMaps(values).start()
    try:
        with em_connection(server.url, cache_ttl):
            yield server, list(values)
    finally:
        server.stop()


@contextlib.contextmanager
def memoised_hooks() -> Iterator[None]:
    """What-if, not the shipped code: resolve each carbon hook once per (conn id, clock) in the process.

    Replaces ``hooks._registry.acarbon_hook`` for the block with a single-flight memo, so a
    trigger's re-plan reuses a hook whose connection was already read (the hook keeps its
    config), instead of reading the connection twice per zone and re-plan.
    """
    from airflow_carbon_provider.hooks import _registry

    original = _registry.acarbon_hook
    resolved: dict[tuple[str, Any], asyncio.Future[Any]] = {}

    async def acarbon_hook(conn_id: str, clock: Callable[[], datetime] | None = None) -> Any:
        key = (conn_id, clock)
        future = resolved.get(key)
        if future is None or (future.done() and future.exception() is not None):
            future = resolved[key] = asyncio.ensure_future(original(conn_id, clock=clock))
        return await asyncio.shield(future)

    _registry.acarbon_hook = acarbon_hook  # type: ignore[assignment]
    try:
        yield
    finally:
        _registry.acarbon_hook = original  # type: ignore[assignment]


@contextlib.contextmanager
def unshared_plans() -> Iterator[None]:
    """Switch shared re-plans off for the block: every trigger fetches and plans on its own, as before 0.2.0."""
    from airflow_carbon_provider.triggers import carbon_window

    saved = carbon_window.SHARE_PLANS
    carbon_window.SHARE_PLANS = False
    try:
        yield
    finally:
        carbon_window.SHARE_PLANS = saved


def _median(runs: Sequence[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def report(rows: list[tuple[str, list[Run], list[Run]]], args: argparse.Namespace) -> None:
    """Print the table and the notes under it."""
    header = (
        f"{'variant':<8} {'triggers':>8} {'zones':>5} {'replans':>7} {'requests':>8} {'naive':>9} {'req/repl':>8} "
        f"{'req/trg':>7} | {'loop us/trg':>11} {'DTT us/trg':>10} {'ratio':>5} {'all-thr us/trg':>14} | "
        f"{'wall s':>6} {'DTT wall':>8} | {'late ms':>7} {'DTT late':>8} | {'misfires':>8} {'DTT misf':>8}"
    )
    print(header)
    print("-" * len(header))
    for variant, ours, theirs in rows:
        n, k = ours[0].triggers, ours[0].zones
        replans = _median(ours, "replans_per_trigger")
        requests = _median(ours, "requests")
        per_replan = f"{requests / replans:>8.1f}" if replans else f"{'-':>8}"
        cpu, dtt = _median(ours, "cpu_us_per_trigger"), _median(theirs, "cpu_us_per_trigger")
        print(
            f"{variant:<8} {n:>8,} {k:>5} {replans:>7.2f} {requests:>8,.0f} {_median(ours, 'naive_requests'):>9,.0f} "
            f"{per_replan} {requests / n:>7.4f} | {cpu:>11.1f} {dtt:>10.1f} "
            f"{cpu / dtt:>5.1f} {_median(ours, 'process_cpu_us_per_trigger'):>14.1f} | "
            f"{_median(ours, 'wall_s'):>6.2f} {_median(theirs, 'wall_s'):>8.2f} | "
            f"{_median(ours, 'max_late_ms'):>7.1f} {_median(theirs, 'max_late_ms'):>8.1f} | "
            f"{sum(r.misfires for r in ours):>8} {sum(r.misfires for r in theirs):>8}"
        )
    print()
    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; medians of {args.repeat} run(s); triggers "
        f"planned {args.lead:g} s ahead (mid-way between refresh ticks), latest start {args.slack:g} s later; "
        f"re-plan every {args.replan_interval:g} s; forecast cache TTL {args.cache_ttl:g} s; server latency "
        f"{1e3 * SERVER_LATENCY:g} ms; log records below WARNING dropped."
    )
    print(
        "variant: as-is = the package's code (triggers with the same inputs share one re-plan per refresh); "
        "no-share = the same with sharing off, as before 0.2.0 (--before-after);\nmemo = what-if, carbon hooks "
        "resolved once per connection id (--what-if-hook-memo), not shipped.\n"
        "replans: re-plans completed per trigger (each is one refresh: K forecasts). requests: counted by "
        "the loopback server. req/repl: requests / replans.\n"
        "naive: N x K x replans, one client per trigger and no shared cache. loop us/trg: CPU of the event "
        "loop's thread (time.thread_time) from gather() to the last event, / N.\n"
        "DTT: Airflow's DateTimeTrigger, same N, same process, firing as long after its start as ours "
        "did (median). ratio: loop us/trg / DTT us/trg. all-thr: process CPU minus the server thread's\n"
        "(adds the executor threads Airflow's connection getter uses). late ms: last trigger's return "
        "after its (final) planned start. misfires: fired before it or after the latest start (all runs)."
    )
    for variant, ours, theirs in rows:
        last = ours[-1]
        print(
            f"{variant} N={last.triggers:,}: requests by path {last.requests_by_path}; refresh ticks to the "
            f"planned start {_median(ours, 'refreshes'):.0f}; re-plans timed out or failed "
            f"{_median(ours, 'api_errors'):,.0f}; fired before the originally planned start "
            f"{_median(ours, 'early'):,.0f} (by up to {_median(ours, 'max_early_s'):.2f} s; a re-plan moved "
            f"the start); median firing {_median(ours, 'fire_offset_s'):.2f} s after the start; building "
            f"{1e6 * _median(ours, 'build_cpu_s') / last.triggers:.0f} us/trigger (DTT "
            f"{1e6 * _median(theirs, 'build_cpu_s') / last.triggers:.0f})"
        )
        for run in (last, theirs[-1]):
            if run.warnings:
                print(f"  {run.kind} log records >= WARNING: {run.warnings}")
                for sample in run.warning_samples[:3]:
                    print(f"    e.g. {sample}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--triggers", default="1000,10000", help="comma-separated trigger counts")
    parser.add_argument("--zones", type=int, default=3, help="candidate zones (one cluster each)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--lead", type=float, default=10.0,
                        help="seconds from the run's start to the planned start")
    parser.add_argument("--slack", type=float, default=5.0, help="seconds from the planned start to the latest start")
    parser.add_argument("--replan-interval", type=float, default=1.0)
    parser.add_argument("--cache-ttl", type=float, default=None,
                        help="forecast cache lifetime (default: 0.9 x the re-plan interval)")
    parser.add_argument("--what-if-hook-memo", action="store_true",
                        help="also run each N with carbon hooks memoised per connection id (not the shipped code)")
    parser.add_argument("--before-after", action="store_true",
                        help="also run each N with shared re-plans switched off (the behaviour before 0.2.0)")
    args = parser.parse_args(argv)
    if not os.environ.get("AIRFLOW_CARBON_LEDGER_URL"):
        # the hooks record every fetched forecast, as in production: into a throwaway ledger, never the user's
        import tempfile

        folder = tempfile.mkdtemp(prefix="bench-triggers-")
        os.environ["AIRFLOW_CARBON_LEDGER_URL"] = f"sqlite:///{folder}/carbon_ledger.db"
        os.environ["AIRFLOW_CARBON_LEDGER_SPOOL"] = f"{folder}/carbon_ledger_spool.jsonl"
    if args.cache_ttl is None:
        args.cache_ttl = 0.9 * args.replan_interval
    counts = [int(x) for x in args.triggers.split(",")]
    timing = {"lead": args.lead, "slack": args.slack, "interval": args.replan_interval}
    variants: list[tuple[str, Callable[[], contextlib.AbstractContextManager[Any]]]] = []
    if args.before_after:
        variants.append(("no-share", unshared_plans))
    variants.append(("as-is", contextlib.nullcontext))
    if args.what_if_hook_memo:
        variants.append(("memo", memoised_hooks))
    rows = []
    with loopback(args.zones, args.cache_ttl) as (server, zones):
        for n in counts:
            for variant, context in variants:
                ours, theirs = [], []
                for _ in range(args.repeat):
                    with context():
                        ours.append(measure_carbon(server, n, zones, **timing))
                    # DateTimeTrigger fires as long after its run's start as ours did (median)
                    theirs.append(measure_datetime(n, lead=ours[-1].fire_offset_s, slack=args.slack))
                rows.append((variant, ours, theirs))
    report(rows, args)
    return 0 if all(r.misfires == 0 for _, ours, theirs in rows for r in (*ours, *theirs)) else 1


if __name__ == "__main__":
    sys.exit(main())
