"""Fleet coordination: each plan sees what the clusters can take and what the other tasks hold.

Without it every task plans alone, and 200 mapped tasks all choose the one cluster whose grid
turns clean at 23:00. With it (``coordinate=True``, the default), one planning step of a task:

1. reads, for every candidate, what it can take now (the cluster
   :mod:`~airflow_carbon_provider.scheduling.inventory`: allocatable minus the requests of the
   pods running there, capped by the declared ``capacity``) and the other tasks' reservations
   on the candidates over the task's window (:mod:`~airflow_carbon_provider.ledger.reservations`,
   in the ledger's database, shared by every scheduler, worker and triggerer);
2. plans with those as the planner's capacities and bookings, so a start where a candidate is
   full is not an option (:func:`~airflow_carbon_provider.core.planner.plan`);
3. reserves the chosen window for the task (:func:`hold`). Two planners that chose the same
   last slot at once are told apart there, under the cluster's lock: the loser plans again
   with the fresh bookings (:data:`MAX_ATTEMPTS` times at most), then runs now at home and
   says why. A deadline is never traded for room.

The reservation moves with each re-plan of the waiting trigger, is re-anchored to the actual
start on the cluster the pod runs on, and is released when the pod finishes (or expires an
hour after its planned end if the holder crashed). Pods a reservation counts carry the label
:data:`RESERVED_LABEL`, and the inventory leaves them out, so no task is counted twice.

When the ledger's database cannot be reached the task plans without coordination and says so;
when a cluster cannot be read, its declared capacity (or none) applies. Neither ever fails or
delays the task beyond its planning budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_carbon_provider.core.resources import POD, Booking, Resources
from airflow_carbon_provider.scheduling.candidates import ClusterCandidate

__all__ = [
    "MAX_ATTEMPTS",
    "RESERVED_LABEL",
    "FleetView",
    "aread_fleet",
    "hold",
    "holder_for",
    "holder_from",
    "holder_of",
    "read_fleet",
    "release",
]

log = logging.getLogger(__name__)

#: Label on pods whose resources a reservation counts (the inventory leaves them out).
RESERVED_LABEL = "carbon.airflow.apache.org/reserved"
#: Plans a task makes at most when others keep taking the window it chose.
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class FleetView:
    """What one plan sees of the fleet: each candidate's room and the other tasks' bookings.

    :param capacities: per candidate key, what it can take (``None``: unlimited).
    :param sources: per candidate key, where that came from (``cluster``, ``declared``,
        ``cluster+declared`` or ``unknown``).
    :param busy: the other tasks' reservations overlapping the window, as planner bookings.
    :param coordinated: the reservations could be read (and the plan will be reserved).
    :param notes: one line per thing that did not work (a cluster not read, the database down).
    """

    capacities: Mapping[str, Resources | None] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    busy: tuple[Booking, ...] = ()
    coordinated: bool = False
    notes: tuple[str, ...] = ()

    @property
    def limited(self) -> bool:
        """Whether any candidate has a finite capacity (else coordination cannot change a plan)."""
        return any(cap is not None for cap in self.capacities.values())

    def to_xcom(self) -> dict[str, Any]:
        """Return the JSON-safe summary kept in the decision."""
        return {
            "capacities": {k: (dict(v) if v is not None else None) for k, v in self.capacities.items()},
            "sources": dict(self.sources),
            "booked": len(self.busy),
            "coordinated": self.coordinated,
            "notes": list(self.notes),
        }


def holder_for(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """Return the reservation holder of a task instance: the same across its tries, so a retry moves it."""
    from airflow_carbon_provider.ledger.store import RunKey

    return RunKey(dag_id, run_id, task_id, map_index if map_index is not None else -1, 0)


def holder_of(context: Mapping[str, Any]) -> Any:
    """Return the holder of the task instance in an Airflow ``context``, or None if it names none."""
    ti = context.get("ti")
    ids = [getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id")]
    if not all(isinstance(i, str) and i for i in ids):
        return None
    dag_id, run_id, task_id = (str(i) for i in ids)
    map_index = getattr(ti, "map_index", -1)
    return holder_for(dag_id, run_id, task_id, map_index if isinstance(map_index, int) else -1)


def holder_from(data: Mapping[str, Any]) -> Any:
    """Rebuild a holder from its JSON form (``RunKey.as_dict()``, as the trigger's kwargs carry it)."""
    from airflow_carbon_provider.ledger.store import RunKey

    return RunKey(**{k: data[k] for k in ("dag_id", "run_id", "task_id", "map_index", "try_number") if k in data})


def _window(now: datetime, latest: datetime, duration: timedelta) -> tuple[datetime, datetime]:
    return now, max(latest, now) + duration


def _capacities(candidates: Sequence[ClusterCandidate], inventories: Mapping[str, Any]
                ) -> tuple[dict[str, Resources | None], dict[str, str], list[str]]:
    caps: dict[str, Resources | None] = {}
    sources: dict[str, str] = {}
    notes = []
    for cand in candidates:
        inv = inventories.get(cand.key)
        if inv is None:
            caps[cand.key], sources[cand.key] = cand.resources, "declared" if cand.capacity is not None else "unknown"
            continue
        # A reading that names no resource at all (no node counted, e.g. a list caught empty)
        # says nothing about room: plan on the declared capacity instead of an empty one.
        free = inv.free if inv.free else (cand.resources if inv.free is not None else None)
        caps[cand.key], sources[cand.key] = free, inv.source
        if inv.error:
            notes.append(f"{cand.key}: cluster not read ({inv.error}); "
                         f"{'declared capacity used' if inv.declared else 'capacity unknown'}")
    return caps, sources, notes


def read_fleet(candidates: Sequence[ClusterCandidate], *, holder: Any, now: datetime, latest: datetime,
               duration: timedelta, budget: float, read_cluster: bool = True) -> FleetView:
    """Read the fleet for one plan (blocking); never raises, never takes longer than about ``budget``."""
    from airflow_carbon_provider.ledger.reservations import active
    from airflow_carbon_provider.scheduling.inventory import read_inventories

    inventories = read_inventories(candidates, timeout=budget, read_cluster=read_cluster,
                                   exclude_label=RESERVED_LABEL) if read_cluster else {}
    caps, sources, notes = _capacities(candidates, inventories)
    start, end = _window(now, latest, duration)
    try:
        busy = active([c.key for c in candidates], start, end, now=now, exclude_holder=holder, budget=budget)
    except Exception as exc:  # LedgerError above all; whatever it is, the task plans alone rather than fail
        notes.append(f"reservations unavailable ({_short(exc)}); planning without coordination")
        return FleetView(caps, sources, (), False, tuple(notes))
    return FleetView(caps, sources, tuple(busy), True, tuple(notes))


async def aread_fleet(candidates: Sequence[ClusterCandidate], *, holder: Any, now: datetime, latest: datetime,
                      duration: timedelta, budget: float, read_cluster: bool = True) -> FleetView:
    """Read the fleet for one plan without blocking the event loop (the trigger's re-plans)."""
    from airflow_carbon_provider.ledger.reservations import active
    from airflow_carbon_provider.scheduling.inventory import aread_inventories

    inventories = await aread_inventories(candidates, timeout=budget, read_cluster=read_cluster,
                                          exclude_label=RESERVED_LABEL) if read_cluster else {}
    caps, sources, notes = _capacities(candidates, inventories)
    start, end = _window(now, latest, duration)
    try:
        busy = await asyncio.wait_for(asyncio.to_thread(
            active, [c.key for c in candidates], start, end, now=now, exclude_holder=holder, budget=budget),
            timeout=budget + 1.0)
    except Exception as exc:  # LedgerError, a timeout: whatever it is, the task plans alone rather than fail
        notes.append(f"reservations unavailable ({_short(exc)}); planning without coordination")
        return FleetView(caps, sources, (), False, tuple(notes))
    return FleetView(caps, sources, tuple(busy), True, tuple(notes))


def hold(holder: Any, key: str, start: datetime, duration: timedelta, demand: Resources | None,
         capacity: Resources | None, *, now: datetime, budget: float) -> Any:
    """Reserve ``demand`` on candidate ``key`` from ``start`` for ``duration``; return the result.

    ``capacity=None`` never refuses (used to re-anchor a reservation at the actual start).
    """
    from airflow_carbon_provider.ledger.reservations import reserve

    return reserve(holder, key, start, start + duration, dict(demand or POD), capacity=capacity, now=now,
                   budget=budget)


def release(holder: Any, *, budget: float) -> None:
    """Release the holder's reservation (never raises; a reservation not released expires)."""
    from airflow_carbon_provider.ledger.reservations import release as _release

    _release(holder, budget=budget)


def _short(exc: BaseException) -> str:
    """Return one line for ``exc`` without secrets (the ledger's URL is masked by its errors)."""
    from airflow_carbon_provider.ledger.secrets import redact_text

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer in time"
    return redact_text(f"{type(exc).__name__}: {text[:300]}")
