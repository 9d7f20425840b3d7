"""Plan on forecasts that are known to be wrong: condition them on the zone's measured history.

Every function here is pure: measured history and a forecast in, a series out; ``now`` is a
parameter. Three steps, each a no-op on a perfect forecast so that planning on perfect
forecasts still equals the oracle:

Profile
    :func:`daily_profile` learns the zone's typical value at each time of day from its own
    measured history (the mean over the last ``days`` days of the value at the same time of
    day, taken from the days already measured).

History forecast (no provider forecast at all)
    :func:`forecast_from_history` starts at the latest measured value and relaxes toward the
    profile: ``f(t) = P(t) + (latest - P(now)) * exp(-(t - now) / level_time)``. It is what
    the backtest's ``--forecast history`` and the operator use when a source answers latest
    and history but refuses forecasts (Electricity Maps' free plan).

Conditioning (what ``carbon-aware`` plans on)
    :func:`condition` applies, in order:

    1. *near-term correction*: the error the forecast shows against the latest measured value,
       ``latest - f(now)``, is added with weight ``exp(-(t - now) / correction_time)`` (real
       errors persist for hours; the NESO archive's are 0.9 correlated at 1 h);
    2. *shrinkage* (the optimiser's curse: the minimum of many noisy windows is biased low):
       each value moves toward the profile with weight ``v_p / (v_p + (sigma(L) * f)^2)``,
       ``v_p`` the variance of the measured values around the profile and ``sigma(L)`` the
       forecast's relative error at lead ``L``; with ``sigma = 0`` nothing moves;
    3. *extension beyond the horizon*: a forecast that ends before ``until`` (WattTime's
       65 minutes) is continued by the profile, the forecast's last departure from it
       decaying with ``level_time``, instead of being persisted or cut off.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from airflow_carbon_provider.core.signals import IntensitySeries, ensure_utc

__all__ = ["LAST_LOOK_SIGMAS", "MIN_SKILL_INTERVALS", "Profile", "condition", "daily_profile", "forecast_from_history",
           "sigma_from_skill", "worth_waiting"]

DAY = 86400.0
#: How fast a departure from the profile (the current level) fades, in seconds.
LEVEL_TIME = 6 * 3600.0
#: How fast the error against the latest measured value fades, in seconds.
CORRECTION_TIME = 4 * 3600.0
#: The spread around the profile is re-measured at the start of each such period (seconds).
VARIANCE_PERIOD = 6 * 3600.0
#: A lead bucket of recorded forecast skill counts only with at least this many compared intervals.
MIN_SKILL_INTERVALS = 24
#: Days of measured history the conditioning's profile averages.
CONDITION_DAYS = 3
#: At its planned start a job waits longer only for a gain of this many forecast errors.
LAST_LOOK_SIGMAS = 1.0
Sigma = Callable[[float], float]


class Profile:
    """The zone's typical value by time of day, from its measured history up to ``now``.

    :param history: measured values (gaps allowed) ending at or after ``now``; only values
        of intervals starting before ``now`` are used.
    :param now: epoch seconds.
    :param days: how many past days to average.
    """

    def __init__(self, history: IntensitySeries, now: float, days: int = 7) -> None:
        self.history = history
        self.now = now
        self.days = days
        b = history.bounds
        self.step = b[2] - b[1] if len(b) > 2 else (b[1] - b[0] if len(b) > 1 else 3600.0)
        self._cache: dict[int, float] = {}
        latest = self._value(now)
        if latest is None:  # the last measured value before now
            i = min(bisect_right(b, now) - 1, len(history.values) - 1)
            while i >= 0 and history.values[i] != history.values[i]:
                i -= 1
            latest = history.values[i] if i >= 0 else 0.0
        self.latest = latest

    @property
    def variance(self) -> float:
        """Return the variance of measured values around the profile over the last days.

        Measured up to the start of the current six-hour period (it changes slowly), at most
        about 200 samples, and memoised on the history series: many plans share it.
        """
        period = int(self.now // VARIANCE_PERIOD)
        memo: Any = self.history._derived.setdefault("profile-variance", {})
        found = memo.get((period, self.days))
        if found is None:
            b, values, cutoff = self.history.bounds, self.history.values, period * VARIANCE_PERIOD
            lo, hi = bisect_left(b, cutoff - (self.days - 1) * DAY), bisect_left(b, cutoff) - 1
            stride = max(1, (hi - lo) // 200)
            residuals = []
            for i in range(max(lo, 0), max(hi, 0), stride):
                v = values[i]
                p = self._mean_days(b[i], 1) if v == v else None
                if p is not None:
                    residuals.append(v - p)
            found = memo[(period, self.days)] = sum(r * r for r in residuals) / len(residuals) if residuals else 0.0
        return float(found)

    def _value(self, t: float) -> float | None:
        b = self.history.bounds
        if not b[0] <= t < b[-1]:
            return None
        i = int((t - b[0]) // self.step)  # a regular grid first; a search when it is not
        if not (0 <= i < len(b) - 1 and b[i] <= t < b[i + 1]):
            i = bisect_right(b, t) - 1
        v = self.history.values[i]
        return v if v == v else None

    def _mean_days(self, t: float, d: int) -> float | None:
        """Return the mean of the values at ``t - k`` days for ``k`` in ``d .. d + days - 1``.

        It depends on ``t`` and ``d`` only (not on ``now``), so it is memoised on the series.
        """
        memo: Any = self.history._derived.setdefault("profile-means", {})
        key = (t, d, self.days)
        if key in memo:
            return memo[key]
        if len(memo) > 500_000:
            memo.clear()
        total, count = 0.0, 0
        for k in range(d, d + self.days):
            v = self._value(t - k * DAY)
            if v is not None:
                total += v
                count += 1
        found = memo[key] = total / count if count else None
        return found

    def _mean_before(self, t: float, cutoff: float) -> float | None:
        """Return the mean of the values at ``t - d days`` before ``cutoff`` over ``days`` days."""
        return self._mean_days(t, max(1, math.ceil((t - cutoff) / DAY + 1e-9)))

    def __call__(self, t: float) -> float:
        """Return the typical value at ``t`` (epoch seconds), from days measured before ``now``."""
        slot = int(t // self.step)
        found = self._cache.get(slot)
        if found is None:
            mean = self._mean_before(t, self.now)
            found = self._cache[slot] = self.latest if mean is None else mean
        return found


def daily_profile(history: IntensitySeries, now: datetime, days: int = 7) -> Profile:
    """Return the :class:`Profile` of ``history`` as measured by ``now``."""
    return Profile(history, ensure_utc(now, "now").timestamp(), days)


def forecast_from_history(
    history: IntensitySeries,
    now: datetime,
    horizon_end: datetime,
    *,
    days: int = 7,
    level_time: float = LEVEL_TIME,
    profile: Profile | None = None,
    latest: float | None = None,
) -> IntensitySeries:
    """Return a forecast from ``now`` to ``horizon_end`` built from measured history alone.

    The interval in force at ``now`` holds the latest measured value (``latest`` if given,
    else the history's value at or last before ``now``); later ones relax from it toward the
    daily profile (see the module doc). The grid is the history's step.
    """
    t0 = ensure_utc(now, "now").timestamp()
    t1 = ensure_utc(horizon_end, "horizon_end").timestamp()
    prof = profile or Profile(history, t0, days)
    step = prof.step
    first = (math.floor(t0 / step) + 1) * step
    bounds = [t0] + [first + k * step for k in range(max(0, math.ceil((t1 - first) / step)))]
    bounds = [b for b in bounds if b < t1] + [t1]
    now_value = prof.latest if latest is None else latest
    offset = now_value - prof(t0)
    values = [now_value] + [
        max(0.0, prof(b) + offset * math.exp(-(b - t0) / level_time)) for b in bounds[1:-1]
    ]
    return IntensitySeries.from_arrays(history.zone, history.kind, bounds, values,
                                       source=f"{history.source}+history", issued_at=now, is_forecast=True)


def condition(
    forecast: IntensitySeries,
    history: IntensitySeries,
    now: datetime,
    until: datetime,
    *,
    sigma: Sigma | None = None,
    days: int = CONDITION_DAYS,
    correction_time: float = CORRECTION_TIME,
    level_time: float = LEVEL_TIME,
    latest: float | None = None,
) -> IntensitySeries:
    """Return ``forecast`` corrected, shrunk and extended to ``until`` (see the module doc).

    :param forecast: the provider's forecast, covering ``now``.
    :param history: measured values up to ``now``.
    :param until: the forecast must reach this instant (the latest start plus the run).
    :param sigma: the forecast's relative error (standard deviation) by lead in seconds;
        ``None`` or zero: no shrinkage.
    :param latest: the latest measured value, when it is newer than ``history``'s last (a
        live source's current value; ``history`` may be cached for an hour); default: the
        history's value at or last before ``now``.
    """
    t0 = ensure_utc(now, "now").timestamp()
    t_end = ensure_utc(until, "until").timestamp()
    prof = Profile(history, t0, days)
    if latest is not None and latest == latest:
        prof.latest = float(latest)
    b, v = list(forecast.bounds), list(forecast.values)
    i_now = bisect_right(b, t0) - 1
    current = v[i_now] if 0 <= i_now < len(v) and v[i_now] == v[i_now] else prof.latest
    error = prof.latest - current
    out = []
    for i, f in enumerate(v):
        if f != f:  # a gap stays a gap
            out.append(f)
            continue
        lead = max(0.0, b[i] - t0)
        if error:
            f = f + error * math.exp(-lead / correction_time)
        s = sigma(lead) if sigma is not None else 0.0
        if s > 0 and prof.variance > 0:
            var_f = (s * f) ** 2
            w = prof.variance / (prof.variance + var_f)
            f = w * f + (1.0 - w) * prof(b[i])
        out.append(max(0.0, f))
    if b[-1] < t_end:
        last_t = b[-1]
        tail = out[-1] if out and out[-1] == out[-1] else prof.latest
        departure = tail - prof(last_t - 1.0)
        step = prof.step
        t = last_t
        while t < t_end:
            nxt = min((math.floor(t / step) + 1) * step, t_end)
            out.append(max(0.0, prof(t) + departure * math.exp(-(t - last_t) / level_time)))
            b.append(nxt)
            t = nxt
    return IntensitySeries.from_arrays(forecast.zone, forecast.kind, b, out, source=f"{forecast.source}+conditioned",
                                       issued_at=forecast.issued_at, is_forecast=True)


def sigma_from_skill(mape_by_lead: Mapping[tuple[float, float], tuple[float, int]], fallback: Sigma) -> Sigma:
    """Return a forecast's relative error by lead from its recorded skill, ``fallback`` where unmeasured.

    :param mape_by_lead: ``(low, high)`` lead bucket in hours -> (MAPE in percent, compared
        intervals), as ``airflow-carbon report --forecast-skill`` measures it per source and
        zone. A bucket with fewer than :data:`MIN_SKILL_INTERVALS` intervals is ignored.
    :param fallback: the error by lead (seconds) where no bucket counts.

    A normal error's mean absolute value is ``sqrt(2 / pi)`` of its standard deviation, so
    ``sigma = MAPE / 100 / sqrt(2 / pi)``, as the backtest's ``realistic`` model defines it. Lead
    0 (the interval in force at the issue) has no error.
    """
    buckets = sorted((lo * 3600.0, hi * 3600.0, mape / 100.0 / math.sqrt(2.0 / math.pi))
                     for (lo, hi), (mape, n) in mape_by_lead.items() if n >= MIN_SKILL_INTERVALS and mape == mape)

    def sigma(lead_s: float) -> float:
        if lead_s <= 0:
            return 0.0
        for lo, hi, value in buckets:
            if lo <= lead_s < hi:
                return value
        return fallback(lead_s)

    return sigma


def worth_waiting(now_mean: float, later_mean: float, lead_s: float, sigma: Sigma,
                  k: float = LAST_LOOK_SIGMAS) -> bool:
    """Return whether, at a job's planned start, a later start is worth waiting for (its last look).

    Starting now is nearly certain (the forecast's current value is measured); the later start
    is a forecast ``lead_s`` seconds ahead, and the best of many such forecasts is biased low
    (the optimiser's curse). So the job waits only if the forecast gain exceeds ``k`` times
    the forecast's relative error at that lead, ``sigma(lead_s)``, of the value now:
    hysteresis in units of forecast uncertainty rather than a fixed percentage.
    """
    return now_mean - later_mean > k * sigma(max(0.0, lead_s)) * now_mean
