"""Reservations: planned load on candidate clusters, shared by every scheduler, triggerer and worker.

A planner that picks a cluster and a start reserves its task's demand over ``[start, end)``
in ``carbon_reservations`` before it commits; other planners read those reservations as
load already placed (:func:`active`), so a hundred tasks do not all start on the one green
cluster at the same minute. The API is synchronous (the trigger calls it in a thread):

* :func:`reserve` checks and writes in one transaction: the peak concurrent load of the
  other holders' unexpired reservations on the cluster within the window, plus the demand,
  must fit the capacity of every resource the capacity names. A refusal is a result that
  names the full resource and where it is full, never an exception; so is a database that
  cannot be reached (``unavailable``: the caller plans without coordination and says so).
* :func:`release` at the task's start and finish (idempotent), :func:`active` for the
  planner, :func:`reserved_load` for the UI's chart, :func:`expire` for housekeeping.

Locking, so that concurrent reservers never over-reserve a cluster
(:mod:`~airflow_carbon_provider.ledger.transactions`): on PostgreSQL a transaction-scoped
advisory lock on the cluster's name, taken before reading, at READ COMMITTED; on SQLite
``BEGIN IMMEDIATE`` (the write lock). Lock and connection failures are retried a bounded
number of times within a wall-clock budget.

Expiry: a holder that crashes never releases, so every reservation carries ``expires_at``,
by default its end plus :data:`DEFAULT_GRACE` (a task that has not released an hour after
its planned end has crashed or overrun, and stops counting). An expired reservation counts
for nobody from that instant and its row is deleted by the next :func:`reserve` on its
cluster, or by :func:`expire`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from airflow_carbon_provider.core.resources import POD, Booking, Resources, format_resources
from airflow_carbon_provider.ledger.config import redact_url_secrets
from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
from airflow_carbon_provider.ledger.models import ReservationRecord
from airflow_carbon_provider.ledger.transactions import (
    CONNECT_ATTEMPTS,
    MAX_ATTEMPTS,
    Unavailable,
    first_line,
    locked_transaction,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from airflow_carbon_provider.ledger.store import Ledger, RunKey

__all__ = [
    "CONNECT_ATTEMPTS",
    "DEFAULT_BUDGET",
    "DEFAULT_GRACE",
    "MAX_ATTEMPTS",
    "ReservationResult",
    "active",
    "expire",
    "held_clusters",
    "holder_name",
    "peak_load",
    "release",
    "reserve",
    "reserved_load",
]

log = logging.getLogger(__name__)
UTC = timezone.utc

DEFAULT_GRACE = timedelta(hours=1)
"""How long after its end a reservation that was never released still counts."""
DEFAULT_BUDGET = 10.0
"""Seconds one call may spend, retries included, before it answers ``unavailable``."""
EXPIRE_BATCH = 500
"""Expired rows one transaction deletes at most: housekeeping never holds a lock for long."""
MAX_STEPS = 10_000
_EPS = 1e-9
_TABLE: Table = ReservationRecord.__table__  # type: ignore[assignment]

Status = Literal["reserved", "refused", "unavailable"]


@dataclass(frozen=True)
class ReservationResult:
    """What :func:`reserve` did: ``reserved``, ``refused`` (a resource is full) or ``unavailable``.

    For a refusal, ``resource`` is the full resource, ``peak`` the other holders' highest
    concurrent load of it within the window (from ``peak_start`` to ``peak_end``),
    ``capacity`` its capacity, and ``held_by`` the holders of that peak. ``message`` says it
    all in one line, the database URL masked.
    """

    status: Status
    holder: str
    cluster: str
    start: datetime
    end: datetime
    demand: Mapping[str, float]
    message: str
    expires_at: datetime | None = None
    resource: str | None = None
    peak: float | None = None
    capacity: float | None = None
    peak_start: datetime | None = None
    peak_end: datetime | None = None
    held_by: tuple[str, ...] = ()
    attempts: int = 0
    elapsed_s: float = 0.0

    @property
    def reserved(self) -> bool:
        """Return whether the reservation is held now."""
        return self.status == "reserved"

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (instants as ISO-8601 UTC), e.g. for the decision record."""
        out: dict[str, Any] = {}
        for name in ("status", "holder", "cluster", "start", "end", "message", "expires_at", "resource", "peak",
                     "capacity", "peak_start", "peak_end", "attempts", "elapsed_s"):
            value = getattr(self, name)
            out[name] = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value
        out["demand"] = dict(self.demand)
        out["held_by"] = list(self.held_by)
        return out


