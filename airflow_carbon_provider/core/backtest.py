"""Replay real grid traces to measure what each scheduling policy would have emitted.

Jobs arrive every ``arrival_every`` from ``start``; each runs uninterrupted for ``duration``
at constant power and may start up to ``max_delay`` after it arrives. A policy chooses a zone
and a start from forecasts (see :mod:`~airflow_carbon_provider.core.forecast`); the job is
then charged the *actual* mean intensity over its run. ``oracle`` plans once on the actuals;
``carbon-aware`` plans on the forecast at arrival and re-plans at every forecast refresh while
it waits and once more at the planned start (its last look), as the deferrable trigger does; the
other policies decide once, at arrival.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.conditioning import condition, worth_waiting
from airflow_carbon_provider.core.forecast import ForecastModel, realistic_sigma
from airflow_carbon_provider.core.planner import Candidate, Option, plan
from airflow_carbon_provider.core.policies import get_policy, policy_names
from airflow_carbon_provider.core.signals import IntensitySeries, check_same_kind

__all__ = [
    "BacktestError",
    "BacktestResult",
    "JobOutcome",
    "PolicySummary",
    "common_period",
    "run_backtest",
]

UTC = timezone.utc


def backtest_policies() -> tuple[str, ...]:
    """Return every registered policy, the baseline and the offline bound first.

    Read from the registry each time, so a policy registered later appears here, in the CLI
    and in the report without further changes.
    """
    return ("run-now", "oracle", *(p for p in policy_names(offline=True) if p not in ("run-now", "oracle")))


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

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-contract dict (rounded for reading)."""
        return {
            "mean_intensity": round(self.mean_intensity, 2),
            "reduction_pct": round(self.reduction_pct, 2),
            "fraction_of_oracle": None if self.fraction_of_oracle is None else round(self.fraction_of_oracle, 4),
            "mean_delay_h": round(self.mean_delay_h, 3),
            "max_delay_h": round(self.max_delay_h, 3),
            "deadline_misses": self.deadline_misses,
            "moved_pct": round(self.moved_pct, 2),
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

    def to_dict(self) -> dict[str, Any]:
        """Return the ``--format json`` object of the DESIGN contract."""
        return {
            "jobs": len(self.arrivals),
            "zones": self.zones,
            "home_zone": self.home_zone,
            "forecast": self.forecast,
            "job_duration_h": self.job_duration.total_seconds() / 3600,
            "max_delay_h": self.max_delay.total_seconds() / 3600,
            "period": {
                "first_arrival": _iso(self.arrivals[0]),
                "last_arrival": _iso(self.arrivals[-1]),
            },
            "policies": {name: s.to_dict() for name, s in self.summaries.items()},
        }


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
    last_look: bool = True,
) -> BacktestResult:
    """Run every policy over the same jobs and return per-job outcomes and summaries.

    :param robust: ``carbon-aware`` (the policies that re-plan) plans on forecasts conditioned
        on each zone's measured history (:func:`~airflow_carbon_provider.core.conditioning.condition`):
        corrected by the latest measured value, shrunk toward the zone's profile by the
        forecast model's error by lead (its ``sigma``), and extended past their horizon.
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
    known = backtest_policies()
    policies = known if policies is None else policies
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

    candidates = [Candidate(z, z) for z in [home_zone] + [z for z in zones if z != home_zone]]
    home_only = candidates[:1]
    outcomes: dict[str, list[JobOutcome]] = {p: [] for p in policies}
    # A forecast that never revises itself (perfect) can be planned on as the whole trace when
    # its horizon covers the slack plus the run: every start the planner may choose lies inside
    # both, so the choice is the same, and the prefix sums are built once, not per window.
    # Re-planning on such a forecast cannot change the plan (the earlier plan was the optimum
    # of a window that contains the later one), so those re-plans are counted, not computed.
    revises = getattr(forecast, "revises", True)
    whole = actuals if (not revises and forecast_horizon >= max_delay + job_duration) else None
    refresh_s = refresh.total_seconds()

    sigma = getattr(forecast, "sigma", None)
    sigma_at = getattr(forecast, "sigma_at", None)  # an archive's own skill, measured up to now

    def forecasts_at(pool: Sequence[Candidate], now: datetime, until: datetime | None = None
                     ) -> dict[str, IntensitySeries]:
        if whole is not None:
            return {c.zone: whole[c.zone] for c in pool}
        fcs = {c.zone: forecast.forecast(c.zone, now, forecast_horizon) for c in pool}
        if until is not None:  # measured values up to now condition the forecast (no look-ahead)
            fcs = {z: condition(fc, actuals[z], now, until, sigma=sigma_at(z, now) if sigma_at else sigma)
                   for z, fc in fcs.items()}
        return fcs

    def run(policy: str, arrival: datetime) -> JobOutcome:
        latest = arrival + max_delay
        rule = get_policy(policy)
        if rule.offline:  # plans on what really happened
            choice = plan(candidates, {z: actuals[z] for z in zones}, now=arrival,
                          duration=job_duration, latest_start=latest, policy=policy).chosen
            return _charge(actuals, arrival, choice, job_duration)
        pool = candidates if rule.spatial else home_only
        until = latest + job_duration if robust and rule.replans else None
        decision = plan(pool, forecasts_at(pool, arrival, until), now=arrival, duration=job_duration, latest_start=latest,
                        policy=policy, threshold_pct=threshold_pct, min_saving_pct=min_saving_pct)
        choice = decision.chosen
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
                fcs = forecasts_at(pool, now, until)
                planned, choice = choice, plan(pool, fcs, now=now, duration=job_duration, latest_start=latest,
                                               policy=policy, incumbent=choice, min_saving_pct=min_saving_pct).chosen
                replans += 1
                if looking and choice.start > now:  # the last look: wait longer only for a sure gain
                    now_mean = fcs[planned.candidate.zone].mean(now, now + job_duration)
                    lead = (choice.start - now).total_seconds()
                    if not worth_waiting(now_mean, choice.mean_intensity, lead, realistic_sigma):
                        choice = planned
        return _charge(actuals, arrival, choice, job_duration, replans)

    total = len(arrivals) * len(policies)
    done = 0
    for arrival in arrivals:
        for policy in policies:
            outcomes[policy].append(run(policy, arrival))
            done += 1
        if progress is not None:
            progress(done, total)

    result = BacktestResult(zones, home_zone, forecast.name, job_duration, max_delay, arrivals, outcomes)
    result.summaries = summarise(outcomes, home_zone, max_delay)
    return result


def _charge(
    actuals: Mapping[str, IntensitySeries], arrival: datetime, choice: Option, duration: timedelta, replans: int = 0
) -> JobOutcome:
    zone = choice.candidate.zone
    lo = choice.start.timestamp()
    intensity = actuals[zone].integral_ts(lo, lo + duration.total_seconds()) / duration.total_seconds()
    return JobOutcome(arrival, zone, choice.start, intensity, replans)


def summarise(
    outcomes: Mapping[str, list[JobOutcome]], home_zone: str, max_delay: timedelta
) -> dict[str, PolicySummary]:
    """Aggregate per-job outcomes into the contract's per-policy figures."""
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
        )
    return summaries
