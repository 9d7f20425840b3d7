"""Every forecast the hooks fetch, kept in the ledger: recorded off the task's path, bounded, deduplicated.

The hooks hand each forecast they actually fetch (a cache miss, so one fetch serves every
caller of a key) to :data:`recorder`, the process's :class:`ForecastRecorder`.
:meth:`~ForecastRecorder.record` only turns the series into a row and puts it in a small
in-process buffer (at most :data:`MAX_PENDING` forecasts; the oldest is dropped beyond):
no database call, no lock held across I/O, never an exception. A daemon thread writes the
buffer to ``carbon_forecasts`` with ``INSERT ... ON CONFLICT DO NOTHING`` on (source, zone,
signal_kind, issued_at), so the same forecast recorded by several processes is stored
once, and deletes rows fetched longer ago than ``[carbon] forecast_retention`` in the same
transaction (an indexed range delete, usually of nothing).
A ledger that is down costs a warning and a retry with backoff (up to a minute); the
forecasts wait in the bounded buffer meanwhile and planning never waits for them.

Configuration: ``[carbon] record_forecasts`` (default true) and ``[carbon]
forecast_retention`` (days, default 30; a duration such as ``12h`` is accepted too), or
``AIRFLOW__CARBON__RECORD_FORECASTS`` / ``AIRFLOW__CARBON__FORECAST_RETENTION``.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_carbon_provider.ledger.config import conf_get

if TYPE_CHECKING:
    from airflow_carbon_provider.core.signals import IntensitySeries
    from airflow_carbon_provider.ledger.store import Ledger

__all__ = [
    "DEFAULT_RETENTION",
    "MAX_PENDING",
    "ForecastRecorder",
    "forecast_row",
    "forecast_series",
    "read_forecasts",
    "recorder",
    "recording_enabled",
    "retention",
    "store_forecasts",
]

log = logging.getLogger(__name__)
UTC = timezone.utc
DEFAULT_RETENTION = timedelta(days=30)
MAX_PENDING = 512
"""Forecasts waiting for the ledger in one process; beyond this the oldest is dropped (counted)."""
MAX_BACKOFF = 60.0
_FALSE = ("0", "false", "no", "off")

Key = tuple[str, str, str, datetime]


def recording_enabled() -> bool:
    """Return ``[carbon] record_forecasts`` (default true)."""
    raw = conf_get("record_forecasts")
    return raw is None or raw.strip().lower() not in _FALSE


def retention() -> timedelta:
    """Return ``[carbon] forecast_retention``: days (``30``) or a duration (``12h``); default 30 days."""
    raw = conf_get("forecast_retention")
    if raw is None:
        return DEFAULT_RETENTION
    try:
        value = timedelta(days=float(raw)) if raw.replace(".", "", 1).isdigit() else _duration(raw)
    except (ValueError, OverflowError):
        value = timedelta(0)
    if value <= timedelta(0):
        log.warning("[carbon] forecast_retention %r is not a positive number of days or a duration (e.g. 30 or "
                    "12h); keeping %s", raw, DEFAULT_RETENTION)
        return DEFAULT_RETENTION
    return value


def _duration(text: str) -> timedelta:
    from airflow_carbon_provider.core.durations import parse_duration

    return parse_duration(text, "[carbon] forecast_retention")


def forecast_row(series: IntensitySeries, *, source: str, provider: str | None = None, signal: str | None = None,
                 fetched_at: datetime) -> dict[str, Any]:
    """Return the ``carbon_forecasts`` row of one fetched forecast (``issued_at``: the fetch time if unknown)."""
    bounds, values = series.bounds, series.values
    start = bounds[0]
    return {
        "source": source,
        "zone": series.zone,
        "signal_kind": str(getattr(series.kind, "value", series.kind)),
        "issued_at": (series.issued_at or fetched_at).astimezone(UTC),
        "fetched_at": fetched_at.astimezone(UTC),
        "provider": provider,
        "signal": signal or None,
        "start": datetime.fromtimestamp(start, UTC),
        "end": datetime.fromtimestamp(bounds[-1], UTC),
        "intervals": len(values),
        "offsets_s": [round(b - start) for b in bounds],
        "values": [None if math.isnan(v) else round(float(v), 3) for v in values],
    }


def _key(row: Mapping[str, Any]) -> Key:
    return (row["source"], row["zone"], row["signal_kind"], row["issued_at"])


def store_forecasts(ledger: Ledger, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None,
                    keep: timedelta | None = None) -> int:
    """Insert forecasts not stored yet, delete those fetched longer ago than retention; return how many are new.

    Raises the database's error (the recorder retries). ``keep`` defaults to :func:`retention`.
    """
    from sqlalchemy import Table, delete, select
    from sqlalchemy.dialects import postgresql, sqlite

    from airflow_carbon_provider.ledger.models import FORECAST_KEY, ForecastRecord

    table: Table = ForecastRecord.__table__  # type: ignore[assignment]
    now = now or datetime.now(UTC)
    cutoff = now - (keep or retention())
    batch = list({_key(r): dict(r) for r in rows if r["fetched_at"] >= cutoff}.values())
    ledger.migrate()
    new = 0
    with ledger.engine.begin() as conn:
        deleted = conn.execute(delete(table).where(table.c.fetched_at < cutoff)).rowcount or 0
        dialect = conn.dialect.name
        for row in batch:  # a batch is a few forecasts: one statement each, so rowcount says which were new
            if dialect in ("postgresql", "sqlite"):
                insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
                stmt = insert(table).values(**row).on_conflict_do_nothing(index_elements=list(FORECAST_KEY))
                new += conn.execute(stmt).rowcount or 0
            else:  # pragma: no cover - other databases: skip the keys already there
                where = [table.c[name] == row[name] for name in FORECAST_KEY]
                if conn.execute(select(table.c.id).where(*where)).first() is None:
                    conn.execute(table.insert().values(**row))
                    new += 1
    if deleted > 0:
        log.info("Carbon ledger: %d forecast(s) fetched before %s deleted", deleted, cutoff.isoformat())
    return new


def read_forecasts(ledger: Ledger, *, source: str | None = None, zone: str | None = None,
                   signal_kind: str | None = None, since: datetime | None = None,
                   until: datetime | None = None) -> list[dict[str, Any]]:
    """Return recorded forecasts (dicts of columns), oldest issue first, optionally filtered."""
    from sqlalchemy import select

    from airflow_carbon_provider.ledger.models import ForecastRecord

    table = ForecastRecord.__table__
    query = select(table)
    for name, value in (("source", source), ("zone", zone), ("signal_kind", signal_kind)):
        if value:
            query = query.where(table.c[name] == value)
    if since is not None:
        query = query.where(table.c.issued_at >= since)
    if until is not None:
        query = query.where(table.c.issued_at < until)
    ledger.migrate()
    with ledger.engine.connect() as conn:
        rows = conn.execute(query.order_by(table.c.issued_at, table.c.id))
        return [dict(row._mapping) for row in rows]


def forecast_series(row: Mapping[str, Any]) -> IntensitySeries:
    """Return the :class:`~airflow_carbon_provider.core.signals.IntensitySeries` a recorded row holds (gaps as NaN)."""
    from airflow_carbon_provider.core.signals import IntensitySeries

    start = row["start"].timestamp()
    values = [math.nan if v is None else float(v) for v in row["values"]]
    return IntensitySeries.from_arrays(
        row["zone"], row["signal_kind"], [start + float(o) for o in row["offsets_s"]], values,
        source=str(row["source"]), issued_at=row["issued_at"], is_forecast=True, allow_gaps=True,
    )


class ForecastRecorder:
    """A bounded buffer of fetched forecasts and the daemon thread that writes it to the ledger.

    :param url: the ledger URL; default: resolved at each write as the ledger's configuration says.
    :param max_pending: the buffer's bound (oldest dropped beyond, counted in ``dropped``).
    """

    def __init__(self, url: str | None = None, *, max_pending: int = MAX_PENDING) -> None:
        self.url = url
        self.max_pending = max_pending
        self.recorded = self.stored = self.dropped = self.failures = 0
        self._pending: OrderedDict[Key, dict[str, Any]] = OrderedDict()
        self._seen: OrderedDict[Key, None] = OrderedDict()  # recently stored: not handed over again
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = self._retry_at = 0.0
        self._streak = 0
        self._closed = False

    def record(self, series: IntensitySeries, *, source: str, provider: str | None = None,
               signal: str | None = None) -> None:
        """Queue one fetched forecast for the ledger; cheap, never blocks on I/O, never raises."""
        try:
            if not series.is_forecast or not recording_enabled():
                return
            row = forecast_row(series, source=source, provider=provider, signal=signal,
                               fetched_at=datetime.now(UTC))
            key = _key(row)
            with self._lock:
                if key in self._seen or key in self._pending:
                    return
                while len(self._pending) >= self.max_pending:
                    self._pending.popitem(last=False)
                    self.dropped += 1
                self._pending[key] = row
                self.recorded += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="carbon-forecast-recorder",
                                                    daemon=True)
                    self._thread.start()
            self._wake.set()
        except Exception as exc:  # recording is best effort: never the fetch's problem
            log.debug("Carbon ledger: forecast not recorded (%s)", type(exc).__name__)

    def pending(self) -> int:
        """Return how many forecasts wait for the ledger."""
        return len(self._pending)

    def flush(self, timeout: float = 5.0) -> bool:
        """Write the buffer now (skipping any backoff); wait up to ``timeout`` s; return whether it is empty.

        Returns False early when a write fails meanwhile (the forecasts stay queued).
        """
        failures, deadline = self.failures, time.monotonic() + timeout
        self._urgent.set()
        self._wake.set()
        while self._pending and self.failures == failures and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._pending

    def close(self) -> None:
        """Stop the writer thread (queued forecasts are dropped); for tests and shutdown."""
        self._closed = True
        self._urgent.set()
        self._wake.set()

    def _ledger(self) -> Ledger:
        from airflow_carbon_provider.ledger.store import Ledger

        return Ledger(self.url)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            delay = self._retry_at - time.monotonic()
            if delay > 0:  # after a failure: wait out the backoff unless flush() asks now
                self._urgent.wait(delay)
            self._urgent.clear()
            if self._closed:
                return
            with self._lock:
                batch = list(self._pending.items())
            if not batch:
                continue
            try:
                self.stored += store_forecasts(self._ledger(), [row for _, row in batch])
            except Exception as exc:
                self.failures += 1
                self._backoff = min(MAX_BACKOFF, max(1.0, 2 * self._backoff))
                self._retry_at = time.monotonic() + self._backoff
                from airflow_carbon_provider.ledger.secrets import redact_text

                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                # one warning per outage (and one a hundred failures later), not one per retry
                level = logging.WARNING if self._streak % 100 == 0 else logging.DEBUG
                self._streak += 1
                log.log(level, "Carbon ledger: %d forecast(s) not recorded yet (%s: %s); retrying in %g s",
                        len(batch), type(exc).__name__, redact_text(first)[:200], self._backoff)
                self._wake.set()  # retry after the backoff even if nothing new arrives
                continue
            self._backoff, self._retry_at, self._streak = 0.0, 0.0, 0
            with self._lock:
                for key, _ in batch:
                    self._pending.pop(key, None)
                    self._seen[key] = None
                while len(self._seen) > 4 * self.max_pending:
                    self._seen.popitem(last=False)


recorder = ForecastRecorder()
"""The process's recorder, which every hook hands its fetched forecasts to."""


def _flush_at_exit() -> None:  # a worker that planned and deferred: give the write a moment, no more
    if recorder.pending():
        recorder.flush(timeout=1.0)


atexit.register(_flush_at_exit)
