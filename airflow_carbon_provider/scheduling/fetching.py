"""Fetch the carbon data a plan needs: one step per source, all sources at once, one time budget.

The worker (planning before a task starts, the re-check before the pod starts) and the
trigger (re-plans while a task waits) fetch through the same two functions:

- :func:`afetch_source` is the one per-source step: the forecast of a zone from a carbon
  connection, prefixed with the current value when the forecast starts after now. When the
  source refuses forecasts (:class:`~airflow_carbon_provider.exceptions.CarbonNoAccessError`,
  e.g. Electricity Maps' free plan answers 403) but serves history, the forecast is built
  from the measured history
  (:func:`~airflow_carbon_provider.core.conditioning.forecast_from_history`). With ``robust``
  (what planning asks for), the forecast is then conditioned on the zone's measured history by
  :func:`~airflow_carbon_provider.core.conditioning.condition`, the function the backtest's
  ``carbon-aware`` plans with: corrected by the latest measured value, shrunk toward the
  zone's daily profile by the forecast's error by lead, and extended past its end by the
  profile. The error by lead comes from the source itself when it knows it (a replayed
  trace's forecast model), else from the forecast skill recorded in the ledger for that
  source and zone (:func:`~airflow_carbon_provider.ledger.skill.recorded_error`, read at most
  once an hour, in a thread, within the budget), else from the calibrated default the backtest
  uses (:func:`~airflow_carbon_provider.core.forecast.realistic_sigma`). History goes through
  the hooks' shared cache (its range aligned to the hour, so every plan within the hour shares
  one entry) and is fetched alongside the forecast; if it is unavailable or late, the plan uses
  the raw forecast and says so. Each source's note lands in ``notes``.
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
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.conditioning import (
    Sigma,
    condition,
    forecast_from_history,
    sigma_from_skill,
)
from airflow_carbon_provider.core.forecast import realistic_sigma
from airflow_carbon_provider.core.signals import IntensitySeries, splice_current
from airflow_carbon_provider.exceptions import CarbonNoAccessError

__all__ = [
    "DEFAULT_PLANNING_TIMEOUT",
    "Errors",
    "Notes",
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
Notes = dict[SourceKey, str]

#: Seconds one planning step (all sources together) may take before the task plans without
#: the sources that have not answered. ``[carbon] planning_timeout`` overrides it.
DEFAULT_PLANNING_TIMEOUT = 5.0
#: How much measured history a forecast is built from when the source refuses forecasts: a
#: week if the plan serves it, else the last day (Electricity Maps' free plan).
HISTORY_SPANS = (timedelta(days=7), timedelta(days=1))
#: History ranges end at ``now`` rounded down to this, so that every plan within it asks for
#: the same range and the hooks' cache (its ``history`` TTL) serves them one fetch.
HISTORY_ALIGN = 3600.0
#: Seconds a zone's recorded forecast skill is reused before the ledger is read again.
SKILL_TTL = 3600.0
#: How far back recorded forecasts count toward a zone's skill.
SKILL_SPAN = timedelta(days=14)
DEFAULT_ERROR = "the calibrated default (NESO's error by lead, as the backtest's realistic model)"
#: Extra seconds a worker waits for cancelled fetches to wind down before it moves on.
CANCEL_GRACE = 1.0
#: The share of the budget kept back after history is due, so a late history still leaves
#: time to plan on the raw forecast.
HISTORY_MARGIN = 0.1
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
                        clock: Callable[[], datetime] | None = None, *, robust: bool = False,
                        deadline: float | None = None, notes: Notes | None = None) -> IntensitySeries:
    """Return the forecast of ``zone`` from carbon connection ``conn_id`` covering ``now``..``until``.

    :param robust: condition it on measured history (see the module doc).
    :param deadline: the event loop's time by which history must have arrived (``robust``).
    :param notes: receives what was done to the forecast, under ``(conn_id, zone)``.
    """
    from airflow_carbon_provider.hooks._registry import acarbon_hook

    key = (conn_id, zone)
    hook = await acarbon_hook(conn_id, clock=clock)
    history = asyncio.ensure_future(_ahistory(hook, zone, now)) if robust else None
    try:
        try:
            forecast = await hook.aget_forecast(zone, start=now, end=until)
        except CarbonNoAccessError as refused:
            built = await _aforecast_from_history(hook, conn_id, zone, now, until, refused, history)
            if notes is not None:
                notes[key] = "forecast built from measured history (the source refuses forecasts)"
            return built
        current = None
        if forecast.bounds[0] > now.timestamp():
            current = await hook.aget_current(zone)
            forecast = splice_current(current, forecast, now)
        if history is None:
            return forecast
        conditioned, note = await _acondition(hook, conn_id, zone, forecast, history, current, now, until, deadline)
        if notes is not None:
            notes[key] = note
        return conditioned
    finally:
        if history is not None and not history.done():
            history.cancel()


async def _ahistory(hook: Any, zone: str, now: datetime) -> IntensitySeries:
    """Return the zone's measured history up to ``now`` (aligned to the hour, so cached), a week if served."""
    end = datetime.fromtimestamp(math.floor(now.timestamp() / HISTORY_ALIGN) * HISTORY_ALIGN, timezone.utc)
    # The span less one alignment step, so it never starts before now - span (the "last day" of a free plan).
    start = end + timedelta(seconds=HISTORY_ALIGN)
    for span in HISTORY_SPANS[:-1]:  # a week when the plan serves it (a steadier profile), else the last day
        try:
            return await hook.aget_history(zone, start=start - span, end=end)
        except CarbonNoAccessError:
            continue
    return await hook.aget_history(zone, start=start - HISTORY_SPANS[-1], end=end)


