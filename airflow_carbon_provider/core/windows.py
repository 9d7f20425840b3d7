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
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import accumulate, compress
from operator import mul, sub
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries

__all__ = ["TIE", "Candidate", "Option", "PlanningError", "Zone", "best_options", "fits"]

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
    :param capacity: at most this many planned jobs may overlap on this candidate (``None``:
        unlimited); see ``busy`` in :func:`~airflow_carbon_provider.core.planner.plan`.
    """

    cluster_id: str
    zone: str
    capacity: int | None = None

    def __post_init__(self) -> None:
        if not self.cluster_id or not isinstance(self.cluster_id, str):
            raise PlanningError(f"candidate cluster_id must be a non-empty string, got {self.cluster_id!r}")
        if not self.zone or not isinstance(self.zone, str):
            raise PlanningError(
                f"candidate {self.cluster_id}: zone must be a grid zone key such as 'DE', got {self.zone!r}"
            )
        if self.capacity is not None and (not isinstance(self.capacity, int) or self.capacity < 1):
            raise PlanningError(
                f"candidate {self.cluster_id}: capacity must be a positive integer or None, got {self.capacity!r}"
            )


@dataclass(frozen=True)
class Option:
    """One candidate at one start time, with the forecast mean intensity over the run."""

    candidate: Candidate
    start: datetime
    mean_intensity: float

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


def best_options(
    pool: Sequence[Candidate],
    zones: Mapping[str, Zone],
    t_now: float,
    t_latest: float,
    dur: float,
    beyond_horizon: str,
    busy: list[tuple[str, float, float]],
    *,
    hourly: bool = False,
) -> list[Option]:
    """Return the best option per candidate (starting now is always allowed).

    :param hourly: consider only starts on the hour (and now, when no full hour is left).
    """
    per_zone: dict[str, tuple[float, float]] = {}
    options = []
    for cand in pool:
        z = zones[cand.zone]
        hi = t_latest if beyond_horizon == "persist" else min(t_latest, z.end - dur)
        hi = max(hi, t_now)
        mine = [(s, e) for c, s, e in busy if c == cand.cluster_id] if cand.capacity else []
        if hourly:
            first = math.ceil(t_now / 3600.0) * 3600.0
            starts = [first + 3600.0 * k for k in range(int((hi - first) // 3600.0) + 1)] if first <= hi else []
            starts = [s for s in starts if fits(s, dur, mine, cand.capacity) and (s == t_now or z.known(s, s + dur))]
            if not starts:  # no full hour left (or all full): start now, if there is room
                if not fits(t_now, dur, mine, cand.capacity):
                    continue
                starts = [t_now]
            scored = [(z.cum(s + dur) - z.cum(s), s) for s in starts]
            best_score = min(sc for sc, _ in scored)
            limit = best_score + TIE * max(1.0, abs(best_score))
            score, start = min((s, sc) for sc, s in scored if sc <= limit)[::-1]
        elif mine:
            found = best_with_capacity(z, t_now, hi, dur, mine, cand.capacity)
            if found is None:  # full for the whole window: not an option
                continue
            score, start = found
        else:
            if cand.zone not in per_zone:
                per_zone[cand.zone] = z.best(t_now, hi, dur)
            score, start = per_zone[cand.zone]
        options.append(Option(cand, _dt(start), score / dur))
    return options


def fits(start: float, dur: float, busy: list[tuple[float, float]], capacity: int | None) -> bool:
    if not capacity:
        return True
    overlapping = sum(1 for s, e in busy if s < start + dur and start < e)
    return overlapping < capacity


def best_with_capacity(
    z: Zone, lo: float, hi: float, dur: float, busy: list[tuple[float, float]], capacity: int | None
) -> tuple[float, float] | None:
    """Like :meth:`Zone.best` but skipping starts where the candidate is full; None if always full."""
    # Feasibility changes only where a start or end of the run meets a busy job's start or end,
    # so those instants join the usual candidate starts.
    extra = {lo, hi}
    for s, e in busy:
        for t in (s, e, s - dur, e - dur):
            if lo <= t <= hi:
                extra.add(t)
    b = z.b
    for t in b:
        if lo <= t <= hi:
            extra.add(t)
        if lo <= t - dur <= hi:
            extra.add(t - dur)
    feasible = sorted(t for t in extra if fits(t, dur, busy, capacity) and (t == lo or z.known(t, t + dur)))
    if not feasible:
        return None
    scored = [(z.cum(t + dur) - z.cum(t), t) for t in feasible]
    best = min(sc for sc, _ in scored)
    limit = best + TIE * max(1.0, abs(best))
    return next((sc, t) for sc, t in scored if sc <= limit)


