"""Replay real grid traces to measure what each scheduling policy would have emitted.

Jobs arrive every ``arrival_every`` from ``start``; each runs uninterrupted for ``duration``
at constant power and may start up to ``max_delay`` after it arrives. A policy chooses a zone
and a start from forecasts (see :mod:`~airflow_carbon_provider.core.forecast`); the job is
then charged the *actual* mean intensity over its run. ``oracle`` plans once on the actuals;
``carbon-aware`` plans on the forecast at arrival and re-plans at every forecast refresh while
it waits and once more at the planned start (its last look), as the deferrable trigger does; the
other policies decide once, at arrival.

Capacities
    With ``capacities`` (zone to the number of jobs that may run there at once) and
    ``jobs_per_arrival`` K, K identical jobs arrive at each instant. Each policy whose
    ``coordinated`` flag is set (every one but ``run-now`` and ``carbon-aware-uncoordinated``)
    plans the jobs in arrival order, each seeing the bookings of every job planned before it;
    a job's re-plan moves its own booking and leaves the others'. Re-plans happen in time
    order across jobs (at one instant, the earlier arrival first), at each refresh only (no
    last look), on every forecast: the contention price a plan ranks by (see
    :mod:`~airflow_carbon_provider.core.contention`) changes with lead time and the others'
    bookings, so even a perfect forecast's re-plan may move a job. ``run-now`` ignores
    capacity (it is what happens without us) and ``carbon-aware-uncoordinated`` plans each
    job alone. ``oracle`` is the offline optimum that respects the capacities: an exact
    integer program over starts on the ``refresh`` grid (:mod:`airflow_carbon_provider.backtest_solver`,
    which needs scipy), or as before without capacities.

    Jobs are then admitted in start order: a job that finds its zone full over its run (more
    than the capacity would overlap it) is a *capacity overflow*; it is charged as running at
    home over the same run (the cluster would not have taken it; home is where it came
    from), so no policy is credited for room it did not have, and the overflows are counted.
    ``peak_load`` is the highest number of jobs a policy asked of each zone at once, before
    that admission: an uncoordinated policy's peak exceeds the capacity.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.conditioning import condition, worth_waiting
from airflow_carbon_provider.core.forecast import ForecastModel, realistic_sigma
from airflow_carbon_provider.core.planner import Candidate, Option, plan
from airflow_carbon_provider.core.policies import get_policy, policy_names
from airflow_carbon_provider.core.resources import Booking
from airflow_carbon_provider.core.signals import IntensitySeries, check_same_kind

__all__ = [
    "BacktestError",
    "BacktestResult",
    "JobOutcome",
    "OracleInstance",
    "PolicySummary",
    "common_period",
    "run_backtest",
]

UTC = timezone.utc


def backtest_policies(*, capacities: bool = True) -> tuple[str, ...]:
    """Return every registered policy, the baseline and the offline bound first.

    Read from the registry each time, so a policy registered later appears here, in the CLI
    and in the report without further changes. Without ``capacities`` the comparisons that
    exist only to measure coordination (``carbon-aware-uncoordinated``: backtest-only and
    uncoordinated) are left out: with nothing to coordinate they equal their coordinated twin.
    """
    names = ("run-now", "oracle", *(p for p in policy_names(offline=True) if p not in ("run-now", "oracle")))
    if capacities:
        return names
    return tuple(p for p in names if not (get_policy(p).backtest_only and not get_policy(p).coordinated))


class BacktestError(ValueError):
    """Raised for backtest inputs that cannot work; the message names the input and the fix."""


@dataclass(frozen=True)
class JobOutcome:
    """Where and when one job ran under one policy, and its actual mean intensity."""

    arrival: datetime
    zone: str
    start: datetime
    intensity: float
    replans: int = 0
    #: The zone the policy chose when it differs from ``zone`` (a capacity overflow charged at home).
    planned_zone: str | None = None

    @property
    def overflow(self) -> bool:
        """Whether the job found its chosen zone full (see the module docs)."""
        return self.planned_zone is not None

    @property
    def delay(self) -> timedelta:
        """How long the job waited after arriving."""
        return self.start - self.arrival


@dataclass(frozen=True)
class PolicySummary:
    """Aggregates for one policy over all jobs, in the shape of the JSON contract."""

    mean_intensity: float
    reduction_pct: float
    fraction_of_oracle: float | None
    mean_delay_h: float
    max_delay_h: float
    deadline_misses: int
    moved_pct: float
    peak_load: dict[str, int] = field(default_factory=dict)
    capacity_overflows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-contract dict (rounded for reading)."""
        extra: dict[str, Any] = {"peak_load": dict(self.peak_load)}
        if self.capacity_overflows is not None:
            extra["capacity_overflows"] = self.capacity_overflows
        return {
            "mean_intensity": round(self.mean_intensity, 2),
            "reduction_pct": round(self.reduction_pct, 2),
            "fraction_of_oracle": None if self.fraction_of_oracle is None else round(self.fraction_of_oracle, 4),
            "mean_delay_h": round(self.mean_delay_h, 3),
            "max_delay_h": round(self.max_delay_h, 3),
            "deadline_misses": self.deadline_misses,
            "moved_pct": round(self.moved_pct, 2),
            **extra,
        }