async def _acondition(hook: Any, conn_id: str, zone: str, forecast: IntensitySeries,
                      history: asyncio.Future[IntensitySeries], current: IntensitySeries | None,
                      now: datetime, until: datetime, deadline: float | None) -> tuple[IntensitySeries, str]:
    """Return ``forecast`` conditioned on the zone's history, or as given with the reason, and a note."""
    loop = asyncio.get_running_loop()
    try:
        measured = await asyncio.wait_for(history, timeout=None if deadline is None else max(0.0, deadline - loop.time()))
    except asyncio.TimeoutError:
        note = "planned on the raw forecast: measured history did not arrive within the planning budget"
        log.warning("%s for zone %s from %s", note, zone, conn_id)
        return forecast, note
    except Exception as exc:  # any failure of the history call: plan on the forecast as given
        note = f"planned on the raw forecast: measured history unavailable ({_describe(exc)})"
        log.warning("%s for zone %s from %s", note, zone, conn_id)
        return forecast, note
    latest = None
    try:
        fresh = current if current is not None else await asyncio.wait_for(
            hook.aget_current(zone), timeout=None if deadline is None else max(0.0, deadline - loop.time()))
        if fresh.bounds[0] <= now.timestamp() < fresh.bounds[-1]:
            latest = fresh.value_at(now)
    except Exception as exc:  # without a fresh measurement the forecast's own value stands (no correction)
        log.debug("Latest value for zone %s from %s unavailable (%s); no near-term correction", zone, conn_id,
                  _describe(exc))
    corrected = latest is not None
    if latest is None:
        latest = forecast.value_at(now)
    sigma, error_source = await _asigma(hook, conn_id, zone, forecast.kind.value, deadline)
    try:
        conditioned = condition(forecast, measured, now, until, sigma=sigma, latest=latest)
    except Exception as exc:  # a history the profile cannot use (e.g. another signal kind)
        note = f"planned on the raw forecast: it could not be conditioned on measured history ({_describe(exc)})"
        log.warning("%s for zone %s from %s", note, zone, conn_id)
        return forecast, note
    extended = ", extended past its end by the daily profile" if forecast.bounds[-1] < until.timestamp() else ""
    basis = "latest value, daily profile" if corrected else "daily profile; no fresh latest value to correct by"
    note = f"forecast conditioned on measured history ({basis}; error by lead from {error_source}){extended}"
    log.debug("Zone %s from %s: %s", zone, conn_id, note)  # the decision's reason carries it
    return conditioned, note


_skill: dict[tuple[str, str, str], tuple[float, dict[tuple[float, float], tuple[float, int]] | None]] = {}
_skill_reads: dict[tuple[str, str, str], Future[Any]] = {}
_skill_lock = threading.Lock()