# -- pure helpers ---------------------------------------------------------------------------------


def holder_name(holder: RunKey | str) -> str:
    """Return the stored name of a holder: a free-form name as is, a task try as ``task:dag/run/task/map/try``."""
    if isinstance(holder, str):
        if not holder.strip():
            raise ValueError("a reservation holder must be a RunKey or a non-empty name")
        return holder
    parts = (holder.dag_id, holder.run_id, holder.task_id, holder.map_index, holder.try_number)
    return "task:" + "/".join(quote(str(part), safe="") for part in parts)


def _key_columns(holder: RunKey | str) -> dict[str, Any]:
    if isinstance(holder, str):
        return {"dag_id": None, "run_id": None, "task_id": None, "map_index": None, "try_number": None}
    return holder.as_dict()


def _instant(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), got {value!r}")
    return value.astimezone(UTC)


def _amounts(spec: Mapping[str, Any] | None, what: str) -> dict[str, float] | None:
    if spec is None:
        return None
    out: dict[str, float] = {}
    for key, value in spec.items():
        amount = float(value)
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"{what}[{key!r}] must be a finite amount >= 0, got {value!r}")
        out[str(key)] = amount
    return out


def peak_load(bookings: Iterable[tuple[float, float, Mapping[str, float]]], start: float, end: float,
              resource: str) -> tuple[float, float, float]:
    """Return ``(peak, from, to)``: the highest load of ``resource`` held at once within ``[start, end)``.

    ``bookings`` are ``(start, end, amounts)`` in epoch seconds, each holding its amount over
    its half-open interval; ``from``/``to`` is the first stretch where the peak is held
    (the window itself when nothing is). Two bookings that overlap the window but not each
    other add nothing to each other's peak.
    """
    events: list[tuple[float, float]] = []
    for b_start, b_end, amounts in bookings:
        lo, hi = max(b_start, start), min(b_end, end)
        amount = float(amounts.get(resource, 0.0))
        if lo < hi and amount > 0:
            events += [(lo, amount), (hi, -amount)]
    events.sort()  # at one instant, releases (negative) come before new holds: intervals are half-open
    peak, level, where = 0.0, 0.0, (start, end)
    for i, (at, change) in enumerate(events):
        level += change
        following = events[i + 1][0] if i + 1 < len(events) else end
        if following > at and level > peak + _EPS:
            peak, where = level, (at, following)
    return peak, where[0], where[1]


def _span(lo: datetime, hi: datetime) -> str:
    if hi - lo < timedelta(days=1) and lo.second == hi.second == 0:
        return f"{lo:%Y-%m-%d %H:%M}-{hi:%H:%M} UTC"
    return f"{lo:%Y-%m-%dT%H:%M:%SZ} to {hi:%Y-%m-%dT%H:%M:%SZ}"


def _amount(resource: str, value: float) -> str:
    return format_resources({resource: value}).split(" ", 1)[1]


def _get_ledger(ledger: Ledger | None) -> Ledger:
    if ledger is not None:
        return ledger
    from airflow_carbon_provider.ledger.store import get_ledger

    return get_ledger()


def _held(conn: Connection, cluster: str, now: datetime) -> int:
    query = select(func.count()).select_from(_TABLE).where(_TABLE.c.cluster == cluster, _TABLE.c.expires_at > now)
    return int(conn.execute(query).scalar_one())


