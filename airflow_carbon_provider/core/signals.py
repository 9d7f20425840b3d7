"""Carbon-intensity signals: values in, values out, standard library only.

An :class:`IntensitySeries` is what every data source produces and what the planner
consumes: one zone, one signal kind (average or marginal), contiguous intervals of any
length from five minutes to an hour (lengths may change along the series), every value in
gCO2eq/kWh, plus when it was issued and by whom.

Gaps. A source may not know every interval (an API's null, an hour missing from an
answer). Built with ``allow_gaps=True``, a series keeps every known interval and marks what
lies between as unknown: a gap, stored as an interval whose value is NaN. The first and
last intervals are always known. :attr:`IntensitySeries.intervals` lists the known
intervals only, :attr:`IntensitySeries.gaps` the unknown stretches; a mean, an integral or a
value that would need an unknown interval raises :class:`SignalError` rather than guess.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

__all__ = [
    "Interval",
    "IntensitySeries",
    "MAX_INTENSITY",
    "SignalError",
    "SignalKind",
    "SignalMixError",
    "Unit",
    "check_same_kind",
    "ensure_utc",
    "splice_current",
    "to_g_per_kwh",
]

UTC = timezone.utc

MAX_INTENSITY = 5000.0
"""The largest carbon intensity, in gCO2eq/kWh, that a data source may report (about 11,000 lbs/MWh).

The dirtiest generation on any grid (lignite, oil peakers, lifecycle factors included) emits
about 1,100 to 1,300 gCO2eq/kWh, and no zone's average or marginal rate exceeds that; 5,000
leaves a wide margin. A source value above it is a broken answer, not a dirty hour, and is
refused at the edge (parsers, trace files) rather than planned on: a value such as ``1e308``
integrates to ``inf`` over a run and makes every comparison meaningless.
"""


class SignalError(ValueError):
    """Raised when a series or one of its intervals is not valid."""


class SignalMixError(SignalError):
    """Raised when average and marginal signals would be compared with each other."""


class SignalKind(str, Enum):
    """Which emission rate a series measures.

    ``average`` is the attributional mean intensity of the electricity consumed in the zone;
    ``marginal`` is the rate of the generator that answers one more kWh of demand. They are
    different quantities and are never compared with each other silently.
    """

    AVERAGE = "average"
    MARGINAL = "marginal"


class Unit(str, Enum):
    """Units the sources report intensity in; all are converted to gCO2eq/kWh."""

    G_PER_KWH = "g/kWh"
    KG_PER_MWH = "kg/MWh"
    LBS_PER_MWH = "lbs/MWh"
    G_PER_MWH = "g/MWh"


# One pound is exactly 453.59237 g; one MWh is 1000 kWh.
_TO_G_PER_KWH = {
    Unit.G_PER_KWH: 1.0,
    Unit.KG_PER_MWH: 1.0,
    Unit.LBS_PER_MWH: 0.45359237,
    Unit.G_PER_MWH: 0.001,
}


def to_g_per_kwh(value: float, unit: Unit | str) -> float:
    """Convert an intensity from ``unit`` to gCO2eq/kWh (WattTime's lbs/MWh included)."""
    try:
        factor = _TO_G_PER_KWH[Unit(unit)]
    except ValueError:
        known = ", ".join(u.value for u in Unit)
        raise SignalError(f"unknown intensity unit {unit!r}; use one of: {known}") from None
    return value * factor


def ensure_utc(moment: datetime, what: str = "datetime") -> datetime:
    """Return ``moment`` in UTC; refuse naive datetimes, whose meaning is a guess."""
    if not isinstance(moment, datetime):
        raise SignalError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise SignalError(
            f"{what} {moment.isoformat()} is naive; pass a timezone-aware datetime "
            "(for example datetime(..., tzinfo=timezone.utc))"
        )
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """One interval ``[start, end)`` of constant intensity in gCO2eq/kWh."""

    start: datetime
    end: datetime
    value: float
    estimated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "interval start"))
        object.__setattr__(self, "end", ensure_utc(self.end, "interval end"))
        if self.end <= self.start:
            raise SignalError(
                f"interval starting {self.start.isoformat()} ends at {self.end.isoformat()}; "
                "an interval must end after it starts"
            )
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SignalError(
                f"interval starting {self.start.isoformat()} has a non-numeric value {value!r}"
            )
        if math.isnan(value) or math.isinf(value):
            raise SignalError(
                f"interval starting {self.start.isoformat()} has value {value}; "
                "drop or fill missing data before building a series"
            )
        if value < 0:
            raise SignalError(
                f"interval starting {self.start.isoformat()} has negative intensity {value}; "
                "carbon intensity cannot be below zero"
            )
        object.__setattr__(self, "value", float(value))

    @property
    def seconds(self) -> float:
        """Length of the interval in seconds."""
        return (self.end - self.start).total_seconds()