@dataclass
class BacktestResult:
    """Everything a backtest measured."""

    zones: list[str]
    home_zone: str
    forecast: str
    job_duration: timedelta
    max_delay: timedelta
    arrivals: list[datetime]
    outcomes: dict[str, list[JobOutcome]]
    summaries: dict[str, PolicySummary] = field(default_factory=dict)
    capacities: dict[str, int] = field(default_factory=dict)
    jobs_per_arrival: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the ``--format json`` object of the DESIGN contract."""
        capacity: dict[str, Any] = (
            {"capacities": dict(self.capacities), "jobs_per_arrival": self.jobs_per_arrival}
            if self.capacities or self.jobs_per_arrival != 1 else {}
        )
        return {
            "jobs": len(self.arrivals) * self.jobs_per_arrival,
            "zones": self.zones,
            "home_zone": self.home_zone,
            "forecast": self.forecast,
            "job_duration_h": self.job_duration.total_seconds() / 3600,
            "max_delay_h": self.max_delay.total_seconds() / 3600,
            "period": {
                "first_arrival": _iso(self.arrivals[0]),
                "last_arrival": _iso(self.arrivals[-1]),
            },
            **capacity,
            **({"notes": list(self.notes)} if self.notes else {}),
            "policies": {name: s.to_dict() for name, s in self.summaries.items()},
        }


def _forecast_notes(forecast: ForecastModel, job_duration: timedelta) -> list[str]:
    """Say what the results depend on that the user may not expect: archived forecasts shorter than a job."""
    typical = getattr(forecast, "typical_horizon", None)
    horizon = typical() if typical is not None else None
    if horizon is None or horizon >= job_duration:
        return []
    return [f"the archived forecasts reach {horizon.total_seconds() / 60:.0f} min ahead (median), less than "
            f"--job-duration {job_duration.total_seconds() / 60:.0f} min: every run's later part is planned on "
            "measured values held or extended by the zone's daily profile, not on a forecast"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def common_period(actuals: Mapping[str, IntensitySeries], zones: Sequence[str]) -> tuple[datetime, datetime]:
    """Return the period every zone in ``zones`` has data for, or raise naming each zone's span."""
    start = max(actuals[z].start for z in zones)
    end = min(actuals[z].end for z in zones)
    if end <= start:
        spans = "; ".join(f"{z}: {actuals[z].start:%Y-%m-%d %H:%M} to {actuals[z].end:%Y-%m-%d %H:%M}" for z in zones)
        raise BacktestError(f"the traces' periods do not overlap ({spans}); give traces that share a period")
    return start, end


