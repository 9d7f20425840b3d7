"""Forecast models for backtests and trace replay: perfect, noisy, and real archives.

Every model answers one question: "at ``issued_at``, what did the forecast for ``zone`` over
the next ``horizon`` say?" and returns an :class:`IntensitySeries` that starts at
``issued_at``. The planner then sees exactly what a live client would have seen.

``noisy:<MAPE>[:<seed>]`` perturbs the actuals multiplicatively: the forecast of a target
interval ``i`` issued ``L`` ahead is ``actual_i * (1 + sigma(L) * z_i)``. ``z`` is a smooth
(AR(1), six-hour correlation time) standard-normal process per zone, fixed by the seed, so
errors persist over hours as real forecast errors do, and a later refresh sees the same
error shrunk rather than fresh noise. ``sigma(L) = s * sqrt(L / 24 h)`` grows with lead time
and ``s`` is calibrated so that the mean absolute percentage error over leads of 0 to 24 h
equals ``MAPE`` (about 0.75 x MAPE at 6 h ahead, 1.06 x at 12 h, 1.5 x at 24 h, 2.1 x at 48 h;
``benchmarks/forecast_mape.py`` measures it). The interval in force at ``issued_at`` has
lead 0, i.e. it is the measured current value.

``realistic[:<seed>]`` is as wrong as real forecasts are (``noisy`` is kept for continuity and
is far milder at short leads). Calibrated on NESO's GB forecast archive (eight 48 h
forecasts, 14-16 March 2023; ``benchmarks/forecast_mape.py``): its MAPE by lead is
``MAPE(L) = 22.5 - 15.5 * exp(-L / 4 h)`` percent, so about 8 % just after the issue, 17 %
at 4.5 h and 22 % beyond 8 h: error does not vanish at short leads and saturates with lead.
The error is ``sigma(L) * (a * Z_i + sqrt(1 - a^2) * R_{c,i})``: ``Z`` is a smooth process
in target time shared by every issue (what no later issue corrects), ``R_c`` a smooth
process drawn afresh for each six-hour issue cycle ``c`` (the revision a newer model run
brings); both are Gaussian-smoothed white noise with the correlation NESO's errors show
(0.9 at 1 h apart, 0.7 at 2 h, 0.3 at 4 h, none at 6 h), and ``a^2 = 0.5``. Issues within
one cycle share their error exactly; successive cycles share half of its variance.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from airflow_carbon_provider.core.conditioning import forecast_from_history, sigma_from_skill
from airflow_carbon_provider.core.signals import IntensitySeries, ensure_utc
from airflow_carbon_provider.core.traces import ArchivedForecasts, read_forecast_archive

__all__ = [
    "ArchiveForecast",
    "ForecastError",
    "HistoryForecast",
    "ForecastModel",
    "NoisyForecast",
    "PerfectForecast",
    "RealisticForecast",
    "parse_forecast_spec",
    "realised_mape",
]

DAY = 86400.0
# E|N(0,1)| = sqrt(2/pi); the mean of sqrt(L/24h) over L in [0, 24h] is 2/3.
_MAPE_TO_SCALE = 1.0 / (math.sqrt(2.0 / math.pi) * 2.0 / 3.0)
CORRELATION_TIME = 6 * 3600.0


class ForecastError(ValueError):
    """Raised when a forecast cannot be produced or a forecast spec is invalid."""


class ForecastModel(Protocol):
    """What the backtest and trace replay need from a forecast model."""

    name: str

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the forecast for ``zone`` as issued at ``issued_at``, ``horizon`` long."""
        ...


def _actual(actuals: Mapping[str, IntensitySeries], zone: str) -> IntensitySeries:
    try:
        return actuals[zone]
    except KeyError:
        known = ", ".join(sorted(actuals)) or "none"
        raise ForecastError(f"no data for zone {zone!r}; zones with data: {known}") from None