def _delete_expired(conn: Connection, now: datetime, cluster: str | None, limit: int) -> list[str]:
    """Delete up to ``limit`` reservations expired at ``now`` (of one cluster, or any); return each one's cluster."""
    query = select(_TABLE.c.id, _TABLE.c.cluster).where(_TABLE.c.expires_at <= now)
    if cluster is not None:
        query = query.where(_TABLE.c.cluster == cluster)
    rows = conn.execute(query.order_by(_TABLE.c.id).limit(limit)).all()
    if rows:
        conn.execute(delete(_TABLE).where(_TABLE.c.id.in_([row.id for row in rows])))
    return [row.cluster for row in rows]


def _overlapping(conn: Connection, clusters: Sequence[str], start: datetime, end: datetime, now: datetime,
                 exclude: str | None) -> list[Any]:
    query = select(_TABLE.c.holder, _TABLE.c.cluster, _TABLE.c.start, _TABLE.c.end, _TABLE.c.resources).where(
        _TABLE.c.cluster.in_(list(clusters)), _TABLE.c.end > start, _TABLE.c.start < end,
        _TABLE.c.expires_at > now)
    if exclude is not None:
        query = query.where(_TABLE.c.holder != exclude)
    return list(conn.execute(query.order_by(_TABLE.c.start, _TABLE.c.id)).all())


def _upsert(conn: Connection, values: dict[str, Any]) -> None:
    dialect = conn.dialect.name
    changes = [name for name in values if name not in ("holder", "created_at")]
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(_TABLE).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["holder"],
                                                set_={name: stmt.excluded[name] for name in changes}))
        return
    found = conn.execute(select(_TABLE.c.id).where(_TABLE.c.holder == values["holder"])).first()  # pragma: no cover
    if found is None:  # pragma: no cover - other databases
        conn.execute(_TABLE.insert().values(**values))
    else:  # pragma: no cover
        conn.execute(_TABLE.update().where(_TABLE.c.id == found.id).values(**{n: values[n] for n in changes}))


def _emit_held(counts: Mapping[str, int]) -> None:
    from airflow_carbon_provider.metrics import emit_reservations_held

    for cluster in sorted(counts):
        emit_reservations_held(cluster, counts[cluster])


# -- the API --------------------------------------------------------------------------------------


