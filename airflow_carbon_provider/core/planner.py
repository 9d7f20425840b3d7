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

Contention
    Where others' bookings partly fill a candidate with a capacity, its starts are ranked by a
    price raised for how full and how far ahead they are (``contention_pct``, see
    :mod:`airflow_carbon_provider.core.contention`), hysteresis included; what a plan
    publishes is the forecast mean all the same. Without bookings the price is the mean.

Ties
    Options within a relative 1e-9 of each other are equal; among equals the earlier start
    wins, then the candidate declared first.

Policies
    What is chosen from the options is the policy's: see :mod:`airflow_carbon_provider.core.policies`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.contention import DEFAULT_CONTENTION_PCT
from airflow_carbon_provider.core.policies import PlanContext, get_policy, policy_names
from airflow_carbon_provider.core.resources import Booking, Resources
from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind, check_same_kind, ensure_utc
from airflow_carbon_provider.core.windows import (
    TIE,
    Candidate,
    Option,
    PlanningError,
    Zone,
    demand_of,
    loads_for,
)

__all__ = [
    "POLICIES",
    "Candidate",
    "Option",
    "Plan",
    "PlanningError",
    "plan",
]

UTC = timezone.utc
#: The policies a task may use (the registry's online ones; the backtest adds ``oracle``).
POLICIES = policy_names()
BEYOND_HORIZON = ("exclude", "persist")


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
    #: ``(cluster_id, resource)`` of each candidate whose better option (by forecast) capacity
    #: ruled out, best first; the reason says how full it was and what was taken instead.
    capacity_limited: tuple[tuple[str, str], ...] = ()

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
            **({"capacity_limited": [list(pair) for pair in self.capacity_limited]} if self.capacity_limited else {}),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


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
    busy: Iterable[Booking | tuple[str, datetime, datetime]] = (),
    beyond_horizon: str = "exclude",
    allow_mixed_signals: bool = False,
    demand: Resources | None = None,
    contention_pct: float = DEFAULT_CONTENTION_PCT,
) -> Plan:
    """Choose the candidate and start time for one job.

    :param candidates: where the job may run; the first is home, the baseline.
    :param forecasts: one series per zone, each covering ``now``.
    :param now: the current instant (timezone-aware); never read from a clock here.
    :param duration: how long the job runs.
    :param latest_start: the last allowed start (deadline minus duration, or arrival plus
        maximum delay); if it is before ``now`` the job starts now.
    :param policy: the name of a registered policy (:mod:`airflow_carbon_provider.core.policies`).
    :param min_saving_pct: hysteresis (``carbon-aware`` only), relative: percent the best
        option must beat the incumbent by.
    :param min_saving_abs: hysteresis, absolute: gCO2eq/kWh the best option must beat the
        incumbent by.
    :param threshold_pct: for ``threshold``: move only when home exceeds the greenest zone's
        current intensity by more than this percentage.
    :param incumbent: the option chosen by an earlier plan (when re-planning); it is kept
        unless beaten by the hysteresis margin.
    :param busy: what other jobs already hold, for capacities: :class:`~airflow_carbon_provider.core.resources.Booking`
        values (epoch seconds, a demand each) or, as before, ``(cluster_id, start, end)``
        triples of datetimes (one pod each). A start fits a candidate when, for every resource
        its capacity names and the job asks for, the peak booked load over the run plus
        ``demand`` is at most the capacity; a candidate with no fitting start drops out. If
        every candidate is full, the job starts now at home (a deadline is never traded for
        capacity) and the reason names the resource. ``Plan.capacity_limited`` names each
        candidate whose better option capacity ruled out.
    :param demand: what the job asks for (resource name to amount, see
        :mod:`~airflow_carbon_provider.core.resources`); one pod is always included. Default: one pod.
    :param contention_pct: where others' bookings partly fill a candidate, raise the price its
        starts are *ranked* by, up to this percent for a full slot at the end of the window and
        nothing for a start now, so that jobs spread before the greenest slots fill (see
        :mod:`~airflow_carbon_provider.core.contention`); 0 ranks by the forecast alone. The
        published expected intensity is the forecast's in every case.
    :param beyond_horizon: ``"exclude"`` or ``"persist"``; see the module docs.
    :param allow_mixed_signals: accept average and marginal forecasts in one comparison.
    """
    chosen_policy = get_policy(policy)
    if beyond_horizon not in BEYOND_HORIZON:
        raise PlanningError(f"beyond_horizon {beyond_horizon!r} is unknown; use 'exclude' or 'persist'")
    if not candidates:
        raise PlanningError("no candidates: give at least one cluster (the first one is home)")
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise PlanningError(f"duration must be a positive timedelta, got {duration!r}")
    for name, value in (("min_saving_pct", min_saving_pct), ("min_saving_abs", min_saving_abs),
                        ("threshold_pct", threshold_pct), ("contention_pct", contention_pct)):
        if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
            raise PlanningError(f"{name} must be a number >= 0, got {value!r}")
    now = ensure_utc(now, "now")
    latest_start = ensure_utc(latest_start, "latest_start")
    home = candidates[0]
    pool: Sequence[Candidate] = candidates if chosen_policy.spatial else [home]

    zones: dict[str, Zone] = {}
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
        zones[cand.zone] = Zone(series)
        used.append(series)
    signal = check_same_kind(used, allow_mixed=allow_mixed_signals)

    t_now = now.timestamp()
    dur = duration.total_seconds()
    t_latest = max(latest_start.timestamp(), t_now)
    busy_list = [bk if isinstance(bk, Booking) else
                 Booking(bk[0], ensure_utc(bk[1], "busy start").timestamp(), ensure_utc(bk[2], "busy end").timestamp())
                 for bk in busy]
    asked = demand_of(demand)
    loads = loads_for(pool, asked, busy_list, t_now, max(t_latest, t_now), dur)

    baseline = Option(home, now, (zones[home.zone].cum(t_now + dur) - zones[home.zone].cum(t_now)) / dur)
    horizon_limited = any(z.end < t_latest + dur for z in zones.values())
    context = PlanContext(pool, home, zones, baseline, now, t_now, t_latest, dur, beyond_horizon, busy_list,
                          threshold_pct, min_saving_pct, min_saving_abs, incumbent, asked, loads, contention_pct / 100.0)
    choice = chosen_policy.choose(context)
    chosen = choice.chosen
    slack = TIE * max(1.0, abs(chosen.mean_intensity))
    reason = choice.reason
    if not choice.options and choice.limits:  # every candidate full: the reason names each already
        better = list(choice.limits)
    else:
        better = sorted((lim for lim in choice.limits if lim.option.mean_intensity < chosen.mean_intensity - slack),
                        key=lambda lim: lim.option.mean_intensity)
    if better and choice.options:
        full = "; ".join(f"{lim.option.candidate.cluster_id} was full ({lim.clause})" for lim in better)
        reason += f"; {full}; took {chosen.candidate.cluster_id} at {chosen.start.astimezone(UTC):%H:%M}"
    return Plan(policy, now, _dt(t_latest), duration, chosen, baseline, choice.options, signal, reason,
                horizon_limited, choice.kept_incumbent,
                capacity_limited=tuple((lim.option.candidate.cluster_id, lim.resource) for lim in better))