class PerfectForecast:
    """A forecast that equals what actually happened (the oracle's view)."""

    name = "perfect"
    #: A later issue says the same about the same interval: re-planning on it changes nothing.
    revises = False

    def sigma(self, lead_s: float) -> float:
        """Return the relative error's standard deviation at ``lead_s``: none."""
        return 0.0

    def __init__(self, actuals: Mapping[str, IntensitySeries]) -> None:
        self.actuals = dict(actuals)

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the actuals from ``issued_at`` for ``horizon``."""
        t = ensure_utc(issued_at, "issued_at").timestamp()
        return _actual(self.actuals, zone).window_ts(t, t + horizon.total_seconds(), issued_at=issued_at)


class NoisyForecast:
    """Actuals with seeded, lead-time-growing, persistent multiplicative error (see module doc).

    :param actuals: the measured series per zone.
    :param mape_pct: mean absolute percentage error over leads of 0 to 24 hours.
    :param seed: makes the noise reproducible; each zone draws its own stream.
    """

    def __init__(self, actuals: Mapping[str, IntensitySeries], mape_pct: float, seed: int = 0) -> None:
        if not 0 <= mape_pct <= 100 or math.isnan(mape_pct):
            raise ForecastError(f"noisy forecast MAPE {mape_pct} must be between 0 and 100 (percent)")
        self.actuals = dict(actuals)
        self.mape_pct = mape_pct
        self.seed = seed
        self.name = f"noisy:{mape_pct:g}:{seed}"
        self._scale = mape_pct / 100.0 * _MAPE_TO_SCALE
        self._z: dict[str, list[float]] = {}

    def sigma(self, lead_s: float) -> float:
        """Return the relative error's standard deviation at ``lead_s`` seconds."""
        return self._scale * math.sqrt(max(lead_s, 0.0) / DAY)

    def _latent(self, zone: str) -> list[float]:
        z = self._z.get(zone)
        if z is None:
            series = _actual(self.actuals, zone)
            rng = random.Random(f"{self.seed}:{zone}")
            bounds = series.bounds
            z = []
            previous = rng.gauss(0.0, 1.0)
            for i in range(len(series)):
                rho = math.exp(-(bounds[i + 1] - bounds[i]) / CORRELATION_TIME)
                previous = rho * previous + math.sqrt(1.0 - rho * rho) * rng.gauss(0.0, 1.0)
                z.append(previous)
            self._z[zone] = z
        return z

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the noisy forecast for ``zone`` issued at ``issued_at``."""
        actual = _actual(self.actuals, zone)
        t = ensure_utc(issued_at, "issued_at").timestamp()
        exact = actual.window_ts(t, t + horizon.total_seconds(), issued_at=issued_at)
        if self._scale == 0:
            return exact
        z = self._latent(zone)
        offset = max(_index_at(actual, t), 0)
        scale = self._scale
        bounds = exact.bounds
        values = [
            max(0.0, a * (1.0 + scale * math.sqrt(max(bounds[k] - t, 0.0) / DAY) * z[offset + k]))
            for k, a in enumerate(exact.values)
        ]
        return IntensitySeries.from_arrays(
            zone, actual.kind, bounds, values, source=f"{actual.source}+{self.name}",
            issued_at=issued_at, is_forecast=True,
        )


#: NESO calibration (see the module doc): MAPE(L) = _M_INF - (_M_INF - _M_0) * exp(-L / _M_TAU).
_M_0, _M_INF, _M_TAU = 7.0, 22.5, 4 * 3600.0
_SLOT = 1800.0  # the latent processes live on a 30-minute grid in absolute time
_CHUNK = 48  # slots per lazily drawn chunk (one day)
_KERNEL_SD = 1.9 * 3600.0 / _SLOT  # Gaussian smoothing, in slots
_KERNEL = [math.exp(-0.5 * (k / _KERNEL_SD) ** 2) for k in range(-12, 13)]
_KERNEL = [k / math.sqrt(sum(x * x for x in _KERNEL)) for k in _KERNEL]
_CYCLE = 6 * 3600.0
_SHARED = math.sqrt(0.5)


def realistic_sigma(lead_s: float) -> float:
    """Return the relative error's standard deviation at ``lead_s`` seconds in ``realistic``."""
    if lead_s <= 0:
        return 0.0
    mape = _M_INF - (_M_INF - _M_0) * math.exp(-lead_s / _M_TAU)
    return mape / 100.0 / math.sqrt(2.0 / math.pi)