def reserve(holder: RunKey | str, cluster: str, start: datetime, end: datetime, demand: Resources = POD, *,
            capacity: Resources | None, now: datetime | None = None, expires: datetime | timedelta | None = None,
            ledger: Ledger | None = None, budget: float = DEFAULT_BUDGET) -> ReservationResult:
    """Reserve ``demand`` on ``cluster`` over ``[start, end)`` for ``holder``, if it fits; move its reservation.

    In one transaction under the cluster's lock: read the other holders' unexpired
    reservations on ``cluster`` that overlap the window, check that for every resource
    ``capacity`` names, their peak concurrent load plus ``demand`` fits, and insert or move
    (upsert by holder) this holder's reservation. The holder's own reservation, wherever it
    is, never counts against itself. A refused move leaves the holder's reservation as it was.

    Never raises for a refusal or a database failure: returns ``refused`` naming the full
    resource, or ``unavailable`` within ``budget`` seconds (then plan without coordination).
    Raises ``ValueError`` for arguments no database could help with (naive or reversed
    instants, negative amounts).

    :param holder: a task try (:class:`~airflow_carbon_provider.ledger.store.RunKey`) or a free-form name.
    :param cluster: the candidate key, e.g. ``k8s_gb`` or ``k8s@ctx[pool=a]``.
    :param demand: what the task holds while it runs (default one pod).
    :param capacity: what the cluster can take; a resource it leaves out is unlimited; None: no check.
    :param now: the instant expiry is judged at (default: the wall clock).
    :param expires: when the reservation stops counting if never released: an instant, or a
        grace after ``end`` (default :data:`DEFAULT_GRACE`).
    :param ledger: the ledger (default: the configured one).
    :param budget: wall-clock seconds for the whole call, retries included (libpq waits at least 2 s to connect).
    """
    began = time.monotonic()
    start, end = _instant(start, "start"), _instant(end, "end")
    if end <= start:
        raise ValueError(f"a reservation must end after it starts, got {start.isoformat()} to {end.isoformat()}")
    now = _instant(now, "now") if now is not None else datetime.now(UTC)
    wanted = _amounts(demand, "demand") or {}
    limits = _amounts(capacity, "capacity")
    if isinstance(expires, datetime):
        expires_at = _instant(expires, "expires")
    else:
        grace = DEFAULT_GRACE if expires is None else expires
        if grace < timedelta(0):
            raise ValueError(f"expires as a grace after the end must be >= 0, got {grace}")
        expires_at = end + grace
    name = holder_name(holder)
    base: dict[str, Any] = {"holder": name, "cluster": cluster, "start": start, "end": end, "demand": wanted}

    def work(conn: Connection) -> dict[str, Any]:
        gone = _delete_expired(conn, now, cluster, EXPIRE_BATCH)
        others = _overlapping(conn, [cluster], start, end, now, exclude=name)
        bookings = [(r.start.timestamp(), r.end.timestamp(), r.resources or {}) for r in others]
        for resource in sorted(limits or {}, key=lambda k: (k != "pods", k)):
            asked = wanted.get(resource, 0.0)
            if asked <= 0:
                continue  # asking none of it cannot overfill it, even if others already have
            peak, lo, hi = peak_load(bookings, start.timestamp(), end.timestamp(), resource)
            if peak + asked > limits[resource] * (1 + _EPS) + _EPS:  # type: ignore[index]
                held_by = tuple(r.holder for r in others if r.start.timestamp() < hi and r.end.timestamp() > lo
                                and (r.resources or {}).get(resource, 0) > 0)
                return {"refused": (resource, peak, lo, hi, held_by), "held": {c: _held(conn, c, now) for c in set(gone)}}
        before = conn.execute(select(_TABLE.c.cluster).where(_TABLE.c.holder == name)).scalar_one_or_none()
        _upsert(conn, {"holder": name, **_key_columns(holder), "cluster": cluster, "start": start, "end": end,
                       "resources": wanted, "expires_at": expires_at, "created_at": now, "updated_at": now})
        touched = {cluster, *gone, *([before] if before else [])}
        return {"refused": None, "held": {c: _held(conn, c, now) for c in touched}}

    led: Ledger | None = None
    try:
        led = _get_ledger(ledger)
        outcome, attempts = locked_transaction(led, [cluster], budget, work)
    except Unavailable as exc:
        message = f"{cluster}: reservations unavailable, planning without coordination: {exc}"
        log.warning("Carbon reservations: %s", message)
        return ReservationResult("unavailable", **base, message=message, attempts=exc.attempts,
                                 elapsed_s=time.monotonic() - began)
    except Exception as exc:  # never the task's problem: plan without coordination, say why
        why = redact_url_secrets(first_line(exc), led.url) if led is not None else first_line(exc)
        message = f"{cluster}: reservations unavailable, planning without coordination: {why}"
        log.warning("Carbon reservations: %s", message, exc_info=True)
        return ReservationResult("unavailable", **base, message=message, elapsed_s=time.monotonic() - began)
    _emit_held(outcome["held"])
    elapsed = time.monotonic() - began
    if outcome["refused"] is not None:
        resource, peak, lo, hi, held_by = outcome["refused"]
        limit = limits[resource]  # type: ignore[index]
        lo_at, hi_at = datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
        asked = _amount(resource, wanted[resource])
        if peak > 0:
            message = (f"{cluster}: {resource} {_amount(resource, peak)} of {_amount(resource, limit)} reserved at "
                       f"{_span(lo_at, hi_at)}; {asked} more does not fit")
        else:
            message = f"{cluster}: {resource} {asked} asked for is more than its capacity {_amount(resource, limit)}"
        from airflow_carbon_provider.metrics import emit_reservation_refused

        emit_reservation_refused(cluster, resource)
        log.info("Carbon reservations: %s refused: %s", name, message)
        return ReservationResult("refused", **base, message=message, resource=resource, peak=peak, capacity=limit,
                                 peak_start=lo_at, peak_end=hi_at, held_by=held_by, attempts=attempts,
                                 elapsed_s=elapsed)
    message = (f"{cluster}: reserved {format_resources(wanted)} at {_span(start, end)} for {name} "
               f"(expires {expires_at:%Y-%m-%dT%H:%M:%SZ})")
    return ReservationResult("reserved", **base, message=message, expires_at=expires_at, attempts=attempts,
                             elapsed_s=elapsed)


