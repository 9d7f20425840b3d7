"""The contention price: how the planner ranks a start on a candidate others have partly booked.

Capacity alone is a cliff: a start fits or it does not, so every job of a burst takes the
greenest start that still has room, and the green hours fill in arrival order; a job that
arrives later finds them full and has only dirtier ones left (or none, and overflows). The
contention price smooths the cliff. When a run from ``s`` on a candidate with a capacity
meets others' bookings, its price for *ranking* is::

    mean(s) * (1 + weight * fill(s) * lead(s))

where ``fill(s)`` is the peak booked fraction of the capacity over the run (the largest
over the resources the job asks for and the capacity names, at most 1), ``lead(s)`` is
``(s - now) / (latest_start - now)`` (0 for a start now, 1 at the end of the window) and
``weight`` is ``contention_pct / 100``. A slot nearly full and far ahead costs more: the
later arrivals that will want it are the ones whose windows are shorter, so a job with time
to spare spreads to a slot nearly as green instead of taking the last room of the greenest.
A start now is never raised (nothing can come between). The price applies only where the
capacity *binds* in the job's window (somewhere a run does not fit beside the bookings): a
candidate nobody booked, or one whose bookings leave room everywhere, is ranked on its
forecast alone, so without bookings, or with a capacity that never fills, nothing changes.

The price is for choosing only. The option keeps its forecast mean, which is what a plan
publishes, records and explains (:attr:`~airflow_carbon_provider.core.windows.Option.contention`
holds the raise).

Exact search: within a stretch where neither the forecast interval nor the booked load
changes, the mean is linear in ``s`` and the raise is linear too, so the price is a
product of two linear functions with positive values. If the mean falls, the product is
concave; if it rises, the product rises. Either way its minimum is at an end of the
stretch, so the starts scored are those :meth:`~airflow_carbon_provider.core.windows.Zone.best`
scores plus each booking's start and end (and those less the run's length) inside the free
window. The peak fill of every scored start comes from one sliding-window maximum over the
load's steps, so a plan costs O((S + B) log B) for S forecast boundaries and B bookings in
its window.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from airflow_carbon_provider.core.resources import Booking

if TYPE_CHECKING:
    from airflow_carbon_provider.core.windows import Zone

__all__ = ["DEFAULT_CONTENTION_PCT", "Fill", "best_contended", "lift", "raise_at"]

#: The default ``contention_pct`` of :func:`~airflow_carbon_provider.core.planner.plan`. Chosen on one
#: trace, the bundled March 2023 one, from a sweep of 0/30/50/100 (see the capacity results in the
#: docs), and checked on September 2023 of the same datasets (seen before 50 was settled, so not a
#: clean hold-out); not tuned further.
DEFAULT_CONTENTION_PCT = 50.0


class Fill:
    """The booked fraction of one candidate's capacity as a step function of time.

    ``times[k]`` starts step ``k``, whose fraction ``fracs[k]`` holds until ``times[k + 1]``;
    before the first step and after the last the fraction is zero.
    """

    __slots__ = ("fracs", "times")

    def __init__(self, times: Sequence[float] = (), levels: Sequence[float] = ()) -> None:
        """Keep, from ``levels[i]`` reached at ``times[i]`` (sorted, several per instant), the settled
        level at each instant."""
        self.times: list[float] = []
        self.fracs: list[float] = []
        for i, t in enumerate(times):
            if i + 1 < len(times) and times[i + 1] == t:
                continue
            self.times.append(t)
            self.fracs.append(min(1.0, max(0.0, levels[i])))

    @classmethod
    def of(cls, capacity: Mapping[str, float], demand: Mapping[str, float], bookings: Sequence[Booking]) -> Fill:
        """Return the fill of ``bookings`` for the resources ``demand`` asks for and ``capacity`` names."""
        keys = [r for r in capacity if demand.get(r, 0.0) > 0.0 and capacity[r] > 0.0]
        per: list[tuple[float, float]] = []  # (time, change of the fraction)
        if not keys or not bookings:
            return cls()
        if len(keys) == 1:
            key, cap = keys[0], capacity[keys[0]]
            for bk in bookings:
                x = bk.demand.get(key, 0.0)
                if x and bk.end > bk.start:
                    per.append((bk.start, x / cap))
                    per.append((bk.end, -x / cap))
            per.sort()
            times = [t for t, _ in per]
            levels = list(accumulate(x for _, x in per))
        else:
            events: list[tuple[float, int, float]] = []
            for bk in bookings:
                if bk.end > bk.start:
                    for k, r in enumerate(keys):
                        x = bk.demand.get(r, 0.0)
                        if x:
                            events.append((bk.start, k, x / capacity[r]))
                            events.append((bk.end, k, -x / capacity[r]))
            events.sort()
            load = [0.0] * len(keys)
            times, levels = [], []
            for t, k, x in events:
                load[k] += x
                times.append(t)
                levels.append(max(load))
        return cls(times, levels)

    def __bool__(self) -> bool:
        return any(self.fracs)

    def peaks(self, starts: Sequence[float], dur: float) -> list[float]:
        """Return the peak fraction over ``[s, s + dur)`` for each of the sorted ``starts``."""
        times, fracs = self.times, self.fracs
        n = len(times)
        window: deque[int] = deque()  # step indices, fractions decreasing
        right = 0
        out = []
        for s in starts:
            end = s + dur
            while right < n and times[right] < end:  # steps that begin before the run ends
                while window and fracs[window[-1]] <= fracs[right]:
                    window.pop()
                window.append(right)
                right += 1
            while window and window[0] + 1 < n and times[window[0] + 1] <= s:  # steps over before s
                window.popleft()
            out.append(fracs[window[0]] if window else 0.0)
        return out

    def peak(self, start: float, dur: float) -> float:
        """Return the peak fraction over ``[start, start + dur)``."""
        lo = max(0, bisect_right(self.times, start) - 1)
        hi = bisect_left(self.times, start + dur)
        return max(self.fracs[lo:hi], default=0.0)


def raise_at(fill: Fill, start: float, dur: float, t_now: float, span: float, weight: float) -> float:
    """Return the contention raise of a run from ``start``: ``weight * fill * lead`` (see the module docs)."""
    if weight <= 0.0 or span <= 0.0 or start <= t_now or not fill.times:
        return 0.0
    return lift(fill.peak(start, dur), start, t_now, span, weight)


def lift(peak: float, start: float, t_now: float, span: float, weight: float) -> float:
    """Return ``weight * peak * lead`` for a run from ``start`` whose peak fill is ``peak`` (0 for a start now)."""
    if span <= 0.0 or start <= t_now:
        return 0.0
    return weight * peak * min(1.0, (start - t_now) / span)


def best_contended(zone: Zone, fill: Fill, free: Sequence[tuple[float, float]], t_now: float, dur: float,
                   span: float, weight: float) -> tuple[float, float, float] | None:
    """Return ``(integral, start, raise)`` of the lowest-price start in the ``free`` intervals, earliest on ties.

    :param free: the closed intervals of starts that fit, in time order.
    :param span: ``latest_start - now`` in seconds: the lead at which the raise is full.
    """
    b, cum = zone.b, zone.cum
    marks = fill.times
    starts: set[float] = set()
    for lo, hi in free:
        starts.update((lo, hi))
        starts.update(b[bisect_right(b, lo):bisect_left(b, hi)])
        starts.update(t - dur for t in b[bisect_right(b, lo + dur):bisect_left(b, hi + dur)])
        starts.update(marks[bisect_right(marks, lo):bisect_left(marks, hi)])
        starts.update(t - dur for t in marks[bisect_right(marks, lo + dur):bisect_left(marks, hi + dur)])
    ordered = sorted(s for s in starts if s == t_now or zone.known(s, s + dur))
    if not ordered:
        return None
    peaks = fill.peaks(ordered, dur)
    best: tuple[float, float, float] | None = None
    best_price = 0.0
    for s, peak in zip(ordered, peaks):
        integral = cum(s + dur) - cum(s)
        raised = lift(peak, s, t_now, span, weight)
        price = integral * (1.0 + raised)
        if best is None or price < best_price - 1e-9 * max(1.0, abs(best_price)):
            best, best_price = (integral, s, raised), price
    return best