def run_backtest(
    actuals: Mapping[str, IntensitySeries],
    *,
    zones: Sequence[str],
    home_zone: str,
    job_duration: timedelta,
    max_delay: timedelta,
    arrival_every: timedelta,
    forecast: ForecastModel,
    policies: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    forecast_horizon: timedelta = timedelta(hours=48),
    refresh: timedelta = timedelta(hours=1),
    threshold_pct: float = 10.0,
    min_saving_pct: float = 0.0,
    robust: bool = True,
    progress: Callable[[int, int], None] | None = None,
    capacities: Mapping[str, int] | None = None,
    jobs_per_arrival: int = 1,
    oracle_solver: Callable[[OracleInstance], list[list[tuple[str, float]]]] | None = None,
    last_look: bool = True,
) -> BacktestResult:
    """Run every policy over the same jobs and return per-job outcomes and summaries.

    :param robust: ``carbon-aware`` (the policies that re-plan) plans on forecasts conditioned
        on each zone's measured history (:func:`~airflow_carbon_provider.core.conditioning.condition`):
        corrected by the latest measured value, shrunk toward the zone's profile by the
        forecast model's error by lead (its ``sigma``), and extended past their horizon.
    :param capacities: zone to how many jobs may run there at once (see the module docs).
    :param jobs_per_arrival: how many identical jobs arrive at each instant.
    :param oracle_solver: solves ``oracle`` under capacities (default:
        :func:`airflow_carbon_provider.backtest_solver.solve_oracle`, which needs scipy).
    :param last_look: ``carbon-aware`` re-plans once more at its planned start, on the newest
        issue, as the trigger does, and waits longer only if the gain beats one forecast error
        at the new start's lead (:func:`~airflow_carbon_provider.core.conditioning.worth_waiting`,
        with the calibrated default error); off: the start comes without a last re-plan.
    """
    zones = list(dict.fromkeys(zones))
    if not zones:
        raise BacktestError("--zones is empty; name at least one zone, e.g. --zones DE,GB")
    missing = [z for z in zones if z not in actuals]
    if missing:
        raise BacktestError(
            f"unknown zone(s) {', '.join(missing)}: the traces hold {', '.join(sorted(actuals))}; "
            "fix --zones or add a --trace with those zones"
        )
    if home_zone not in zones:
        raise BacktestError(f"--home-zone {home_zone} is not one of --zones ({', '.join(zones)}); add it")
    for name, value in (("--job-duration", job_duration), ("--arrival-every", arrival_every),
                        ("--refresh", refresh), ("--forecast-horizon", forecast_horizon)):
        if value <= timedelta(0):
            raise BacktestError(f"{name} must be longer than zero, got {value}")
    if max_delay < timedelta(0):
        raise BacktestError(f"--max-delay must be zero or more, got {max_delay}")
    if isinstance(jobs_per_arrival, bool) or not isinstance(jobs_per_arrival, int) or jobs_per_arrival < 1:
        raise BacktestError(f"--jobs-per-arrival must be a whole number of jobs >= 1, got {jobs_per_arrival!r}")
    caps = dict(capacities or {})
    for zone, cap in caps.items():
        if zone not in zones:
            raise BacktestError(f"--capacity {zone}={cap}: {zone} is not one of --zones ({', '.join(zones)})")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise BacktestError(f"--capacity {zone}={cap}: a capacity is a whole number of jobs >= 1")
    known = backtest_policies()
    policies = backtest_policies(capacities=bool(capacities)) if policies is None else policies
    unknown = [p for p in policies if p not in known]
    if unknown:
        raise BacktestError(f"unknown policy {unknown[0]!r}; use one of: {', '.join(known)}")
    # Every figure is measured against run-now (reduction) and oracle (fraction of oracle),
    # so those two always run.
    policies = list(dict.fromkeys(["run-now", "oracle", *policies]))
    if forecast_horizon < job_duration:
        raise BacktestError(
            f"--forecast-horizon {forecast_horizon} is shorter than --job-duration {job_duration}; "
            "a forecast must cover at least one run"
        )
    check_same_kind([actuals[z] for z in zones])
    check_zones = getattr(forecast, "check_zones", None)
    if check_zones is not None:
        check_zones(zones)

    first, last = common_period(actuals, zones)
    first_arrival = first if start is None else max(start, first)
    if start is not None and start < first:
        raise BacktestError(f"--start {_iso(start)} is before the traces' common period ({_iso(first)}); move it later")
    horizon_end = last if end is None else min(end, last)
    span = job_duration + max_delay
    arrivals = []
    t = first_arrival
    while t + span <= horizon_end:
        arrivals.append(t)
        t += arrival_every
    if not arrivals:
        raise BacktestError(
            f"no job fits: the period {_iso(first_arrival)} to {_iso(horizon_end)} is shorter than "
            f"--job-duration plus --max-delay ({span}); use longer traces or shorter jobs"
        )

    candidates = [Candidate(z, z, capacity=caps.get(z)) for z in [home_zone] + [z for z in zones if z != home_zone]]
    home_only = candidates[:1]
    k_jobs = jobs_per_arrival
    outcomes: dict[str, list[JobOutcome]] = {p: [] for p in policies}
    # A forecast that never revises itself (perfect) can be planned on as the whole trace when
    # its horizon covers the slack plus the run: every start the planner may choose lies inside
    # both, so the choice is the same, and the prefix sums are built once, not per window.
    # Re-planning on such a forecast cannot change the plan (the earlier plan was the optimum
    # of a window that contains the later one, and later jobs' bookings respected it), so
    # those re-plans are counted, not computed.
    revises = getattr(forecast, "revises", True)
    whole = actuals if (not revises and forecast_horizon >= max_delay + job_duration) else None
    refresh_s = refresh.total_seconds()
    dur_s = job_duration.total_seconds()

    sigma = getattr(forecast, "sigma", None)
    memo: dict[tuple[Any, ...], dict[str, IntensitySeries]] = {}
    sigma_at = getattr(forecast, "sigma_at", None)  # an archive's own skill, measured up to now

    def forecasts_at(pool: Sequence[Candidate], now: datetime, until: datetime | None = None
                     ) -> dict[str, IntensitySeries]:
        if whole is not None:
            return {c.zone: whole[c.zone] for c in pool}
        key = (len(pool), now, until)
        found = memo.get(key)
        if found is not None:  # the K jobs of one arrival ask the same question at the same instants
            return found
        if len(memo) > 4096:
            memo.clear()
        fcs = {c.zone: forecast.forecast(c.zone, now, forecast_horizon) for c in pool}
        if until is not None:  # measured values up to now condition the forecast (no look-ahead)
            fcs = {z: condition(fc, actuals[z], now, until, sigma=sigma_at(z, now) if sigma_at else sigma)
                   for z, fc in fcs.items()}
        memo[key] = fcs
        return fcs

    def decide(policy: str, arrival: datetime, now: datetime, incumbent: Option | None,
               busy: Sequence[Booking]) -> Option:
        rule = get_policy(policy)
        pool = candidates if rule.spatial else home_only
        latest = arrival + max_delay
        until = latest + job_duration if robust and rule.replans else None
        return plan(pool, forecasts_at(pool, now, until), now=now, duration=job_duration, latest_start=latest,
                    policy=policy, threshold_pct=threshold_pct, min_saving_pct=min_saving_pct,
                    incumbent=incumbent, busy=busy).chosen

    def run(policy: str, arrival: datetime) -> JobOutcome:
        """One job planned alone (no bookings), re-planned at every refresh if the policy does."""
        latest = arrival + max_delay
        rule = get_policy(policy)
        if rule.offline:  # plans on what really happened
            choice = plan(candidates, {z: actuals[z] for z in zones}, now=arrival,
                          duration=job_duration, latest_start=latest, policy=policy).chosen
            return _charge(actuals, arrival, choice, job_duration)
        choice = decide(policy, arrival, arrival, None, ())
        replans = 0
        if rule.replans and not revises:
            wait = (choice.start - arrival).total_seconds()
            replans = max(0, math.ceil(wait / refresh_s) - (0 if last_look else 1))  # the last look counts
        elif rule.replans:
            now = arrival
            while choice.start > now:
                # At every refresh while waiting, and once more at the planned start itself on the
                # newest issue (the trigger's last look before it fires).
                now = min(now + refresh, choice.start)
                looking = now == choice.start
                if looking and not last_look:
                    break
                fcs = forecasts_at(candidates if rule.spatial else home_only, now,
                                   latest + job_duration if robust and rule.replans else None)
                planned, choice = choice, decide(policy, arrival, now, choice, ())
                replans += 1
                if looking and choice.start > now:  # the last look: wait longer only for a sure gain
                    now_mean = fcs[planned.candidate.zone].mean(now, now + job_duration)
                    lead = (choice.start - now).total_seconds()
                    if not worth_waiting(now_mean, choice.mean_intensity, lead, realistic_sigma):
                        choice = planned
        return _charge(actuals, arrival, choice, job_duration, replans)

    def coordinated(policy: str) -> list[JobOutcome]:
        """Every job in arrival order, each seeing the others' bookings; re-plans in time order."""
        rule = get_policy(policy)
        book = _Bookings(dur_s, list(caps))
        jobs = [(arrival, j) for arrival in arrivals for j in range(k_jobs)]
        choices: list[Option | None] = [None] * len(jobs)
        replans = [0] * len(jobs)
        queue = [(arrival.timestamp(), i) for i, (arrival, _) in enumerate(jobs)]
        heapq.heapify(queue)
        while queue:
            t, i = heapq.heappop(queue)
            arrival = jobs[i][0]
            now = datetime.fromtimestamp(t, UTC) if t != arrival.timestamp() else arrival
            incumbent = choices[i]
            if incumbent is not None:
                book.remove(i)
                replans[i] += 1
            latest = arrival + max_delay
            busy = book.around(t, latest.timestamp())
            choice = choices[i] = decide(policy, arrival, now, incumbent, busy)
            book.add(i, choice.candidate.zone, choice.start.timestamp())
            if rule.replans and now + refresh < choice.start:  # computed even on a perfect forecast: the
                heapq.heappush(queue, ((now + refresh).timestamp(), i))  # contention price moves with lead and load
        out = []
        for (arrival, _), final, n in zip(jobs, choices, replans):
            assert final is not None
            out.append(_charge(actuals, arrival, final, job_duration, n))
        return out

    def oracle_under_capacity() -> list[JobOutcome]:
        grid = refresh_s
        slots = []
        for arrival in arrivals:
            lo, hi = arrival.timestamp(), (arrival + max_delay).timestamp()
            starts = [lo + i * grid for i in range(int((hi - lo) // grid) + 1)]
            if starts[-1] < hi:
                starts.append(hi)
            slots.append(starts)
        zone_order = [c.zone for c in candidates]
        cost = [[[actuals[z].integral_ts(st, st + dur_s) / dur_s for st in starts] for z in zone_order]
                for starts in slots]
        instance = OracleInstance(zone_order, k_jobs, dur_s, slots, cost, dict(caps))
        solver = oracle_solver
        if solver is None:
            try:
                from airflow_carbon_provider.backtest_solver import solve_oracle  # scipy, imported on demand
            except ImportError:
                raise BacktestError(
                    "the oracle under --capacity solves an integer program with scipy; install it with: "
                    "pip install 'airflow-carbon-provider[backtest]'"
                ) from None
            solver = solve_oracle
        out = []
        for arrival, placed in zip(arrivals, solver(instance)):
            for zone, start_t in sorted(placed, key=lambda p: (p[1], zone_order.index(p[0]))):
                choice = Option(next(c for c in candidates if c.zone == zone), datetime.fromtimestamp(start_t, UTC),
                                0.0)
                out.append(_charge(actuals, arrival, choice, job_duration))
        return out

    total = len(arrivals) * len(policies)
    done = 0
    for policy in policies:
        rule = get_policy(policy)
        if rule.offline and caps:
            outcomes[policy] = oracle_under_capacity()
        elif caps and rule.coordinated and not rule.offline and any(
                c.capacity for c in (candidates if rule.spatial else home_only)):
            outcomes[policy] = coordinated(policy)
        else:  # identical jobs planned alone (or where nothing is limited) choose alike: plan one per arrival
            outcomes[policy] = [o for arrival in arrivals for o in [run(policy, arrival)] * k_jobs]
        done += len(arrivals)
        if progress is not None:
            progress(done, total)

    peaks = {p: _peak_load(jobs, dur_s) for p, jobs in outcomes.items()}
    if caps:
        outcomes = {p: _admit(jobs, caps, home_zone, actuals, job_duration) for p, jobs in outcomes.items()}
    result = BacktestResult(zones, home_zone, forecast.name, job_duration, max_delay, arrivals, outcomes,
                            capacities=caps, jobs_per_arrival=k_jobs, notes=_forecast_notes(forecast, job_duration))
    result.summaries = summarise(outcomes, home_zone, max_delay, peaks=peaks, capacities=caps or None)
    return result


@dataclass(frozen=True)
class OracleInstance:
    """The offline problem under capacities, as plain data for a solver.

    ``zones[0]`` is home; ``jobs`` identical jobs arrive at each arrival ``a``; ``starts[a]`` are
    its allowed starts (epoch seconds, on the refresh grid from the arrival to the latest
    start); ``cost[a][z][s]`` is the realised mean intensity of a run in ``zones[z]`` from
    ``starts[a][s]``; at most ``capacities[zone]`` runs of ``duration`` seconds overlap in a
    zone (zones not named are unlimited). A solver returns, per arrival, ``jobs`` pairs
    ``(zone, start)``; a job that fits nowhere runs at home at its arrival.
    """

    zones: list[str]
    jobs: int
    duration: float
    starts: list[list[float]]
    cost: list[list[list[float]]]
    capacities: dict[str, int]


class _Bookings:
    """The backtest's bookings by job, bucketed by start so a plan sees only those near its window.

    Only bookings in zones with a capacity are kept: elsewhere they cannot limit anything.
    """

    def __init__(self, dur: float, limited: Sequence[str]) -> None:
        self.dur = dur
        self.limited = set(limited)
        self.by_job: dict[int, Booking] = {}
        self.buckets: dict[int, dict[int, Booking]] = {}

    def add(self, job: int, zone: str, start: float) -> None:
        if zone in self.limited:
            bk = self.by_job[job] = Booking(zone, start, start + self.dur)
            self.buckets.setdefault(int(start // self.dur), {})[job] = bk

    def remove(self, job: int) -> None:
        bk = self.by_job.pop(job, None)
        if bk is not None:
            del self.buckets[int(bk.start // self.dur)][job]

    def around(self, lo: float, hi: float) -> list[Booking]:
        """Return the bookings that can meet a run starting in ``[lo, hi]``."""
        out: list[Booking] = []
        for b in range(int((lo - self.dur) // self.dur), int((hi + self.dur) // self.dur) + 1):
            bucket = self.buckets.get(b)
            if bucket:
                out.extend(bk for bk in bucket.values() if bk.end > lo and bk.start < hi + self.dur)
        return out


def _peak_load(jobs: Sequence[JobOutcome], dur: float) -> dict[str, int]:
    """Return, per zone, the most jobs running at once (a sweep over starts and ends)."""
    events: dict[str, list[tuple[float, int]]] = {}
    for o in jobs:
        t = o.start.timestamp()
        events.setdefault(o.zone, []).extend(((t, 1), (t + dur, -1)))
    peaks = {}
    for zone, evs in events.items():
        evs.sort()  # at one instant an end (-1) comes before a start (+1): back-to-back runs do not overlap
        load = peak = 0
        for _, d in evs:
            load += d
            peak = max(peak, load)
        peaks[zone] = peak
    return peaks


def _admit(jobs: Sequence[JobOutcome], caps: Mapping[str, int], home_zone: str,
           actuals: Mapping[str, IntensitySeries], duration: timedelta) -> list[JobOutcome]:
    """Admit jobs in start order; one that finds its zone full is charged at home over the same run."""
    dur = duration.total_seconds()
    running: dict[str, list[float]] = {z: [] for z in caps}  # starts of admitted runs, ascending
    out = list(jobs)
    for i in sorted(range(len(jobs)), key=lambda i: (jobs[i].start, i)):
        o = jobs[i]
        cap = caps.get(o.zone)
        if cap is None:
            continue
        starts = running[o.zone]
        t = o.start.timestamp()
        # Runs are equally long and admitted in start order, so the ones overlapping this run
        # are those that started less than a run's length ago, and the peak is at its start.
        active = len(starts) - bisect_right(starts, t - dur)
        if active < cap:
            starts.append(t)
            continue
        intensity = actuals[home_zone].integral_ts(t, t + dur) / dur
        out[i] = JobOutcome(o.arrival, home_zone, o.start, intensity, o.replans, planned_zone=o.zone)
    return out


def _charge(
    actuals: Mapping[str, IntensitySeries], arrival: datetime, choice: Option, duration: timedelta, replans: int = 0
) -> JobOutcome:
    zone = choice.candidate.zone
    lo = choice.start.timestamp()
    intensity = actuals[zone].integral_ts(lo, lo + duration.total_seconds()) / duration.total_seconds()
    return JobOutcome(arrival, zone, choice.start, intensity, replans)


def summarise(
    outcomes: Mapping[str, list[JobOutcome]], home_zone: str, max_delay: timedelta, *,
    peaks: Mapping[str, dict[str, int]] | None = None, capacities: Mapping[str, int] | None = None,
) -> dict[str, PolicySummary]:
    """Aggregate per-job outcomes into the contract's per-policy figures.

    :param peaks: per policy, the peak load per zone (see :func:`run_backtest`).
    :param capacities: when given, each summary counts its ``capacity_overflows``.
    """
    means = {p: math.fsum(o.intensity for o in jobs) / len(jobs) for p, jobs in outcomes.items() if jobs}
    baseline = means.get("run-now")
    oracle = means.get("oracle")
    summaries = {}
    for policy, jobs in outcomes.items():
        if not jobs:
            continue
        mean = means[policy]
        reduction = 100.0 * (baseline - mean) / baseline if baseline else 0.0
        if baseline is not None and oracle is not None and baseline - oracle > 1e-12:
            fraction: float | None = (baseline - mean) / (baseline - oracle)
        else:
            fraction = None
        delays = [o.delay.total_seconds() / 3600 for o in jobs]
        summaries[policy] = PolicySummary(
            mean_intensity=mean,
            reduction_pct=reduction if baseline is not None else 0.0,
            fraction_of_oracle=fraction,
            mean_delay_h=sum(delays) / len(delays),
            max_delay_h=max(delays),
            deadline_misses=sum(1 for o in jobs if o.delay > max_delay),
            moved_pct=100.0 * sum(1 for o in jobs if o.zone != home_zone) / len(jobs),
            peak_load=dict(sorted((peaks or {}).get(policy, {}).items())),
            capacity_overflows=None if capacities is None else sum(1 for o in jobs if o.overflow),
        )
    return summaries