class RealisticForecast:
    """Actuals with error as large and as persistent as real forecasts' (see the module doc).

    :param actuals: the measured series per zone.
    :param seed: makes the error reproducible; each zone and issue cycle draws its own stream.
    """

    revises = True

    def __init__(self, actuals: Mapping[str, IntensitySeries], seed: int = 0) -> None:
        self.actuals = dict(actuals)
        self.seed = seed
        self.name = f"realistic:{seed}"
        self._white: dict[tuple[str, str, int], list[float]] = {}
        self._smooth: dict[tuple[str, str, int], list[float]] = {}

    def sigma(self, lead_s: float) -> float:
        """Return the relative error's standard deviation at ``lead_s`` seconds."""
        return realistic_sigma(lead_s)

    def _white_chunk(self, key: tuple[str, str, int]) -> list[float]:
        w = self._white.get(key)
        if w is None:
            rng = random.Random(f"{self.seed}:{key[0]}:{key[1]}:{key[2]}")
            w = self._white[key] = [rng.gauss(0.0, 1.0) for _ in range(_CHUNK)]
        return w

    def _latent(self, zone: str, stream: str, slot: int) -> float:
        chunk, k = divmod(slot, _CHUNK)
        key = (zone, stream, chunk)
        smooth = self._smooth.get(key)
        if smooth is None:
            white = self._white_chunk((zone, stream, chunk - 1))[-12:] + self._white_chunk(key) \
                + self._white_chunk((zone, stream, chunk + 1))[:12]
            kern = _KERNEL
            smooth = self._smooth[key] = [sum(g * x for g, x in zip(kern, white[i : i + 25])) for i in range(_CHUNK)]
        return smooth[k]

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the realistically wrong forecast for ``zone`` issued at ``issued_at``."""
        actual = _actual(self.actuals, zone)
        t = ensure_utc(issued_at, "issued_at").timestamp()
        exact = actual.window_ts(t, t + horizon.total_seconds(), issued_at=issued_at)
        cycle = f"c{int(t // _CYCLE)}"
        bounds = exact.bounds
        latent = self._latent
        rest = math.sqrt(1.0 - _SHARED * _SHARED)
        values = []
        for k, a in enumerate(exact.values):
            lead = bounds[k] - t
            if lead <= 0:
                values.append(a)
                continue
            slot = int(bounds[k] // _SLOT)
            z = _SHARED * latent(zone, "target", slot) + rest * latent(zone, cycle, slot)
            values.append(max(0.0, a * (1.0 + realistic_sigma(lead) * z)))
        return IntensitySeries.from_arrays(
            zone, actual.kind, bounds, values, source=f"{actual.source}+{self.name}",
            issued_at=issued_at, is_forecast=True,
        )


#: Lead buckets (hours) of measured forecast skill, as ``airflow-carbon report --forecast-skill``.
LEAD_BUCKETS: tuple[tuple[float, float], ...] = ((0, 1), (1, 3), (3, 6), (6, 12), (12, 24), (24, 48),
                                                 (48, math.inf))
#: How far back an archive's own skill is measured (as planning reads the ledger's).
SKILL_SPAN = timedelta(days=14)
#: An archive's skill is re-measured at the start of each such period (seconds).
SKILL_PERIOD = 6 * 3600.0


def _lead_bucket(lead_h: float) -> tuple[float, float]:
    for bucket in LEAD_BUCKETS:
        if bucket[0] <= lead_h < bucket[1]:
            return bucket
    return LEAD_BUCKETS[-1]


def _index_at(series: IntensitySeries, t: float) -> int:
    from bisect import bisect_right

    return bisect_right(series.bounds, t) - 1


class ArchiveForecast:
    """Replay real forecasts as issued: at each moment, the newest one issued by then.

    Where the archived forecast starts after ``issued_at`` (WattTime's first point is the next
    five minutes) or has run out, the measured intensity fills in, as a live client would
    combine the "latest" and "forecast" endpoints.
    """

    def __init__(
        self,
        archive: Mapping[str, ArchivedForecasts],
        actuals: Mapping[str, IntensitySeries],
        *,
        label: str = "archive",
    ) -> None:
        self.archive = dict(archive)
        self.actuals = dict(actuals)
        self.name = label
        self._skill: dict[tuple[str, int], Callable[[float], float]] = {}
        self._tables: dict[str, tuple[list[float], dict[tuple[float, float], tuple[list[float], list[int]]]]] = {}

    def sigma(self, lead_s: float) -> float:
        """Return the assumed relative error by lead before any skill is measured: NESO's, as ``realistic``."""
        return realistic_sigma(lead_s)

    def typical_horizon(self) -> timedelta | None:
        """Return the median length of the archived issues (issue time to last point), None if empty."""
        lengths = sorted(
            issue.bounds[-1] - (issue.issued_at.timestamp() if issue.issued_at is not None else issue.bounds[0])
            for forecasts in self.archive.values() for issue in forecasts.issues)
        return timedelta(seconds=lengths[len(lengths) // 2]) if lengths else None

    def own_sigma_at(self, zone: str, now: datetime) -> Callable[[float], float]:
        """Return the archive's own error by lead as measured by ``now``: what the ledger's recorded skill gives a task.

        The mean absolute percentage error, per lead bucket of the forecast skill report, of
        the archived forecasts of ``zone`` over the intervals that ended in the
        :data:`SKILL_SPAN` before ``now`` (never a later one), against the measured values;
        :func:`~airflow_carbon_provider.core.conditioning.sigma_from_skill` turns it into an
        error by lead, NESO's (:meth:`sigma`) where a bucket has too few intervals. Re-measured
        at the start of each six-hour period.
        """
        period = int(ensure_utc(now, "now").timestamp() // SKILL_PERIOD)
        key = (zone, period)
        found = self._skill.get(key)
        if found is None:
            ends, sums = self._skill_table(zone)
            cutoff = period * SKILL_PERIOD
            lo, hi = bisect_left(ends, cutoff - SKILL_SPAN.total_seconds()), bisect_right(ends, cutoff)
            measured = {}
            for bucket, (cum_ape, cum_n) in sums.items():
                n = cum_n[hi] - cum_n[lo]
                if n:
                    measured[bucket] = (100.0 * (cum_ape[hi] - cum_ape[lo]) / n, n)
            found = self._skill[key] = sigma_from_skill(measured, realistic_sigma)
        return found

    def _skill_table(self, zone: str) -> tuple[list[float], dict[tuple[float, float], tuple[list[float], list[int]]]]:
        """Return every compared interval's end, sorted, and per lead bucket prefix sums of APE and count."""
        table = self._tables.get(zone)
        if table is None:
            actual = _actual(self.actuals, zone)
            entries = []
            for issue in self.archive.get(zone, ArchivedForecasts(zone, ())).issues:
                issued = issue.issued_at.timestamp() if issue.issued_at is not None else issue.bounds[0]
                b = issue.bounds
                for i, f in enumerate(issue.values):
                    if b[i] <= issued or f != f:
                        continue
                    try:
                        real = actual.integral_ts(b[i], b[i + 1]) / (b[i + 1] - b[i])
                    except Exception:  # outside the measured period
                        continue
                    if real > 0 and real == real:
                        entries.append((b[i + 1], _lead_bucket((b[i] - issued) / 3600.0), abs(f - real) / real))
            entries.sort()
            ends = [e[0] for e in entries]
            sums: dict[tuple[float, float], tuple[list[float], list[int]]] = {}
            for bucket in LEAD_BUCKETS:
                cum_ape, cum_n = [0.0], [0]
                for _, b_, ape in entries:
                    hit = b_ == bucket
                    cum_ape.append(cum_ape[-1] + (ape if hit else 0.0))
                    cum_n.append(cum_n[-1] + hit)
                sums[bucket] = (cum_ape, cum_n)
            table = self._tables[zone] = (ends, sums)
        return table

    def check_zones(self, zones: Iterable[str]) -> None:
        """Raise if the archive holds no forecasts for one of ``zones``."""
        missing = [z for z in zones if z not in self.archive]
        if missing:
            have = ", ".join(sorted(self.archive)) or "none"
            raise ForecastError(
                f"forecast {self.name} has no forecasts for zone(s) {', '.join(missing)} "
                f"(it has: {have}); use only those zones or another --forecast"
            )

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the newest archived forecast issued by ``issued_at``, gaps filled by actuals."""
        self.check_zones([zone])
        t = ensure_utc(issued_at, "issued_at").timestamp()
        end = t + horizon.total_seconds()
        actual = _actual(self.actuals, zone)
        issue = self.archive[zone].latest_before(issued_at)
        bounds: list[float] = []
        values: list[float] = []
        if issue is not None and issue.bounds[-1] > t:
            fb = issue.bounds
            if fb[0] > t:  # fill up to the first forecast point with measured values
                head = actual.window_ts(t, min(fb[0], end))
                bounds.extend(head.bounds[:-1])
                values.extend(head.values)
            if fb[0] < end:
                part = issue.window_ts(max(t, fb[0]), end)
                bounds.extend(part.bounds[:-1])
                values.extend(part.values)
                bounds.append(part.bounds[-1])
            else:
                bounds.append(min(fb[0], end))
        else:  # nothing issued yet, or the newest forecast is over: only the current value is known
            i = _index_at(actual, t)
            if i < 0 or i >= len(actual):
                raise ForecastError(
                    f"zone {zone}: no measured value at {issued_at.isoformat()} to start the forecast from"
                )
            bounds = [t, min(actual.bounds[i + 1], end)]
            values = [actual.values[i]]
        return IntensitySeries.from_arrays(
            zone, actual.kind, bounds, values, source=self.name, issued_at=issued_at, is_forecast=True
        )


class HistoryForecast:
    """No provider forecast: each issue is built from the measured values up to it.

    See :func:`~airflow_carbon_provider.core.conditioning.forecast_from_history`: the latest
    measured value, relaxing toward the zone's profile of the last ``days`` days.
    """

    name = "history"

    def __init__(self, actuals: Mapping[str, IntensitySeries], days: int = 7) -> None:
        self.actuals = dict(actuals)
        self.days = days

    def sigma(self, lead_s: float) -> float:
        """Return zero: the forecast *is* the history profile, there is nothing to shrink toward."""
        return 0.0

    def forecast(self, zone: str, issued_at: datetime, horizon: timedelta) -> IntensitySeries:
        """Return the forecast from measured values before ``issued_at`` (and the current one)."""
        return forecast_from_history(_actual(self.actuals, zone), issued_at, issued_at + horizon, days=self.days)


def parse_forecast_spec(
    spec: str, actuals: Mapping[str, IntensitySeries], *, kind: str = "average"
) -> ForecastModel:
    """Build the forecast model ``spec`` names: ``perfect``, ``history``, ``realistic[:<seed>]``, ``noisy:<MAPE>[:<seed>]``, ``archive:FILE``."""
    usage = "use perfect, history, realistic[:<seed>], noisy:<MAPE percent>[:<seed>] (e.g. noisy:10:1) or archive:FILE"
    text = spec.strip()
    if text == "perfect":
        return PerfectForecast(actuals)
    if text == "history":
        return HistoryForecast(actuals)
    if text == "realistic" or text.startswith("realistic:"):
        parts = text.split(":")
        try:
            if len(parts) > 2:
                raise ValueError(text)
            return RealisticForecast(actuals, int(parts[1]) if len(parts) == 2 else 0)
        except ValueError:
            raise ForecastError(f"forecast {spec!r} is not valid; {usage}") from None
    if text.startswith("noisy:"):
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ForecastError(f"forecast {spec!r} is not valid; {usage}")
        try:
            mape = float(parts[1])
            seed = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise ForecastError(f"forecast {spec!r} is not valid; {usage}") from None
        return NoisyForecast(actuals, mape, seed)
    if text.startswith("archive:") and len(text) > len("archive:"):
        path = Path(text[len("archive:") :])
        return ArchiveForecast(read_forecast_archive(path, kind=kind), actuals, label=f"archive:{path.name}")
    raise ForecastError(f"forecast {spec!r} is not valid; {usage}")


def realised_mape(
    model: ForecastModel,
    actuals: Mapping[str, IntensitySeries],
    zone: str,
    issues: Iterable[datetime],
    horizon: timedelta,
) -> float:
    """Return the mean absolute percentage error (percent) of ``model`` against ``actuals``.

    Every forecast interval is compared with the actual interval that starts with it, weighted
    equally; intervals whose actual value is zero are skipped.
    """
    actual = actuals[zone]
    errors = 0.0
    count = 0
    for issued in issues:
        fc = model.forecast(zone, issued, horizon)
        for k, value in enumerate(fc.values):
            i = _index_at(actual, fc.bounds[k])
            truth = actual.values[i]
            if truth > 0:
                errors += abs(value - truth) / truth
                count += 1
    if not count:
        raise ForecastError("no forecast intervals to compare")
    return 100.0 * errors / count