def release(holder: RunKey | str, *, now: datetime | None = None, ledger: Ledger | None = None,
            budget: float = DEFAULT_BUDGET) -> int | None:
    """Delete the holder's reservation (at its task's start and finish); idempotent, never raises.

    :return: 1 if a reservation was released, 0 if the holder held none, None if the
        database could not be used (logged; the reservation then expires by itself).
    """
    name = holder_name(holder)
    now = _instant(now, "now") if now is not None else datetime.now(UTC)

    def work(conn: Connection) -> dict[str, int]:
        cluster = conn.execute(select(_TABLE.c.cluster).where(_TABLE.c.holder == name)).scalar_one_or_none()
        if cluster is None:
            return {}
        conn.execute(delete(_TABLE).where(_TABLE.c.holder == name))
        return {cluster: _held(conn, cluster, now)}

    led: Ledger | None = None
    try:
        led = _get_ledger(ledger)
        held, _ = locked_transaction(led, [], budget, work, write=True)
    except Unavailable as exc:
        log.warning("Carbon reservations: %s not released (it expires by itself): %s", name, exc)
        return None
    except Exception as exc:
        why = redact_url_secrets(first_line(exc), led.url) if led is not None else first_line(exc)
        log.warning("Carbon reservations: %s not released (it expires by itself): %s", name, why)
        return None
    _emit_held(held)
    return len(held)


def _clusters(clusters: str | Iterable[str]) -> list[str]:
    return [clusters] if isinstance(clusters, str) else list(dict.fromkeys(clusters))


def active(clusters: str | Iterable[str], start: datetime, end: datetime, *, now: datetime | None = None,
           exclude_holder: RunKey | str | None = None, ledger: Ledger | None = None,
           budget: float = DEFAULT_BUDGET) -> list[Booking]:
    """Return the unexpired reservations on ``clusters`` overlapping ``[start, end)``: others' load for the planner.

    :param exclude_holder: leave this holder's own reservation out (when it re-plans).
    :raises ~airflow_carbon_provider.ledger.errors.LedgerUnavailableError: the database could
        not be used within ``budget`` (the message masks the URL).
    """
    names = _clusters(clusters)
    start, end = _instant(start, "start"), _instant(end, "end")
    now = _instant(now, "now") if now is not None else datetime.now(UTC)
    exclude = holder_name(exclude_holder) if exclude_holder is not None else None
    if not names or end <= start:
        return []
    led = _get_ledger(ledger)
    try:
        rows, _ = locked_transaction(led, [], budget, lambda conn: _overlapping(conn, names, start, end, now, exclude))
    except Unavailable as exc:
        raise LedgerUnavailableError(str(exc), url=led.masked_url) from None
    return [Booking(r.cluster, r.start.timestamp(), r.end.timestamp(), dict(r.resources or {})) for r in rows]


