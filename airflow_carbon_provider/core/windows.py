"""What the planner's policies share: candidates, options, and the arithmetic of run windows.

A job runs uninterrupted for ``duration`` at constant power, so its emissions are
proportional to the integral of intensity over ``[start, start + duration)``. :class:`Zone`
holds one forecast as prefix sums, so that integral costs two lookups, and finds the
lowest-emission start in a window exactly (see :mod:`airflow_carbon_provider.core.planner`).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import accumulate, compress
from operator import mul, sub
from typing import Any

from airflow_carbon_provider.core.contention import Fill, best_contended
from airflow_carbon_provider.core.contention import lift as lift_at
from airflow_carbon_provider.core.resources import (
    POD,
    Booking,
    ResourceError,
    Resources,
    format_resources,
    parse_resources,
)
from airflow_carbon_provider.core.signals import IntensitySeries

__all__ = ["TIE", "Candidate", "Limit", "Load", "Option", "PlanningError", "Zone", "best_options", "demand_of"]

UTC = timezone.utc
#: Options within this relative distance of each other are equal (then the earlier start wins).
TIE = 1e-9


class PlanningError(ValueError):
    """Raised when a plan cannot be made from the inputs given; the message says which input."""


@dataclass(frozen=True)
class Candidate:
    """Somewhere the job can run: a cluster (connection id) drawing power from ``zone``.

    :param cluster_id: the Kubernetes connection id (or any name the caller uses).
    :param zone: the grid zone whose forecast applies.
    :param capacity: what the planned jobs on this candidate may hold at once: ``None``
        (unlimited), an integer (that many pods) or a mapping of resources such as
        ``{"pods": 50, "nvidia.com/gpu": 8}``; read once by
        :func:`~airflow_carbon_provider.core.resources.parse_resources`, so the attribute is
        always ``None`` or a ``dict`` of floats. See ``busy`` in
        :func:`~airflow_carbon_provider.core.planner.plan`.
    """

    cluster_id: str
    zone: str
    capacity: Any = field(default=None, compare=False)
    #: The capacity as sorted ``(resource, amount)`` pairs: what equality and hashing compare.
    limits: tuple[tuple[str, float], ...] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if not self.cluster_id or not isinstance(self.cluster_id, str):
            raise PlanningError(f"candidate cluster_id must be a non-empty string, got {self.cluster_id!r}")
        if not self.zone or not isinstance(self.zone, str):
            raise PlanningError(
                f"candidate {self.cluster_id}: zone must be a grid zone key such as 'DE', got {self.zone!r}"
            )
        try:
            capacity = parse_resources(self.capacity, where=f"candidate {self.cluster_id}: capacity")
        except ResourceError as exc:
            raise PlanningError(str(exc)) from None
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "limits", None if capacity is None else tuple(sorted(capacity.items())))


@dataclass(frozen=True)
class Option:
    """One candidate at one start time, with the forecast mean intensity over the run.

    ``contention`` is the raise its ranking price carries because others booked part of the
    candidate (see :mod:`~airflow_carbon_provider.core.contention`); it orders options, never
    what is published: that is ``mean_intensity``.
    """

    candidate: Candidate
    start: datetime
    mean_intensity: float
    contention: float = field(default=0.0, compare=False)

    @property
    def price(self) -> float:
        """The value options are ranked by: the mean intensity raised by ``contention``."""
        return self.mean_intensity * (1.0 + self.contention)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "cluster": self.candidate.cluster_id,
            "zone": self.candidate.zone,
            "start": _iso(self.start),
            "mean_intensity": round(self.mean_intensity, 3),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Zone:
    """Prefix sums of one forecast, extended by persistence beyond its end.

    Unknown intervals (gaps) hold the last known value in ``v`` and ``c``, which is what
    starting now is scored with; ``u`` sums the unknown seconds, so that :meth:`known` can
    tell whether a run overlaps a gap.
    """

    __slots__ = ("b", "c", "end", "gap", "memo", "n", "u", "uniform", "v")

    b: Sequence[float]
    v: Sequence[float]
    c: list[float]
    u: list[float] | None
    gap: list[bool] | None
    uniform: float

    def __init__(self, series: IntensitySeries) -> None:
        memo: Any = series._derived.get("planner")
        if memo is None:
            b, v = series.bounds, series.values
            gap = u = None
            # map() over operator functions keeps these two passes in C.
            steps = list(map(sub, b[1:], b[:-1]))
            if series.has_gaps:
                gap = [x != x for x in v]
                held: list[float] = []
                for x in v:
                    held.append(held[-1] if x != x else x)
                v = held
                u = list(accumulate((st if g else 0.0 for st, g in zip(steps, gap)), initial=0.0))
            c = list(accumulate(map(mul, v, steps), initial=0.0))
            n = len(v)
            # The first and last intervals are often clipped (a forecast starting now, a
            # horizon cut mid-interval); the interior decides whether the grid is uniform.
            step = steps[1] if n > 2 else 0.0
            uniform = step if n > 2 and steps[1:-1].count(step) == n - 2 else 0.0
            memo = (c, uniform, v, u, gap)
            series._derived["planner"] = memo
        self.b = series.bounds
        self.memo = series._derived
        self.c, self.uniform, self.v, self.u, self.gap = memo
        self.n = len(self.v)
        self.end = self.b[-1]

    def _unknown(self, t: float) -> float:
        """Return the unknown seconds from the series start to ``t`` (none past the end)."""
        assert self.u is not None and self.gap is not None
        if t >= self.end:
            return self.u[-1]
        i = bisect_right(self.b, t) - 1
        return self.u[i] + (t - self.b[i] if self.gap[i] else 0.0)

    def known(self, start: float, end: float) -> bool:
        """Return whether ``[start, end)`` overlaps no gap."""
        return self.u is None or self._unknown(end) - self._unknown(start) <= 0.0

    def cum(self, t: float) -> float:
        """Return the integral from the series start to ``t`` (persistence past the end)."""
        b = self.b
        if t >= self.end:
            return self.c[-1] + self.v[-1] * (t - self.end)
        i = bisect_right(b, t) - 1
        return self.c[i] + self.v[i] * (t - b[i])

    def value_at(self, t: float) -> float:
        """Return the value in force at ``t`` (the last value past the end)."""
        if t >= self.end:
            return self.v[-1]
        return self.v[bisect_right(self.b, t) - 1]

    def runs(self, k: int) -> list[float]:
        """Return the integral of every run from boundary ``i`` to ``i + k``, memoised per ``k``.

        Computed once over the whole series, so a long series (a backtest's year of actuals)
        planned on at many instants costs one subtraction per interval per run length.
        """
        key = f"runs:{k}"
        found: Any = self.memo.get(key)
        if found is None:
            c = self.c
            found = self.memo[key] = list(map(sub, c[k:], c[: len(c) - k]))
        return found

    def best(self, lo: float, hi: float, dur: float) -> tuple[float, float]:
        """Return ``(integral, start)`` of the lowest-emission start in ``[lo, hi]``, earliest on ties."""
        # Many plans ask the same question of one series (policies compared in a backtest,
        # triggers sharing a cached forecast); the series is immutable, so keep recent answers.
        cache: Any = self.memo.get("best")
        if cache is None or len(cache) > 4096:
            cache = self.memo["best"] = {}
        key = (lo, hi, dur)
        found = cache.get(key)
        if found is None:
            found = cache[key] = self._best(lo, hi, dur)
        return found

    def _best(self, lo: float, hi: float, dur: float) -> tuple[float, float]:
        b, c, n, cum = self.b, self.c, self.n, self.cum
        if self.uniform and self.u is None and hi > lo:
            # Fast path: the window's ends are boundaries of a uniform grid and the run is a
            # whole number of steps, so every candidate start is a boundary and each score is
            # one entry of the memoised run integrals (the general search below agrees).
            ratio = dur / self.uniform
            k = int(ratio)
            i_lo, i_hi = bisect_left(b, lo), bisect_left(b, hi)
            if ratio == k and i_hi + k < n and b[i_lo] == lo and b[i_hi] == hi and i_lo > 0:
                window = self.runs(k)[i_lo : i_hi + 1]
                best = min(window)
                limit = best + TIE * max(1.0, abs(best))
                i = next(compress(range(len(window)), map(limit.__ge__, window)))
                return window[i], b[i_lo + i]
        starts = [lo]
        scores = [cum(lo + dur) - cum(lo)]
        if hi > lo:
            ratio = dur / self.uniform if self.uniform else 0.5
            on_grid = ratio == int(ratio)
            k = int(ratio)
            # Starts on a boundary strictly inside (lo, hi).
            i0, i1 = bisect_right(b, lo), bisect_left(b, hi)
            if i1 > i0:
                # On a uniform grid a run from boundary i ends on boundary i + k: its integral
                # is a difference of two prefix sums, no search needed. Boundaries 1..n-1 are
                # on the grid; runs ending in the last (possibly clipped) interval are not.
                split = max(i0, min(i1, n - k)) if on_grid else i0
                if split > i0:
                    scores.extend(self.runs(k)[i0:split])
                scores.extend(cum(b[i] + dur) - c[i] for i in range(split, i1))
                starts.extend(b[i0:i1])
            # Starts whose run ends on a boundary strictly inside (lo + dur, hi + dur). On the
            # grid these are boundary starts already, except runs that begin in the first interval.
            j0, j1 = bisect_right(b, lo + dur), bisect_left(b, hi + dur)
            if on_grid:
                j1 = min(j1, i0 + k)
            for j in range(j0, j1):
                s = b[j] - dur
                starts.append(s)
                scores.append(c[j] - cum(s))
            starts.append(hi)
            scores.append(cum(hi + dur) - cum(hi))
        if self.u is not None:  # a run over a gap is not an option; starting now (lo) always is
            known = self.known
            scores = [sc if s == lo or known(s, s + dur) else math.inf for s, sc in zip(starts, scores)]
        best = min(scores)
        limit = best + TIE * max(1.0, abs(best))
        start = min(compress(starts, map(limit.__ge__, scores)))
        return scores[starts.index(start)], start


def demand_of(demand: Resources | None) -> dict[str, float]:
    """Read what one job asks for: one pod plus whatever ``demand`` names (every task is one pod)."""
    try:
        parsed = parse_resources(demand, where="demand")
    except ResourceError as exc:
        raise PlanningError(str(exc)) from None
    return {**POD, **(parsed or {})}


def _hhmm(epoch: float) -> str:
    return _dt(epoch).strftime("%H:%M") if math.isfinite(epoch) else "..."


class Load:
    """The load booked on one candidate as a step function, and the starts where one more job does not fit.

    A run from ``s`` fits when, for every resource both the capacity and the job's demand
    name, the *peak* booked load over ``[s, s + dur)`` plus the demand is at most the capacity
    (resources the capacity leaves out are unlimited; those the job does not ask for are not
    checked). The peak over a run is within a bound exactly when every step of the load inside
    the run is, so one sweep over the bookings' starts and ends (O(B log B)) finds the
    *blocked* spans, the steps where the demand does not fit; a run fits unless it meets one.
    The starts it forbids are ``(a - dur, b)`` for a blocked ``[a, b)``: a sorted list of
    disjoint open intervals, so :meth:`fits` is one bisection and :meth:`free` walks the
    window once. Counting every booking that overlaps the run instead would call a candidate
    full when two bookings meet the run but not each other.
    """

    __slots__ = ("_fill", "_levels", "bookings", "capacity", "cluster_id", "demand", "dur", "lefts", "rights", "spans")

    def __init__(self, cluster_id: str, capacity: Mapping[str, float], demand: Mapping[str, float],
                 bookings: Sequence[Booking], dur: float) -> None:
        self.cluster_id = cluster_id
        self.capacity = capacity
        self.demand = demand
        self.bookings = bookings
        self._fill: Fill | None = None
        self._levels: tuple[list[float], list[float]] | None = None  # the one-resource sweep's steps, for the fill
        self.dur = dur
        keys = [r for r in capacity if demand.get(r, 0.0) > 0.0]
        # The booked load at which the demand still fits, per resource (with the planner's tie slack).
        room = [capacity[r] - demand[r] + TIE * max(1.0, capacity[r]) for r in keys]
        #: Blocked spans ``[a, b)`` with the resource that blocks and its peak booked load there.
        self.spans: list[tuple[float, float, str, float]] = []
        over = [r for r, free in zip(keys, room) if free < 0]
        if over:  # the job alone asks for more than the candidate has
            self.spans.append((-math.inf, math.inf, over[0], 0.0))
        elif keys:
            self._sweep(keys, room, bookings)
        lefts: list[float] = []
        rights: list[float] = []
        for a, b, _, _ in self.spans:
            if lefts and a - dur < rights[-1]:
                rights[-1] = max(rights[-1], b)
            else:
                lefts.append(a - dur)
                rights.append(b)
        self.lefts, self.rights = lefts, rights

    def _sweep(self, keys: list[str], room: list[float], bookings: Sequence[Booking]) -> None:
        if len(keys) == 1:
            self._sweep_one(keys[0], room[0], bookings)
            return
        events: list[tuple[float, tuple[float, ...]]] = []
        for bk in bookings:
            if bk.end <= bk.start:
                continue
            amounts = tuple(bk.demand.get(r, 0.0) for r in keys)
            if any(amounts):
                events.append((bk.start, amounts))
                events.append((bk.end, tuple(-x for x in amounts)))
        events.sort(key=lambda ev: ev[0])
        load = [0.0] * len(keys)
        span: list[Any] | None = None  # [start, resource index, peak]
        i, n = 0, len(events)
        while i < n:
            t = events[i][0]
            while i < n and events[i][0] == t:
                for k, x in enumerate(events[i][1]):
                    load[k] += x
                i += 1
            blocking = next((k for k in range(len(keys)) if load[k] > room[k]), None)
            if blocking is not None:
                if span is None:
                    span = [t, blocking, load[blocking]]
                else:
                    span[2] = max(span[2], load[span[1]])
            elif span is not None:
                self.spans.append((span[0], t, keys[span[1]], span[2]))
                span = None
        if span is not None:  # bookings never end: cannot happen with finite ends, kept for safety
            self.spans.append((span[0], math.inf, keys[span[1]], span[2]))

    def _sweep_one(self, key: str, room: float, bookings: Sequence[Booking]) -> None:
        """Sweep for one resource (pods, most often): scalar steps, running sums in C."""
        events: list[tuple[float, float]] = []
        for bk in bookings:
            x = bk.demand.get(key, 0.0)
            if x and bk.end > bk.start:
                events.append((bk.start, x))
                events.append((bk.end, -x))
        events.sort()
        times = [t for t, _ in events]
        loads = list(accumulate(x for _, x in events))
        self._levels = times, loads
        span_start = peak = 0.0
        blocked = False
        last = len(events) - 1
        for i, load in enumerate(loads):
            t = times[i]
            if i < last and times[i + 1] == t:
                continue  # not the last event at this instant: the step is not settled yet
            if load > room:
                if not blocked:
                    blocked, span_start, peak = True, t, load
                elif load > peak:
                    peak = load
            elif blocked:
                self.spans.append((span_start, t, key, peak))
                blocked = False

    @property
    def binds(self) -> bool:
        """Whether the capacity binds somewhere in the window: some run does not fit beside the bookings."""
        return bool(self.spans)

    @property
    def fill(self) -> Fill:
        """The booked fraction of the capacity over time (built on first use: only contention needs it)."""
        if self._fill is None and self._levels is not None:
            times, loads = self._levels
            cap = next(v for r, v in self.capacity.items() if self.demand.get(r, 0.0) > 0.0)
            self._fill = Fill(times, [x / cap for x in loads])
        elif self._fill is None:
            self._fill = Fill.of(self.capacity, self.demand, self.bookings)
        return self._fill

    def fits(self, start: float) -> bool:
        """Return whether a run from ``start`` fits."""
        j = bisect_left(self.lefts, start) - 1
        return j < 0 or start >= self.rights[j]

    def free(self, lo: float, hi: float) -> list[tuple[float, float]]:
        """Return the closed intervals of starts in ``[lo, hi]`` that fit, in time order."""
        lefts, rights = self.lefts, self.rights
        out = []
        cur = lo
        j = bisect_left(lefts, lo) - 1
        if j >= 0 and rights[j] > lo:
            cur = rights[j]
        j += 1
        while cur <= hi:
            if j < len(lefts) and lefts[j] < hi:
                out.append((cur, lefts[j]))
                cur = rights[j]
                j += 1
            else:
                out.append((cur, hi))
                break
        return out

    def why(self, start: float) -> tuple[str, float, float, float, float]:
        """Return ``(resource, peak booked, capacity, since, until)`` of the span that blocks a run from ``start``."""
        end = start + self.dur
        for a, b, resource, peak in self.spans:
            if a < end and start < b:
                return resource, peak, self.capacity[resource], a, b
        raise ValueError(f"a run from {start} fits on {self.cluster_id}")  # pragma: no cover

    def clause(self, start: float) -> str:
        """Say in a few words why a run from ``start`` does not fit: ``pods 50 of 50 reserved 23:00-01:00``."""
        resource, peak, cap, since, until = self.why(start)
        if not math.isfinite(since):
            return f"the job alone asks for more {resource} than its capacity {cap:g}"
        return f"{format_resources({resource: peak})} of {format_resources({resource: cap}).split(' ', 1)[1]} " \
               f"reserved {_hhmm(since)}-{_hhmm(until)}"


@dataclass(frozen=True)
class Limit:
    """An option a candidate would have offered but for its capacity, and what blocked it."""

    option: Option
    resource: str
    clause: str


def loads_for(pool: Sequence[Candidate], demand: Mapping[str, float], busy: Sequence[Booking], t_lo: float,
              t_hi: float, dur: float) -> dict[str, Load]:
    """Return the :class:`Load` of every candidate in ``pool`` with a capacity, from the bookings that
    can meet a run starting in ``[t_lo, t_hi]``."""
    limited = {c.cluster_id: c.capacity for c in pool if c.capacity is not None}
    if not limited:
        return {}
    mine: dict[str, list[Booking]] = {k: [] for k in limited}
    end = t_hi + dur
    for bk in busy:
        if bk.cluster_id in mine and bk.start < end and bk.end > t_lo:
            mine[bk.cluster_id].append(bk)
    return {k: Load(k, cap, demand, mine[k], dur) for k, cap in limited.items()}


def _scored(z: Zone, starts: Sequence[float], dur: float) -> tuple[float, float] | None:
    """Return ``(integral, start)`` of the lowest of ``starts``, earliest on ties; None for none."""
    if not starts:
        return None
    scored = [(z.cum(s + dur) - z.cum(s), s) for s in starts]
    best = min(sc for sc, _ in scored)
    limit = best + TIE * max(1.0, abs(best))
    return next((sc, s) for sc, s in sorted(scored, key=lambda x: x[1]) if sc <= limit)


def _best_known(z: Zone, lo: float, hi: float, dur: float) -> tuple[float, float] | None:
    """Like :meth:`Zone.best` on a series with gaps, where ``lo`` is not now: every start must be known."""
    b = z.b
    starts = {lo, hi}
    starts.update(t for t in b[bisect_right(b, lo):bisect_left(b, hi)])
    starts.update(t - dur for t in b[bisect_right(b, lo + dur):bisect_left(b, hi + dur)])
    return _scored(z, sorted(s for s in starts if z.known(s, s + dur)), dur)


def _best_fitting(z: Zone, load: Load, t_now: float, hi: float, dur: float) -> tuple[float, float] | None:
    """Return the lowest-emission start in ``[t_now, hi]`` that fits ``load``, earliest on ties."""
    found: tuple[float, float] | None = None
    for lo, top in load.free(t_now, hi):
        here: tuple[float, float] | None = z.best(lo, top, dur)
        if here is not None and z.u is not None and here[1] != t_now and not z.known(here[1], here[1] + dur):
            here = _best_known(z, lo, top, dur)
        if here is not None and (found is None or here[0] < found[0] - TIE * max(1.0, abs(found[0]))):
            found = here
    return found


def best_options(
    pool: Sequence[Candidate],
    zones: Mapping[str, Zone],
    t_now: float,
    t_latest: float,
    dur: float,
    beyond_horizon: str,
    loads: Mapping[str, Load],
    *,
    hourly: bool = False,
    contention: float = 0.0,
) -> tuple[list[Option], list[Limit]]:
    """Return the best option per candidate with room, and the better ones capacity ruled out.

    Starting now is always allowed when it fits; a candidate with no fitting start in the
    window is not an option. The unconstrained best is computed first; only when it does not
    fit is the window searched between the blocked spans.

    :param loads: per cluster id, the booked load of each candidate that has a capacity.
    :param hourly: consider only starts on the hour (and now, when no full hour is left).
    :param contention: ``contention_pct / 100``: where a candidate is partly booked, options are
        ranked by the contention price (:mod:`~airflow_carbon_provider.core.contention`); 0 ranks
        by the forecast alone.
    """
    span = t_latest - t_now
    per_zone: dict[str, tuple[float, float]] = {}
    options: list[Option] = []
    limits: list[Limit] = []
    for cand in pool:
        z = zones[cand.zone]
        hi = t_latest if beyond_horizon == "persist" else min(t_latest, z.end - dur)
        hi = max(hi, t_now)
        load = loads.get(cand.cluster_id)
        found: tuple[float, float] | None
        contended = load is not None and contention > 0.0 and span > 0.0 and load.binds and bool(load.fill)
        lift = 0.0
        if hourly:
            first = math.ceil(t_now / 3600.0) * 3600.0
            starts = [first + 3600.0 * k for k in range(int((hi - first) // 3600.0) + 1)] if first <= hi else []
            starts = [s for s in starts if s == t_now or z.known(s, s + dur)] or [t_now]
            free = _scored(z, starts, dur)
            if load is not None:
                room = [s for s in starts if load.fits(s)]
                if not room and load.fits(t_now):  # no full hour with room left: start now
                    room = [t_now]
                if contended and room:
                    lifts = [lift_at(p, s, t_now, span, contention) for s, p in zip(room, load.fill.peaks(room, dur))]
                    integrals = [z.cum(s + dur) - z.cum(s) for s in room]
                    k = min(range(len(room)), key=lambda i: (integrals[i] * (1.0 + lifts[i]), room[i]))
                    found, lift = (integrals[k], room[k]), lifts[k]
                else:
                    found = _scored(z, room, dur)
            else:
                found = free
        else:
            if cand.zone not in per_zone:
                per_zone[cand.zone] = z.best(t_now, hi, dur)
            free = found = per_zone[cand.zone]
            if contended:
                assert load is not None
                priced = best_contended(z, load.fill, load.free(t_now, hi), t_now, dur, span, contention)
                found, lift = (None, 0.0) if priced is None else (priced[:2], priced[2])
            elif load is not None and not load.fits(free[1]):
                found = _best_fitting(z, load, t_now, hi, dur)
        assert free is not None
        if found is not None:
            options.append(Option(cand, _dt(found[1]), found[0] / dur, lift))
        if load is not None and not load.fits(free[1]) and (
                found is None or free[0] < found[0] - TIE * max(1.0, abs(found[0]))):
            limits.append(Limit(Option(cand, _dt(free[1]), free[0] / dur), load.why(free[1])[0],
                                load.clause(free[1])))
    return options, limits