class IntensitySeries:
    """A run of intervals for one zone and one signal kind, values in g/kWh, gaps marked.

    :param zone: the zone key as the source names it (``DE``, ``CAISO_NORTH``, ``GB``...).
    :param kind: average or marginal.
    :param intervals: sorted, non-overlapping and, unless ``allow_gaps``, gap-free.
    :param source: who produced it (``electricitymaps``, ``watttime``, ``carbontrace``...).
    :param issued_at: when a forecast was issued (``None`` for actuals).
    :param is_forecast: true when the values are predictions rather than measurements.
    :param allow_gaps: keep the time between two intervals that do not touch as an unknown
        interval (a gap) instead of refusing the series.

    The series is stored as columns (interval boundaries in epoch seconds, values), which is
    what the planner reads; a gap is a column whose value is NaN, so ``len(series)`` counts
    gaps too. :attr:`intervals` materialises the known :class:`Interval` objects on demand.
    Build large series with :meth:`from_arrays`, which skips per-interval objects.
    """

    MIN_INTERVAL = timedelta(minutes=5)
    MAX_INTERVAL = timedelta(hours=1)

    __slots__ = ("_bounds", "_derived", "_estimated", "_gaps", "_intervals", "_values", "issued_at",
                 "is_forecast", "kind", "source", "zone")

    def __init__(
        self,
        zone: str,
        kind: SignalKind | str,
        intervals: Iterable[Interval],
        source: str = "unknown",
        issued_at: datetime | None = None,
        is_forecast: bool = False,
        *,
        allow_gaps: bool = False,
    ) -> None:
        items = tuple(intervals)
        _check_zone(zone)
        if not items:
            raise SignalError(f"zone {zone}: the series has no intervals")
        bounds = [items[0].start.timestamp()]
        values: list[float] = []
        estimated: list[bool] = []
        for previous, current in zip(items, items[1:]):
            if current.start < previous.start:
                raise SignalError(
                    f"zone {zone}: intervals are not sorted "
                    f"({current.start.isoformat()} comes after {previous.start.isoformat()})"
                )
            if current.start < previous.end:
                raise SignalError(
                    f"zone {zone}: intervals overlap at {current.start.isoformat()} "
                    f"(the previous one ends {previous.end.isoformat()})"
                )
            if current.start > previous.end and not allow_gaps:
                raise SignalError(
                    f"zone {zone}: gap from {previous.end.isoformat()} to "
                    f"{current.start.isoformat()}; split the series or fill the gap"
                )
        for index, iv in enumerate(items):
            if index and iv.start > items[index - 1].end:  # a gap: an unknown interval between them
                bounds.append(iv.start.timestamp())
                values.append(math.nan)
                estimated.append(False)
            bounds.append(iv.end.timestamp())
            values.append(iv.value)
            estimated.append(iv.estimated)
        self._init(zone, kind, bounds, values, source, issued_at, is_forecast,
                   tuple(estimated) if any(estimated) else None, len(values) > len(items))
        self._intervals: tuple[Interval, ...] | None = items

    @classmethod
    def from_arrays(
        cls,
        zone: str,
        kind: SignalKind | str,
        bounds: Sequence[float],
        values: Sequence[float],
        *,
        source: str = "unknown",
        issued_at: datetime | None = None,
        is_forecast: bool = False,
        estimated: Sequence[bool] | None = None,
        allow_gaps: bool = False,
    ) -> IntensitySeries:
        """Build a series from ``len(values) + 1`` boundaries in epoch seconds and g/kWh values.

        With ``allow_gaps``, a NaN value marks an unknown interval (not the first or the last).
        """
        _check_zone(zone)
        bounds = [float(b) for b in bounds]
        values = list(values)
        if not values:
            raise SignalError(f"zone {zone}: the series has no intervals")
        if len(bounds) != len(values) + 1:
            raise SignalError(
                f"zone {zone}: {len(values)} values need {len(values) + 1} boundaries, got {len(bounds)}"
            )
        for i in range(len(values)):
            if not bounds[i + 1] > bounds[i]:
                at = datetime.fromtimestamp(bounds[i], UTC).isoformat()
                raise SignalError(
                    f"zone {zone}: boundaries are not increasing at {at}; intervals must be sorted "
                    "and must not overlap"
                )
        gaps = False
        for i, value in enumerate(values):
            if allow_gaps and isinstance(value, float) and math.isnan(value):
                if i in (0, len(values) - 1):
                    raise SignalError(
                        f"zone {zone}: the {'first' if i == 0 else 'last'} interval is unknown; a series "
                        "starts and ends with known values (leave unknown edges out)"
                    )
                gaps = True
                continue
            _check_value(zone, bounds[i], value)
        self = cls.__new__(cls)
        self._init(zone, kind, bounds, [float(v) for v in values], source, issued_at, is_forecast,
                   tuple(estimated) if estimated is not None and any(estimated) else None, gaps)
        self._intervals = None
        return self

    def _init(
        self,
        zone: str,
        kind: SignalKind | str,
        bounds: list[float],
        values: list[float],
        source: str,
        issued_at: datetime | None,
        is_forecast: bool,
        estimated: tuple[bool, ...] | None,
        gaps: bool = False,
    ) -> None:
        try:
            self.kind = SignalKind(kind)
        except ValueError:
            raise SignalError(
                f"zone {zone}: signal kind {kind!r} is unknown; use 'average' or 'marginal'"
            ) from None
        self.zone = zone
        self.source = source
        self.issued_at = ensure_utc(issued_at, "issued_at") if issued_at is not None else None
        self.is_forecast = is_forecast
        self._bounds = bounds
        self._values = values
        self._estimated = estimated
        self._gaps = gaps
        # Memo for data derived from the immutable columns (the planner's prefix sums), so many
        # plans over one cached forecast pay for them once.
        self._derived: dict[str, object] = {}

    @classmethod
    def from_points(
        cls,
        zone: str,
        kind: SignalKind | str,
        points: Iterable[tuple[datetime, float]],
        *,
        resolution: timedelta,
        unit: Unit | str = Unit.G_PER_KWH,
        source: str = "unknown",
        issued_at: datetime | None = None,
        is_forecast: bool = False,
    ) -> IntensitySeries:
        """Build a series from ``(start, value)`` points of a fixed ``resolution``."""
        intervals = tuple(
            Interval(start, start + resolution, to_g_per_kwh(value, unit)) for start, value in points
        )
        return cls(zone, kind, intervals, source=source, issued_at=issued_at, is_forecast=is_forecast)

    # -- views -----------------------------------------------------------------------------

    @property
    def intervals(self) -> tuple[Interval, ...]:
        """The known intervals (gaps left out), materialised on first use."""
        if self._intervals is None:
            b, est = self._bounds, self._estimated
            self._intervals = tuple(
                Interval(_dt(b[i]), _dt(b[i + 1]), v, bool(est and est[i]))
                for i, v in enumerate(self._values)
                if v == v  # NaN marks a gap
            )
        return self._intervals

    @property
    def has_gaps(self) -> bool:
        """Whether some interval between the first and the last is unknown."""
        return self._gaps

    @property
    def gaps(self) -> tuple[tuple[datetime, datetime], ...]:
        """The unknown stretches ``(start, end)``, adjacent unknown intervals merged."""
        if not self._gaps:
            return ()
        found: list[tuple[float, float]] = []
        b = self._bounds
        for i, v in enumerate(self._values):
            if v != v:
                if found and found[-1][1] == b[i]:
                    found[-1] = (found[-1][0], b[i + 1])
                else:
                    found.append((b[i], b[i + 1]))
        return tuple((_dt(lo), _dt(hi)) for lo, hi in found)

    @property
    def estimated_flags(self) -> tuple[bool, ...]:
        """One flag per column of :attr:`values` (gaps included): whether the source estimated it."""
        return self._estimated or (False,) * len(self._values)

    @property
    def bounds(self) -> Sequence[float]:
        """Interval boundaries in epoch seconds (one more than :attr:`values`)."""
        return self._bounds

    @property
    def values(self) -> Sequence[float]:
        """Interval values in gCO2eq/kWh."""
        return self._values

    @property
    def start(self) -> datetime:
        """Start of the first interval."""
        return _dt(self._bounds[0])

    @property
    def end(self) -> datetime:
        """End of the last interval."""
        return _dt(self._bounds[-1])

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        gaps = f", {len(self.gaps)} gaps" if self._gaps else ""
        return (
            f"IntensitySeries(zone={self.zone!r}, kind={self.kind.value!r}, source={self.source!r}, "
            f"{len(self)} intervals {self.start.isoformat()} to {self.end.isoformat()}{gaps})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntensitySeries):
            return NotImplemented
        return (
            (self.zone, self.kind, self.source, self.issued_at, self.is_forecast, self._bounds, self._gaps)
            == (other.zone, other.kind, other.source, other.issued_at, other.is_forecast, other._bounds,
                other._gaps)
            and len(self._values) == len(other._values)
            and all(a == b or (a != a and b != b) for a, b in zip(self._values, other._values))
        )

    __hash__ = None  # type: ignore[assignment]

    def check_resolution(self) -> None:
        """Raise if an interval is shorter than 5 minutes or longer than an hour."""
        lo, hi = self.MIN_INTERVAL.total_seconds(), self.MAX_INTERVAL.total_seconds()
        b, v = self._bounds, self._values
        for i in range(len(v)):
            if v[i] == v[i] and not lo <= b[i + 1] - b[i] <= hi:  # a gap may last any time
                raise SignalError(
                    f"zone {self.zone}: interval at {_dt(b[i]).isoformat()} lasts "
                    f"{timedelta(seconds=b[i + 1] - b[i])}; intervals must last from 5 minutes to 1 hour"
                )

    def value_at(self, moment: datetime) -> float:
        """Return the intensity in force at ``moment`` (which must lie inside the series)."""
        t = ensure_utc(moment, "moment").timestamp()
        if not self._bounds[0] <= t < self._bounds[-1]:
            raise SignalError(
                f"zone {self.zone}: {moment.isoformat()} is outside the series "
                f"({self.start.isoformat()} to {self.end.isoformat()})"
            )
        i = bisect_right(self._bounds, t) - 1
        value = self._values[i]
        if value != value:
            raise SignalError(
                f"zone {self.zone}: {moment.isoformat()} falls in a gap of the series "
                f"({_dt(self._bounds[i]).isoformat()} to {_dt(self._bounds[i + 1]).isoformat()} is unknown)"
            )
        return value

    def window(self, start: datetime, end: datetime) -> IntensitySeries:
        """Return the part of the series inside ``[start, end)``, edge intervals clipped."""
        lo_t = ensure_utc(start, "window start").timestamp()
        hi_t = ensure_utc(end, "window end").timestamp()
        return self.window_ts(lo_t, hi_t)

    def window_ts(self, lo_t: float, hi_t: float, *, issued_at: datetime | None = None) -> IntensitySeries:
        """Return :meth:`window` for epoch-second bounds; optionally relabel ``issued_at``."""
        b = self._bounds
        lo_t, hi_t = max(lo_t, b[0]), min(hi_t, b[-1])
        if not hi_t > lo_t:
            raise SignalError(
                f"zone {self.zone}: no data between {_dt(lo_t).isoformat()} and {_dt(hi_t).isoformat()} "
                f"(the series covers {self.start.isoformat()} to {self.end.isoformat()})"
            )
        i = bisect_right(b, lo_t) - 1
        j = bisect_left(b, hi_t)
        v = self._values
        gaps = False
        if self._gaps:  # a window starts and ends on known data, like any series
            while i < j and v[i] != v[i]:
                i += 1
            while j > i and v[j - 1] != v[j - 1]:
                j -= 1
            if i == j:
                raise SignalError(
                    f"zone {self.zone}: no data between {_dt(lo_t).isoformat()} and {_dt(hi_t).isoformat()} "
                    "(it falls in a gap of the series)"
                )
            lo_t, hi_t = max(lo_t, b[i]), min(hi_t, b[j])
            gaps = any(x != x for x in v[i:j])
        bounds = b[i : j + 1]
        bounds[0], bounds[-1] = lo_t, hi_t
        est = self._estimated[i:j] if self._estimated else None
        out = IntensitySeries.__new__(IntensitySeries)
        out._init(self.zone, self.kind, bounds, v[i:j], self.source,
                  self.issued_at if issued_at is None else issued_at, self.is_forecast, est, gaps)
        out._intervals = None
        return out

    def integral_ts(self, lo_t: float, hi_t: float) -> float:
        """Return the integral of intensity over ``[lo_t, hi_t]`` (g/kWh x seconds), covered."""
        b, v = self._bounds, self._values
        if lo_t < b[0] or hi_t > b[-1]:
            raise SignalError(
                f"zone {self.zone}: {_dt(lo_t).isoformat()} to {_dt(hi_t).isoformat()} is not covered by "
                f"the series ({self.start.isoformat()} to {self.end.isoformat()})"
            )
        i = bisect_right(b, lo_t) - 1
        total = 0.0
        t = lo_t
        while t < hi_t:
            nxt = min(b[i + 1], hi_t)
            if v[i] != v[i]:
                raise SignalError(
                    f"zone {self.zone}: {_dt(lo_t).isoformat()} to {_dt(hi_t).isoformat()} crosses a gap of the "
                    f"series ({_dt(b[i]).isoformat()} to {_dt(b[i + 1]).isoformat()} is unknown)"
                )
            total += v[i] * (nxt - t)
            t = nxt
            i += 1
        return total

    def mean(self, start: datetime, end: datetime) -> float:
        """Return the time-weighted mean intensity over ``[start, end)``, which must be covered."""
        lo_t = ensure_utc(start, "start").timestamp()
        hi_t = ensure_utc(end, "end").timestamp()
        if not hi_t > lo_t:
            raise SignalError(f"zone {self.zone}: mean over an empty period {start} to {end}")
        return self.integral_ts(lo_t, hi_t) / (hi_t - lo_t)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _check_zone(zone: object) -> None:
    if not zone or not isinstance(zone, str):
        raise SignalError(f"series zone must be a non-empty string such as 'DE', got {zone!r}")


def _check_value(zone: str, at: float, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignalError(f"zone {zone}: interval at {_dt(at).isoformat()} has a non-numeric value {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise SignalError(
            f"zone {zone}: interval at {_dt(at).isoformat()} has value {value}; "
            "drop or fill missing data before building a series"
        )
    if value < 0:
        raise SignalError(
            f"zone {zone}: interval at {_dt(at).isoformat()} has negative intensity {value}; "
            "carbon intensity cannot be below zero"
        )


def check_same_kind(series: Sequence[IntensitySeries], *, allow_mixed: bool = False) -> SignalKind:
    """Return the one signal kind of ``series``; refuse a mix unless ``allow_mixed``.

    Comparing a marginal rate with an average one ranks zones by two different quantities,
    so a mix is an error unless the caller explicitly accepts it.
    """
    kinds = {s.kind for s in series}
    if len(kinds) > 1 and not allow_mixed:
        detail = ", ".join(f"{s.zone}={s.kind.value}" for s in series)
        raise SignalMixError(
            f"average and marginal signals cannot be compared ({detail}); use one signal kind "
            "for every candidate, or pass allow_mixed_signals=True to accept the mix"
        )
    return next(iter(kinds)) if len(kinds) == 1 else SignalKind.AVERAGE


def splice_current(current: IntensitySeries, forecast: IntensitySeries, now: datetime) -> IntensitySeries:
    """Cover ``now`` by prefixing a forecast that starts later with the current interval's value.

    The current value holds until the current interval ends (or until the forecast starts, if
    the current interval has already ended); any time left between that and the forecast's
    first known interval is a gap, never "now's value" stretched over unknown hours.
    """
    t = now.timestamp()
    start = forecast.bounds[0]
    if start <= t:
        return forecast
    value = current.values[-1]
    held_until = current.bounds[-1]
    if held_until <= t or held_until >= start:
        bounds, values = [t, *forecast.bounds], [value, *forecast.values]
    else:
        bounds, values = [t, held_until, *forecast.bounds], [value, math.nan, *forecast.values]
    return IntensitySeries.from_arrays(
        forecast.zone, forecast.kind, bounds, values, source=forecast.source, issued_at=forecast.issued_at,
        is_forecast=True, allow_gaps=True,
    )