def held_clusters(*, now: datetime | None = None, ledger: Ledger | None = None,
                  budget: float = DEFAULT_BUDGET) -> list[str]:
    """Return the cluster keys that hold an unexpired reservation at ``now``, sorted (for the UI).

    :raises ~airflow_carbon_provider.ledger.errors.LedgerUnavailableError: as :func:`active`.
    """
    now = _instant(now, "now") if now is not None else datetime.now(UTC)
    led = _get_ledger(ledger)
    query = select(_TABLE.c.cluster).where(_TABLE.c.expires_at > now).distinct()
    try:
        rows, _ = locked_transaction(led, [], budget, lambda conn: list(conn.execute(query).scalars()))
    except Unavailable as exc:
        raise LedgerUnavailableError(str(exc), url=led.masked_url) from None
    return sorted(str(r) for r in rows)


def reserved_load(clusters: str | Iterable[str], start: datetime, end: datetime, step: timedelta, *,
                  now: datetime | None = None, ledger: Ledger | None = None,
                  budget: float = DEFAULT_BUDGET) -> dict[str, list[tuple[datetime, dict[str, float]]]]:
    """Return, per cluster, the reserved load at each ``step`` of ``[start, end)`` (for the UI's chart).

    Each point is ``(instant, resources)``: the peak load of each resource held at once
    within ``[instant, instant + step)``, so a short peak between two points is not missed.
    Resources nobody reserved are left out of a point (an empty dict: nothing reserved).

    :raises ~airflow_carbon_provider.ledger.errors.LedgerUnavailableError: as :func:`active`.
    """
    names = _clusters(clusters)
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    start, end = _instant(start, "start"), _instant(end, "end")
    if (end - start) / step > MAX_STEPS:
        raise ValueError(f"{start.isoformat()} to {end.isoformat()} in steps of {step} is more than {MAX_STEPS} "
                         "points; use a longer step")
    bookings = active(names, start, end, now=now, ledger=ledger, budget=budget)
    series: dict[str, list[tuple[datetime, dict[str, float]]]] = {}
    for name in names:
        mine = [(b.start, b.end, b.demand) for b in bookings if b.cluster_id == name]
        resources = sorted({r for _, _, demand in mine for r in demand})
        points = []
        at = start
        while at < end:
            upto = min(at + step, end)
            load = {r: peak_load(mine, at.timestamp(), upto.timestamp(), r)[0] for r in resources}
            points.append((at, {r: v for r, v in load.items() if v > 0}))
            at = upto
        series[name] = points
    return series


def expire(now: datetime | None = None, *, ledger: Ledger | None = None, limit: int = 20 * EXPIRE_BATCH,
           budget: float = DEFAULT_BUDGET) -> int:
    """Delete reservations expired at ``now``, at most ``limit`` (in batches); return how many.

    :func:`reserve` already deletes its own cluster's expired rows; call this from
    housekeeping to keep the table small when some clusters see no reservations for a while.
    :raises ~airflow_carbon_provider.ledger.errors.LedgerUnavailableError: as :func:`active`.
    """
    now = _instant(now, "now") if now is not None else datetime.now(UTC)
    led = _get_ledger(ledger)
    deleted = 0
    touched: dict[str, int] = {}
    while deleted < limit:
        batch = min(EXPIRE_BATCH, limit - deleted)

        def work(conn: Connection, batch: int = batch) -> tuple[int, dict[str, int]]:
            gone = _delete_expired(conn, now, None, batch)
            return len(gone), {c: _held(conn, c, now) for c in set(gone)}

        try:
            (count, held), _ = locked_transaction(led, [], budget, work, write=True)
        except Unavailable as exc:
            raise LedgerUnavailableError(str(exc), url=led.masked_url) from None
        deleted += count
        touched.update(held)
        if count < batch:
            break
    _emit_held(touched)
    if deleted:
        log.info("Carbon reservations: %d expired reservation(s) deleted", deleted)
    return deleted
