"""Fetch the carbon data a plan needs: one step per source, all sources at once, one time budget.

The worker (planning before a task starts, the re-check before the pod starts) and the
trigger (re-plans while a task waits) fetch through the same two functions:

- :func:`afetch_source` is the one per-source step: the forecast of a zone from a carbon
  connection, prefixed with the current value when the forecast starts after now. When the
  source refuses forecasts (:class:`~airflow_carbon_provider.exceptions.CarbonNoAccessError`,
  e.g. Electricity Maps' free plan answers 403) but serves history, the forecast is built
  from the measured history
  (:func:`~airflow_carbon_provider.core.conditioning.forecast_from_history`).
- :func:`afetch_sources` runs every distinct (connection, zone) at once and stops waiting
  when the budget is spent; a source that failed or did not answer in time becomes an error
  string, and the caller plans without it (or falls open). One rule for errors: any
  ``Exception`` from a source is that source's error, never the task's.

:func:`fetch_sources` is the synchronous entry for workers. It runs the asynchronous fetch
on an event loop in a daemon thread and waits at most the budget (plus a short grace for
cancellation), so a carbon API that hangs, or a connection read that hangs, can never hold
a worker slot past the budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon_provider.core.conditioning import forecast_from_history
from airflow_carbon_provider.core.signals import IntensitySeries, splice_current
from airflow_carbon_provider.exceptions import CarbonNoAccessError

__all__ = [
    "DEFAULT_PLANNING_TIMEOUT",
    "Errors",
    "Series",
    "SourceKey",
    "afetch_source",
    "afetch_sources",
    "fetch_sources",
    "planning_timeout_default",
    "run_bounded",
]

log = logging.getLogger(__name__)

SourceKey = tuple[str, str]  # (carbon connection id, zone)
Series = dict[SourceKey, IntensitySeries]
Errors = dict[SourceKey, str]

#: Seconds one planning step (all sources together) may take before the task plans without
#: the sources that have not answered. ``[carbon] planning_timeout`` overrides it.
DEFAULT_PLANNING_TIMEOUT = 5.0
#: How much measured history a forecast is built from when the source refuses forecasts: a
#: week if the plan serves it, else the last day (Electricity Maps' free plan).
HISTORY_SPANS = (timedelta(days=7), timedelta(days=1))
#: Extra seconds a worker waits for cancelled fetches to wind down before it moves on.
CANCEL_GRACE = 1.0
#: Bounds on a planning budget (seconds); a value outside is refused with the range.
MIN_PLANNING_TIMEOUT, MAX_PLANNING_TIMEOUT = 0.1, 300.0


def planning_timeout_default() -> float:
    """Return ``[carbon] planning_timeout`` (seconds), else :data:`DEFAULT_PLANNING_TIMEOUT`."""
    try:
        from airflow_carbon_provider.ledger.config import conf_get

        raw = conf_get("planning_timeout")
    except Exception:  # config unreadable: the built-in default
        raw = None
    if raw in (None, ""):
        return DEFAULT_PLANNING_TIMEOUT
    try:
        value = float(str(raw))
    except ValueError:
        value = math.nan
    if not MIN_PLANNING_TIMEOUT <= value <= MAX_PLANNING_TIMEOUT:
        log.warning("[carbon] planning_timeout %r is not a number of seconds in %g..%g; using %g", raw,
                    MIN_PLANNING_TIMEOUT, MAX_PLANNING_TIMEOUT, DEFAULT_PLANNING_TIMEOUT)
        return DEFAULT_PLANNING_TIMEOUT
    return value


async def afetch_source(conn_id: str, zone: str, now: datetime, until: datetime,
                        clock: Callable[[], datetime] | None = None) -> IntensitySeries:
    """Return the forecast of ``zone`` from carbon connection ``conn_id`` covering ``now``..``until``."""
    from airflow_carbon_provider.hooks._registry import acarbon_hook

    hook = await acarbon_hook(conn_id, clock=clock)
    try:
        forecast = await hook.aget_forecast(zone, start=now, end=until)
    except CarbonNoAccessError as refused:
        return await _aforecast_from_history(hook, conn_id, zone, now, until, refused)
    if forecast.bounds[0] > now.timestamp():
        forecast = splice_current(await hook.aget_current(zone), forecast, now)
    return forecast


async def _aforecast_from_history(hook: Any, conn_id: str, zone: str, now: datetime, until: datetime,
                                  refused: CarbonNoAccessError) -> IntensitySeries:
    """Forecast from measured history, for a source whose plan refuses forecasts but serves history."""
    history = None
    for span in HISTORY_SPANS:  # a week when the plan serves it (a steadier profile), else the last day
        try:
            history = await hook.aget_history(zone, start=now - span, end=now)
            break
        except CarbonNoAccessError:
            continue
    if history is None:
        raise refused
    latest = None
    try:
        current = await hook.aget_current(zone)
        if current.bounds[0] <= now.timestamp() < current.bounds[-1]:
            latest = current.value_at(now)
    except Exception as exc:  # the history's last value stands in for the latest
        log.info("Latest value for zone %s from %s unavailable (%s); using the history's last", zone, conn_id,
                 _describe(exc))
    log.info("%s refuses forecasts for zone %s (%s); forecasting from its measured history", conn_id, zone, refused)
    return forecast_from_history(history, now, until, latest=latest)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def afetch_sources(
    sources: Iterable[SourceKey], now: datetime, until: datetime, *, budget: float,
    clock: Callable[[], datetime] | None = None,
) -> tuple[Series, Errors]:
    """Fetch every distinct source at once; give up on those still running after ``budget`` seconds."""
    keys = list(dict.fromkeys(sources))
    tasks = {key: asyncio.ensure_future(afetch_source(key[0], key[1], now, until, clock)) for key in keys}
    series: Series = {}
    errors: Errors = {}
    if not tasks:
        return series, errors
    done, pending = await asyncio.wait(tasks.values(), timeout=max(budget, 0.0))
    for task in pending:
        task.cancel()
    for key, task in tasks.items():
        conn_id, zone = key
        if task in pending:
            errors[key] = f"TimeoutError: no answer within the planning budget of {budget:g} s"
        elif task.exception() is not None:
            errors[key] = _describe(task.exception())  # type: ignore[arg-type]
        else:
            series[key] = task.result()
            continue
        log.warning("Carbon data for zone %s from %s is unavailable: %s", zone, conn_id, errors[key])
    if pending:
        await asyncio.wait(pending, timeout=CANCEL_GRACE)
    return series, errors


def run_bounded(func: Callable[[], Any], budget: float, what: str) -> Any:
    """Run ``func`` in a daemon thread; return its result, or raise ``TimeoutError`` after ``budget`` s.

    The thread is abandoned (not killed) when it overruns: it holds no lock of ours and dies
    with the process. Exceptions from ``func`` are re-raised here.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"carbon-{what}", daemon=True)
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not finish within {budget:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def fetch_sources(
    sources: Iterable[SourceKey], now: datetime, until: datetime, *, budget: float,
    clock: Callable[[], datetime] | None = None,
) -> tuple[Series, Errors]:
    """Run :func:`afetch_sources` for a worker, bounded by ``budget`` whatever happens inside."""
    keys = list(dict.fromkeys(sources))

    def run() -> tuple[Series, Errors]:
        return asyncio.run(afetch_sources(keys, now, until, budget=budget, clock=clock))

    try:
        return run_bounded(run, budget + 2 * CANCEL_GRACE, "carbon data fetch")
    except TimeoutError:
        message = f"TimeoutError: no answer within the planning budget of {budget:g} s"
        log.warning("Carbon data fetch overran its budget of %g s; planning without %s", budget,
                    ", ".join(f"{z} from {c}" for c, z in keys))
        return {}, {key: message for key in keys}


def until_for(latest_start: datetime, now: datetime, duration: timedelta) -> datetime:
    """Return how far ahead a plan needs data: the end of a run starting at the latest start."""
    return max(latest_start, now) + duration