def _read_skill(key: tuple[str, str, str]) -> dict[tuple[float, float], tuple[float, int]] | None:
    from airflow_carbon_provider.ledger.forecasts import recording_enabled
    from airflow_carbon_provider.ledger.skill import recorded_error

    if not recording_enabled():
        return None
    since = datetime.now(timezone.utc) - SKILL_SPAN
    return recorded_error(key[0], key[1], key[2], since=since)


def _skill_read(key: tuple[str, str, str]) -> Future[Any]:
    """Return the running (or a new) read of ``key``'s skill; it fills the cache when done, even after a timeout."""
    with _skill_lock:
        running = _skill_reads.get(key)
        if running is not None:
            return running
        future: Future[Any] = Future()
        _skill_reads[key] = future

    def target() -> None:
        try:
            found = _read_skill(key)
        except Exception as exc:  # an absent or broken ledger: the default, and a retry after the TTL
            log.info("Recorded forecast skill for %s unavailable (%s); using the default", key, _describe(exc))
            found = None
        with _skill_lock:
            _skill[key] = (time.monotonic() + SKILL_TTL, found)
            _skill_reads.pop(key, None)
        future.set_result(found)

    threading.Thread(target=target, name="carbon-forecast-skill", daemon=True).start()
    return future


async def _asigma(hook: Any, conn_id: str, zone: str, kind: str, deadline: float | None) -> tuple[Sigma, str]:
    """Return the forecast's error by lead and where it comes from (the source, the ledger, the default)."""
    own = getattr(hook, "aforecast_error", None)
    if own is not None:
        try:
            known = await own()
        except Exception:  # the source cannot say: look further
            known = None
        if known is not None:
            return known
    key = (conn_id, zone, kind)
    cached = _skill.get(key)
    if cached is not None and cached[0] > time.monotonic():
        found = cached[1]
    else:
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(asyncio.wrap_future(_skill_read(key)),
                                           timeout=None if deadline is None else max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            return realistic_sigma, DEFAULT_ERROR + " (the ledger did not answer within the budget)"
    measured = {b: v for b, v in (found or {}).items() if v[1] > 0}
    if not measured:
        return realistic_sigma, DEFAULT_ERROR
    n = sum(v[1] for v in measured.values())
    return sigma_from_skill(measured, realistic_sigma), f"the forecast skill recorded for {conn_id} in {zone} ({n} intervals)"


async def _aforecast_from_history(hook: Any, conn_id: str, zone: str, now: datetime, until: datetime,
                                  refused: CarbonNoAccessError,
                                  pending: asyncio.Future[IntensitySeries] | None = None) -> IntensitySeries:
    """Forecast from measured history, for a source whose plan refuses forecasts but serves history."""
    try:
        history = await (pending if pending is not None else _ahistory(hook, zone, now))
    except CarbonNoAccessError:
        raise refused from None
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
    clock: Callable[[], datetime] | None = None, robust: bool = True, notes: Notes | None = None,
) -> tuple[Series, Errors]:
    """Fetch every distinct source at once; give up on those still running after ``budget`` seconds.

    With ``robust`` (planning's default) each forecast is conditioned on its zone's measured
    history, which must arrive a little before the budget ends (else the raw forecast is used);
    ``notes`` receives what was done to each source's forecast.
    """
    keys = list(dict.fromkeys(sources))
    deadline = asyncio.get_running_loop().time() + max(budget, 0.0) * (1.0 - HISTORY_MARGIN)
    tasks = {key: asyncio.ensure_future(afetch_source(key[0], key[1], now, until, clock, robust=robust,
                                                      deadline=deadline, notes=notes)) for key in keys}
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
    clock: Callable[[], datetime] | None = None, robust: bool = True, notes: Notes | None = None,
) -> tuple[Series, Errors]:
    """Run :func:`afetch_sources` for a worker, bounded by ``budget`` whatever happens inside."""
    keys = list(dict.fromkeys(sources))

    def run() -> tuple[Series, Errors]:
        return asyncio.run(afetch_sources(keys, now, until, budget=budget, clock=clock, robust=robust, notes=notes))

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
