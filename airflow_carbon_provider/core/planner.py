"""Choose where and when a job runs: the cluster and start that minimise its emissions.

The planner is pure: forecasts, candidates and ``now`` in, a :class:`Plan` out. A job runs
uninterrupted for ``duration`` at constant power, so its emissions are proportional to the
integral of intensity over ``[start, start + duration)``. That integral is computed exactly
across forecast intervals of any length (not sampled at points), and because it is piecewise
linear in ``start`` its minimum lies where ``start`` or ``start + duration`` meets an interval
boundary, or at an end of the allowed window; those are exactly the starts evaluated.

Forecast horizon
    Every forecast must cover ``now``. A forecast that ends before ``latest_start + duration``
    is *horizon-limited*. With ``beyond_horizon="exclude"`` (the default) only starts whose whole
    run lies inside the forecast are considered, apart from starting now, which is always
    possible and is scored by holding the last forecast value beyond the horizon; the caller
    should re-plan when a newer forecast arrives (the backtest's ``carbon-aware`` does, at
    every refresh). With
    ``"persist"`` every start up to ``latest_start`` is considered and the last forecast value
    is assumed to hold beyond the horizon.

Gaps
    A forecast may leave intervals unknown (see :mod:`airflow_carbon_provider.core.signals`).
    Every known interval is planned on, and a start whose run would overlap an unknown one is
    never chosen: the run's emissions are not known. Starting now is the exception, as for
    the horizon: it is always possible (the deadline comes first), and where its run
    crosses a gap it is scored by holding the last known value through the gap. The same
    holding gives the current value when now itself falls in a gap (``greenest-now``,
    ``threshold``). ``beyond_horizon="persist"`` holds the last value past the end of the
    forecast only, never through a gap. An incumbent whose run now crosses a gap is not
    kept: the plan is made as if there were none.

Hysteresis
    The plan keeps the incumbent (by default: the home candidate, now) unless the best option
    beats it by at least ``min_saving_pct`` percent *and* ``min_saving_abs`` gCO2eq/kWh.

Ties
    Options within a relative 1e-9 of each other are equal; among equals the earlier start
    wins, then the candidate declared first.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from operator import mul, sub
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind, check_same_kind, ensure_utc

__all__ = [
    "POLICIES",
    "Candidate",
    "Option",
    "Plan",
    "PlanningError",
    "plan",
]

UTC = timezone.utc
POLICIES = ("carbon-aware", "rolling-window", "next-hour-window", "greenest-now", "threshold", "run-now")
BEYOND_HORIZON = ("exclude", "persist")
_TIE = 1e-9


class PlanningError(ValueError):
    """Raised when a plan cannot be made from the inputs given; the message says which input."""


@dataclass(frozen=True)
class Candidate:
    """Somewhere the job can run: a cluster (connection id) drawing power from ``zone``.

    :param cluster_id: the Kubernetes connection id (or any name the caller uses).
    :param zone: the grid zone whose forecast applies.
    :param capacity: at most this many planned jobs may overlap on this candidate (``None``:
        unlimited); see ``busy`` in :func:`plan`.
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


