"""Trace replay: a normalized trace file served as if it were a live carbon-intensity API.

How "now" maps onto the trace. Two instants fix the mapping: ``replay_start``, a moment
inside the trace (default: the first instant every zone has data), and ``anchor``, the
wall-clock moment that corresponds to it (default ``2024-01-01T00:00:00Z``). A wall-clock
time ``t`` replays the trace at ``replay_start + (t - anchor)``. With ``loop`` on (the
default) the replay wraps around: the trace is played in laps of whole days, each lap
``(end of trace - horizon) - replay_start`` long rounded down to whole days, so a forecast
of ``horizon`` always has data and the time of day is preserved (with midnight-aligned
``replay_start`` and ``anchor``, wall-clock noon replays a historical noon). The mapping
depends only on the wall clock, so the worker and the triggerer, in different processes,
see the same "now". With ``loop`` off, a wall-clock time outside the trace is a
:class:`~airflow_carbon_provider.exceptions.CarbonNoDataError`.

Every series returned is shifted into wall-clock time: the planner sees intervals around
its own "now", with the trace's values. Forecasts come from the core's forecast models
(``perfect``, ``noisy:<MAPE>[:<seed>]`` or ``archive:FILE``), issued at the replayed "now".
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_carbon_provider.core.forecast import ForecastModel, parse_forecast_spec
from airflow_carbon_provider.core.signals import IntensitySeries, SignalKind, ensure_utc
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from airflow_carbon_provider.exceptions import CarbonConfigError, CarbonNoDataError, CarbonNotFoundError
from airflow_carbon_provider.sources._parsing import shift_series

__all__ = [
    "DEFAULT_ANCHOR",
    "PROVIDER",
    "ReplayClock",
    "TraceReplay",
    "check_trace_path",
    "load_replay",
]

PROVIDER = "carbontrace"
DEFAULT_ANCHOR = datetime(2024, 1, 1, tzinfo=timezone.utc)
DEFAULT_HORIZON = timedelta(hours=48)
MIN_HORIZON = timedelta(minutes=5)
MAX_HORIZON = timedelta(days=30)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class ReplayClock:
    """The mapping from wall-clock time to trace time (see the module docstring).

    :param data_start: first instant with data in every zone.
    :param data_end: end of the last interval with data in every zone.
    :param replay_start: the trace instant that ``anchor`` replays.
    :param anchor: the wall-clock instant that replays ``replay_start``.
    :param loop: wrap around in laps of whole days instead of running off the end.
    :param horizon: forecast length kept available at the end of each lap.
    """

    data_start: datetime
    data_end: datetime
    replay_start: datetime
    anchor: datetime = DEFAULT_ANCHOR
    loop: bool = True
    horizon: timedelta = DEFAULT_HORIZON

    def __post_init__(self) -> None:
        if not self.data_start <= self.replay_start < self.data_end:
            raise CarbonConfigError(
                f"replay_start {self.replay_start.isoformat()} is outside the trace "
                f"({self.data_start.isoformat()} to {self.data_end.isoformat()})",
                provider=PROVIDER,
            )
        if self.loop and self.lap < DAY:
            raise CarbonConfigError(
                f"the trace from replay_start {self.replay_start.isoformat()} to "
                f"{self.data_end.isoformat()} leaves less than a day after keeping a forecast horizon "
                f"of {self.horizon}; use a longer trace, an earlier replay_start or a shorter horizon",
                provider=PROVIDER,
            )

    @property
    def lap(self) -> timedelta:
        """Length of one replay lap: whole days, leaving ``horizon`` of data after it."""
        usable = self.data_end - self.horizon - self.replay_start
        return timedelta(days=max(usable // DAY, 0))

    def offset(self, now: datetime) -> timedelta:
        """Return ``wall-clock - trace time`` for the lap that ``now`` falls in."""
        now = ensure_utc(now, "now")
        elapsed = now - self.anchor
        if elapsed < timedelta(0):  # a lap backwards would silently replay another day
            raise CarbonConfigError(
                f"anchor {self.anchor.isoformat()} is later than now ({now.isoformat()}); the anchor is the "
                "wall-clock moment that replays replay_start, so it must not be in the future: set the "
                "connection's extra 'anchor' to a past moment (or leave it empty)",
                provider=PROVIDER,
            )
        if self.loop:
            elapsed = elapsed % self.lap
        replayed = self.replay_start + elapsed
        if not self.data_start <= replayed < self.data_end:
            raise CarbonNoDataError(
                f"wall-clock {now.isoformat()} replays {replayed.isoformat()}, outside the trace "
                f"({self.data_start.isoformat()} to {self.data_end.isoformat()}); set loop to true "
                "or move anchor/replay_start",
                provider=PROVIDER,
            )
        return now - replayed

    def replayed(self, now: datetime) -> datetime:
        """Return the trace instant that ``now`` replays."""
        return ensure_utc(now, "now") - self.offset(now)


class TraceReplay:
    """Serve current values, forecasts and history from a trace, in wall-clock time.

    :param actuals: the trace's series per zone (trace time).
    :param forecast: the forecast spec: ``perfect``, ``noisy:<MAPE>[:<seed>]``, ``archive:FILE``.
    :param clock: the wall-clock to trace-time mapping.
    """

    def __init__(self, actuals: Mapping[str, IntensitySeries], forecast: str, clock: ReplayClock) -> None:
        self.actuals = dict(actuals)
        self.clock = clock
        self.forecast_spec = forecast
        kind = next(iter(self.actuals.values())).kind.value
        try:
            self.model: ForecastModel = parse_forecast_spec(forecast, self.actuals, kind=kind)
        except (ValueError, OSError) as exc:
            raise CarbonConfigError(f"forecast {forecast!r}: {exc}", provider=PROVIDER) from None

    @property
    def zones(self) -> tuple[str, ...]:
        """Zones the trace has data for."""
        return tuple(self.actuals)

    def _series(self, zone: str) -> IntensitySeries:
        try:
            return self.actuals[zone]
        except KeyError:
            raise CarbonNotFoundError(
                f"the trace has no zone {zone!r}; it has {', '.join(self.zones)}",
                provider=PROVIDER,
                zone=zone,
            ) from None

    def _window(self, zone: str, start: datetime, end: datetime, offset: timedelta) -> IntensitySeries:
        series = self._series(zone)
        try:
            part = series.window(start - offset, end - offset)
        except ValueError as exc:
            raise CarbonNoDataError(str(exc), provider=PROVIDER, zone=zone) from None
        return _relabel(shift_series(part, offset))

    def current(self, zone: str, now: datetime) -> IntensitySeries:
        """Return the trace interval in force at the replayed ``now``, in wall-clock time."""
        offset = self.clock.offset(now)
        series = self._series(zone)
        replayed = ensure_utc(now) - offset
        index = _index(series, replayed)
        if not 0 <= index < len(series):
            raise CarbonNoDataError(
                f"the trace has no data for {zone} at {replayed.isoformat()}", provider=PROVIDER, zone=zone
            )
        part = series.window_ts(series.bounds[index], series.bounds[index + 1])
        return _relabel(shift_series(part, offset))

    def forecast(
        self,
        zone: str,
        now: datetime,
        horizon: timedelta,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> IntensitySeries:
        """Return the forecast issued at the replayed ``now``, clipped to ``[start, end)``."""
        offset = self.clock.offset(now)
        self._series(zone)
        replayed = ensure_utc(now) - offset
        try:
            issued = self.model.forecast(zone, replayed, horizon)
        except ValueError as exc:
            raise CarbonNoDataError(f"forecast: {exc}", provider=PROVIDER, zone=zone) from None
        shifted = _relabel(shift_series(issued, offset), forecast=True)
        if start is None and end is None:
            return shifted
        try:
            return shifted.window(start or shifted.start, end or shifted.end)
        except ValueError as exc:
            raise CarbonNoDataError(str(exc), provider=PROVIDER, zone=zone) from None

    def history(self, zone: str, now: datetime, start: datetime, end: datetime) -> IntensitySeries:
        """Return the actuals over ``[start, end)`` (wall-clock, mapped through ``now``'s lap)."""
        start, end = ensure_utc(start, "start"), ensure_utc(end, "end")
        if end <= start:
            raise CarbonNoDataError(f"history range {start} to {end} is empty", provider=PROVIDER, zone=zone)
        return self._window(zone, start, end, self.clock.offset(now))


def _index(series: IntensitySeries, moment: datetime) -> int:
    from bisect import bisect_right

    return bisect_right(series.bounds, moment.timestamp()) - 1


def _relabel(series: IntensitySeries, *, forecast: bool | None = None) -> IntensitySeries:
    is_forecast = series.is_forecast if forecast is None else forecast
    if series.source == PROVIDER and series.is_forecast == is_forecast:
        return series
    source = series.source
    if source.startswith("trace"):
        source = PROVIDER + source[len("trace") :]
    elif not source.startswith(PROVIDER):
        source = f"{PROVIDER}:{source}"
    return IntensitySeries.from_arrays(
        series.zone,
        series.kind,
        series.bounds,
        series.values,
        source=source,
        issued_at=series.issued_at,
        is_forecast=is_forecast,
        estimated=series.estimated_flags,
        allow_gaps=series.has_gaps,
    )


_LOADED: dict[tuple[str, float, str], Mapping[str, IntensitySeries]] = {}
_LOAD_LOCK = threading.Lock()
# Pseudo-file systems whose "regular files" are process or kernel state, never a trace.
_PSEUDO_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_trace_path(
    path: str | os.PathLike[str], allowed_dirs: Sequence[str | os.PathLike[str]] = (), *, what: str = "trace file"
) -> Path:
    """Return the resolved ``path`` if a trace connection may read it; raise CarbonConfigError if not.

    A trace must be a regular file whose name, and whose target once symlinks are resolved,
    ends in ``.csv``; nothing under ``/proc``, ``/sys`` or ``/dev``, no directory, device or
    FIFO. With ``allowed_dirs`` (``[carbon] trace_allowed_dirs``), the resolved file must also
    lie inside one of them. The trace bundled with the package is always allowed.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise CarbonConfigError(f"{what} must be a path to a .csv file", provider=PROVIDER)
    given = Path(path).expanduser()
    fix = "give the path of a regular .csv file (a normalized trace)"
    try:
        resolved = given.resolve(strict=True)
        info = resolved.stat()
    except (OSError, RuntimeError) as exc:  # missing, unreadable, a symlink loop
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "cannot be resolved"
        raise CarbonConfigError(f"{what} {given}: cannot open trace file ({reason})", provider=PROVIDER) from None
    if (
        given.suffix.lower() != ".csv"
        or resolved.suffix.lower() != ".csv"
        or not stat.S_ISREG(info.st_mode)
        or any(resolved == root or resolved.is_relative_to(root) for root in _PSEUDO_ROOTS)
    ):
        raise CarbonConfigError(f"{what} {given} is not a regular .csv file; {fix}", provider=PROVIDER)
    if resolved == bundled_trace_path():
        return resolved
    roots = [Path(d).expanduser().resolve() for d in allowed_dirs if str(d).strip()]
    if roots and not any(resolved.is_relative_to(root) for root in roots):
        raise CarbonConfigError(
            f"{what} {given} is outside the directories in [carbon] trace_allowed_dirs "
            f"({', '.join(str(r) for r in roots)}); move it there or extend that option",
            provider=PROVIDER,
        )
    return resolved


def load_trace(
    path: str | os.PathLike[str] | None,
    kind: SignalKind | str = SignalKind.AVERAGE,
    *,
    allowed_dirs: Sequence[str | os.PathLike[str]] = (),
):
    """Read (once per file version) the trace at ``path``, or the bundled one when None.

    ``path`` must pass :func:`check_trace_path`.
    """
    resolved = check_trace_path(path, allowed_dirs) if path else bundled_trace_path()
    try:
        mtime = resolved.stat().st_mtime
    except OSError as exc:
        raise CarbonConfigError(f"trace file {resolved}: {exc.strerror or exc}", provider=PROVIDER) from None
    key = (str(resolved), mtime, SignalKind(kind).value)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = read_trace(resolved, kind=kind, source="trace")
            except ValueError as exc:
                raise CarbonConfigError(str(exc), provider=PROVIDER) from None
        return _LOADED[key]


def load_replay(
    path: str | os.PathLike[str] | None = None,
    *,
    forecast: str = "perfect",
    replay_start: datetime | None = None,
    anchor: datetime = DEFAULT_ANCHOR,
    loop: bool = True,
    horizon: timedelta = DEFAULT_HORIZON,
    kind: SignalKind | str = SignalKind.AVERAGE,
    allowed_dirs: Sequence[str | os.PathLike[str]] = (),
) -> TraceReplay:
    """Build a :class:`TraceReplay` for the trace at ``path`` (the bundled one when None).

    :param allowed_dirs: directories the trace (and an ``archive:`` forecast file) must lie
        in; empty: any regular ``.csv`` file (see :func:`check_trace_path`).
    """
    actuals = load_trace(path, kind, allowed_dirs=allowed_dirs)
    spec = forecast.strip()
    if spec.startswith("archive:") and len(spec) > len("archive:"):
        archive = check_trace_path(spec[len("archive:") :], allowed_dirs, what="forecast archive")
        forecast = f"archive:{archive}"
    data_start = max(s.start for s in actuals.values())
    data_end = min(s.end for s in actuals.values())
    if data_end <= data_start:
        raise CarbonConfigError("the trace's zones do not overlap in time", provider=PROVIDER)
    clock = ReplayClock(
        data_start=data_start,
        data_end=data_end,
        replay_start=ensure_utc(replay_start, "replay_start") if replay_start else data_start,
        anchor=ensure_utc(anchor, "anchor"),
        loop=loop,
        horizon=horizon,
    )
    return TraceReplay(actuals, forecast, clock)