@dataclass(frozen=True)
class Plan:
    """The planner's decision and everything needed to explain it."""

    policy: str
    now: datetime
    latest_start: datetime
    duration: timedelta
    chosen: Option
    baseline: Option
    best_per_candidate: tuple[Option, ...]
    signal: SignalKind
    reason: str
    horizon_limited: bool = False
    kept_incumbent: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def waits(self) -> bool:
        """Whether the chosen start is later than now."""
        return self.chosen.start > self.now

    @property
    def moves(self) -> bool:
        """Whether the chosen candidate is not the home (first) candidate."""
        return self.chosen.candidate != self.baseline.candidate

    @property
    def expected_saving_pct(self) -> float:
        """Expected reduction of the chosen option against running at home now, in percent."""
        base = self.baseline.mean_intensity
        if base <= 0:
            return 0.0
        return 100.0 * (base - self.chosen.mean_intensity) / base

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-safe dict (the shape the operator pushes to XCom)."""
        return {
            "policy": self.policy,
            "signal": self.signal.value,
            "now": _iso(self.now),
            "latest_start": _iso(self.latest_start),
            "duration_s": self.duration.total_seconds(),
            "chosen_cluster": self.chosen.candidate.cluster_id,
            "zone": self.chosen.candidate.zone,
            "home_cluster": self.baseline.candidate.cluster_id,
            "planned_start": _iso(self.chosen.start),
            "waited": self.waits,
            "expected_intensity": round(self.chosen.mean_intensity, 3),
            "baseline_intensity": round(self.baseline.mean_intensity, 3),
            "expected_saving_pct": round(self.expected_saving_pct, 2),
            "horizon_limited": self.horizon_limited,
            "candidates": [o.to_dict() for o in self.best_per_candidate],
            "reason": self.reason,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class _Zone:
    """Prefix sums of one forecast, extended by persistence beyond its end.

    Unknown intervals (gaps) hold the last known value in ``v`` and ``c``, which is what
    starting now is scored with; ``u`` sums the unknown seconds, so that :meth:`known` can
    tell whether a run overlaps a gap.
    """

    __slots__ = ("b", "c", "end", "gap", "n", "u", "uniform", "v")

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

    def best(self, lo: float, hi: float, dur: float) -> tuple[float, float]:
        """Return ``(integral, start)`` of the lowest-emission start in ``[lo, hi]``, earliest on ties."""
        b, c, n, cum = self.b, self.c, self.n, self.cum
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
                scores.extend(cj - ci for ci, cj in zip(c[i0:split], c[i0 + k : split + k]))
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
        limit = best + _TIE * max(1.0, abs(best))
        start = min(s for s, sc in zip(starts, scores) if sc <= limit)
        return scores[starts.index(start)], start


def plan(
    candidates: Sequence[Candidate],
    forecasts: Mapping[str, IntensitySeries],
    *,
    now: datetime,
    duration: timedelta,
    latest_start: datetime,
    policy: str = "carbon-aware",
    min_saving_pct: float = 0.0,
    min_saving_abs: float = 0.0,
    threshold_pct: float = 10.0,
    incumbent: Option | None = None,
    busy: Iterable[tuple[str, datetime, datetime]] = (),
    beyond_horizon: str = "exclude",
    allow_mixed_signals: bool = False,
) -> Plan:
    """Choose the candidate and start time for one job.

    :param candidates: where the job may run; the first is home, the baseline.
    :param forecasts: one series per zone, each covering ``now``.
    :param now: the current instant (timezone-aware); never read from a clock here.
    :param duration: how long the job runs.
    :param latest_start: the last allowed start (deadline minus duration, or arrival plus
        maximum delay); if it is before ``now`` the job starts now.
    :param policy: one of :data:`POLICIES` (see the module docs and DESIGN.md).
    :param min_saving_pct: hysteresis (``carbon-aware`` only), relative: percent the best
        option must beat the incumbent by.
    :param min_saving_abs: hysteresis, absolute: gCO2eq/kWh the best option must beat the
        incumbent by.
    :param threshold_pct: for ``threshold``: move only when home exceeds the greenest zone's
        current intensity by more than this percentage.
    :param incumbent: the option chosen by an earlier plan (when re-planning); it is kept
        unless beaten by the hysteresis margin.
    :param busy: ``(cluster_id, start, end)`` of jobs already planned, for capacities: a
        start where a candidate already holds ``capacity`` overlapping jobs is not an option,
        and a candidate full for the whole window drops out. If every candidate is full, the
        job starts now at home (a deadline is never traded for capacity).
    :param beyond_horizon: ``"exclude"`` or ``"persist"``; see the module docs.
    :param allow_mixed_signals: accept average and marginal forecasts in one comparison.
    """
    if policy not in POLICIES:
        raise PlanningError(f"policy {policy!r} is unknown; use one of: {', '.join(POLICIES)}")
    if beyond_horizon not in BEYOND_HORIZON:
        raise PlanningError(f"beyond_horizon {beyond_horizon!r} is unknown; use 'exclude' or 'persist'")
    if not candidates:
        raise PlanningError("no candidates: give at least one cluster (the first one is home)")
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise PlanningError(f"duration must be a positive timedelta, got {duration!r}")
    for name, value in (("min_saving_pct", min_saving_pct), ("min_saving_abs", min_saving_abs),
                        ("threshold_pct", threshold_pct)):
        if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
            raise PlanningError(f"{name} must be a number >= 0, got {value!r}")
    now = ensure_utc(now, "now")
    latest_start = ensure_utc(latest_start, "latest_start")
    home = candidates[0]
    if policy in ("rolling-window", "next-hour-window", "run-now"):
        pool: Sequence[Candidate] = [home]
    else:
        pool = candidates

    zones: dict[str, _Zone] = {}
    used = []
    for cand in pool:
        if cand.zone in zones:
            continue
        series = forecasts.get(cand.zone)
        if series is None:
            raise PlanningError(
                f"no forecast for zone {cand.zone!r} (candidate {cand.cluster_id}); "
                f"forecasts were given for: {', '.join(sorted(forecasts)) or 'none'}"
            )
        if not series.bounds[0] <= now.timestamp() < series.bounds[-1]:
            raise PlanningError(
                f"the forecast for zone {cand.zone} covers {series.start.isoformat()} to "
                f"{series.end.isoformat()}, not now ({now.isoformat()}); fetch a current forecast"
            )
        zones[cand.zone] = _Zone(series)
        used.append(series)
    signal = check_same_kind(used, allow_mixed=allow_mixed_signals)

    t_now = now.timestamp()
    dur = duration.total_seconds()
    t_latest = max(latest_start.timestamp(), t_now)
    busy_list = [(c, ensure_utc(s, "busy start").timestamp(), ensure_utc(e, "busy end").timestamp())
                 for c, s, e in busy]

    def mean(z: _Zone, start: float) -> float:
        return (z.cum(start + dur) - z.cum(start)) / dur

    baseline = Option(home, now, mean(zones[home.zone], t_now))
    horizon_limited = any(z.end < t_latest + dur for z in zones.values())

    options: list[Option] = []
    if policy == "run-now":
        chosen = baseline
        reason = "policy run-now: start now on the home cluster"
    elif policy in ("greenest-now", "threshold"):
        room = [c for c in pool if _fits(t_now, dur, [(s, e) for k, s, e in busy_list if k == c.cluster_id],
                                        c.capacity)]
        pool = room or [home]
        current = {c.zone: zones[c.zone].value_at(t_now) for c in pool}
        options = [Option(c, now, mean(zones[c.zone], t_now)) for c in pool]
        order = sorted(range(len(pool)), key=lambda i: (current[pool[i].zone], i))
        greenest = options[order[0]]
        if policy == "greenest-now":
            chosen = greenest
            reason = (
                f"policy greenest-now: {greenest.candidate.cluster_id} ({greenest.candidate.zone}) has the "
                f"lowest current intensity, {current[greenest.candidate.zone]:.0f} g/kWh"
            )
        else:
            home_now = current[home.zone]
            green_now = current[greenest.candidate.zone]
            if home_now > green_now * (1 + threshold_pct / 100.0):
                chosen = greenest
                reason = (
                    f"policy threshold: home {home.zone} at {home_now:.0f} g/kWh exceeds "
                    f"{greenest.candidate.zone} at {green_now:.0f} by more than {threshold_pct:g} %"
                )
            else:
                chosen = baseline
                reason = (
                    f"policy threshold: home {home.zone} at {home_now:.0f} g/kWh is within "
                    f"{threshold_pct:g} % of the greenest zone; stay home"
                )
    else:
        options = _best_options(policy, pool, zones, t_now, t_latest, dur, beyond_horizon, busy_list)
        if not options:
            reason = (
                f"{policy}: every candidate is at capacity for the whole window; starting now on the "
                f"home cluster {home.cluster_id} rather than missing the deadline"
            )
            return Plan(policy, now, _dt(t_latest), duration, baseline, baseline, (), signal, reason,
                        horizon_limited)
        best = min(options, key=lambda o: o.mean_intensity)
        limit = best.mean_intensity * (1 + _TIE) + _TIE
        best = min(
            (o for o in options if o.mean_intensity <= limit),
            key=lambda o: (o.start, pool.index(o.candidate)),
        )
        if policy != "carbon-aware":  # the peers' rules: their best, no hysteresis
            reason = _explain(policy, best, baseline, False, False, 0.0, 0.0, 0.0, 0.0, now)
            return Plan(policy, now, _dt(t_latest), duration, best, baseline, tuple(options), signal, reason,
                        horizon_limited)
        if incumbent is not None and incumbent.candidate.zone in zones:
            start_t = max(incumbent.start, now).timestamp()
            if start_t > t_now and not zones[incumbent.candidate.zone].known(start_t, start_t + dur):
                incumbent = None  # its run now crosses a gap in the forecast: plan afresh
        base = incumbent if incumbent is not None else baseline
        if incumbent is not None:
            start = max(incumbent.start, now)
            zone = zones.get(incumbent.candidate.zone)
            if zone is None:
                raise PlanningError(
                    f"incumbent zone {incumbent.candidate.zone!r} has no forecast; pass it in forecasts"
                )
            base = Option(incumbent.candidate, start, mean(zone, start.timestamp()))
        gain = base.mean_intensity - best.mean_intensity
        gain_pct = 100.0 * gain / base.mean_intensity if base.mean_intensity > 0 else 0.0
        if (best.candidate, best.start) == (base.candidate, base.start):
            chosen, kept = base, incumbent is not None
        elif gain > _TIE * max(1.0, base.mean_intensity) and gain_pct >= min_saving_pct and gain >= min_saving_abs:
            chosen, kept = best, False
        else:
            chosen, kept = base, True
        reason = _explain(policy, chosen, baseline, kept, incumbent is not None, gain, gain_pct,
                          min_saving_pct, min_saving_abs, now)
        return Plan(policy, now, _dt(t_latest), duration, chosen, baseline, tuple(options), signal, reason,
                    horizon_limited, kept and incumbent is not None)
    return Plan(policy, now, _dt(t_latest), duration, chosen, baseline, tuple(options), signal, reason,
                horizon_limited)


def _best_options(
    policy: str,
    pool: Sequence[Candidate],
    zones: Mapping[str, _Zone],
    t_now: float,
    t_latest: float,
    dur: float,
    beyond_horizon: str,
    busy: list[tuple[str, float, float]],
) -> list[Option]:
    """Return the best option per candidate under ``policy`` (starting now is always allowed)."""
    per_zone: dict[str, tuple[float, float]] = {}
    options = []
    for cand in pool:
        z = zones[cand.zone]
        hi = t_latest if beyond_horizon == "persist" else min(t_latest, z.end - dur)
        hi = max(hi, t_now)
        mine = [(s, e) for c, s, e in busy if c == cand.cluster_id] if cand.capacity else []
        if policy == "next-hour-window":
            first = math.ceil(t_now / 3600.0) * 3600.0
            starts = [first + 3600.0 * k for k in range(int((hi - first) // 3600.0) + 1)] if first <= hi else []
            starts = [s for s in starts if _fits(s, dur, mine, cand.capacity) and (s == t_now or z.known(s, s + dur))]
            if not starts:  # no full hour left (or all full): start now, if there is room
                if not _fits(t_now, dur, mine, cand.capacity):
                    continue
                starts = [t_now]
            scored = [(z.cum(s + dur) - z.cum(s), s) for s in starts]
            best_score = min(sc for sc, _ in scored)
            limit = best_score + _TIE * max(1.0, abs(best_score))
            score, start = min((s, sc) for sc, s in scored if sc <= limit)[::-1]
        elif mine:
            found = _best_with_capacity(z, t_now, hi, dur, mine, cand.capacity)
            if found is None:  # full for the whole window: not an option
                continue
            score, start = found
        else:
            if cand.zone not in per_zone:
                per_zone[cand.zone] = z.best(t_now, hi, dur)
            score, start = per_zone[cand.zone]
        options.append(Option(cand, _dt(start), score / dur))
    return options


def _fits(start: float, dur: float, busy: list[tuple[float, float]], capacity: int | None) -> bool:
    if not capacity:
        return True
    overlapping = sum(1 for s, e in busy if s < start + dur and start < e)
    return overlapping < capacity


def _best_with_capacity(
    z: _Zone, lo: float, hi: float, dur: float, busy: list[tuple[float, float]], capacity: int | None
) -> tuple[float, float] | None:
    """Like :meth:`_Zone.best` but skipping starts where the candidate is full; None if always full."""
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
    feasible = sorted(t for t in extra if _fits(t, dur, busy, capacity) and (t == lo or z.known(t, t + dur)))
    if not feasible:
        return None
    scored = [(z.cum(t + dur) - z.cum(t), t) for t in feasible]
    best = min(sc for sc, _ in scored)
    limit = best + _TIE * max(1.0, abs(best))
    return next((sc, t) for sc, t in scored if sc <= limit)


def _explain(
    policy: str,
    chosen: Option,
    baseline: Option,
    kept: bool,
    replanning: bool,
    gain: float,
    gain_pct: float,
    min_pct: float,
    min_abs: float,
    now: datetime,
) -> str:
    wait = chosen.start - now
    where = f"{chosen.candidate.cluster_id} ({chosen.candidate.zone})"
    when = "now" if wait <= timedelta(0) else f"in {_human(wait)} at {_iso(chosen.start)}"
    saving = (
        100.0 * (baseline.mean_intensity - chosen.mean_intensity) / baseline.mean_intensity
        if baseline.mean_intensity > 0
        else 0.0
    )
    sentence = (
        f"{policy}: start {when} on {where}, expected {chosen.mean_intensity:.0f} g/kWh against "
        f"{baseline.mean_intensity:.0f} g/kWh at home now ({saving:.1f} % lower)"
    )
    if kept and gain > 0:
        what = "the current plan" if replanning else "running now at home"
        sentence += (
            f"; kept {what} because the best alternative saves only {gain_pct:.1f} % / {gain:.0f} g/kWh "
            f"(below min_saving {min_pct:g} % / {min_abs:g} g/kWh)"
        )
    return sentence


def _human(delta: timedelta) -> str:
    minutes = int(round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
