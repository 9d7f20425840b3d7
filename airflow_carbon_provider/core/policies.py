"""The planner's policies as objects, in one registry that the planner, the backtest and the CLI read.

A policy is a class: its name, a one-line summary, what it may do (move to another candidate,
re-plan while waiting) and :meth:`Policy.choose`, which picks an option from the prepared
:class:`PlanContext`. :func:`register` adds it; :func:`get_policy` finds it by name. A new
policy is one class here (or anywhere, registered) and one test.

``oracle`` is *offline*: it plans on the realised series, so it exists for the backtest (the
bound every other policy is measured against), never for a task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import ClassVar, TypeVar

from airflow_carbon_provider.core.contention import raise_at
from airflow_carbon_provider.core.resources import Booking
from airflow_carbon_provider.core.windows import (
    TIE,
    Candidate,
    Limit,
    Load,
    Option,
    PlanningError,
    Zone,
    best_options,
)

__all__ = [
    "CarbonAware",
    "Choice",
    "GreenestNow",
    "NextHourWindow",
    "Oracle",
    "PlanContext",
    "Policy",
    "RollingWindow",
    "RunNow",
    "Threshold",
    "get_policy",
    "policy_names",
    "register",
]

UTC = timezone.utc


@dataclass(frozen=True)
class PlanContext:
    """What a policy chooses from: the candidates it may use, their forecasts and the window.

    ``pool`` is every candidate for a spatial policy and the home candidate alone otherwise;
    ``zones`` holds each pool zone's forecast; times ``t_*`` are epoch seconds and ``dur`` the
    run's length in seconds; ``baseline`` is running now at home. ``busy`` holds the bookings
    the plan was given, ``demand`` what the job asks for and ``loads``, per cluster id, the
    booked load of each pool candidate with a capacity (see :class:`~airflow_carbon_provider.core.windows.Load`);
    ``contention`` is ``contention_pct / 100`` (see :mod:`~airflow_carbon_provider.core.contention`).
    """

    pool: Sequence[Candidate]
    home: Candidate
    zones: Mapping[str, Zone]
    baseline: Option
    now: datetime
    t_now: float
    t_latest: float
    dur: float
    beyond_horizon: str
    busy: Sequence[Booking]
    threshold_pct: float
    min_saving_pct: float
    min_saving_abs: float
    incumbent: Option | None
    demand: Mapping[str, float] = field(default_factory=dict)
    loads: Mapping[str, Load] = field(default_factory=dict)
    contention: float = 0.0

    def fits(self, cand: Candidate, start: float) -> bool:
        """Return whether a run from ``start`` (epoch seconds) fits on ``cand`` beside its bookings."""
        load = self.loads.get(cand.cluster_id)
        return load is None or load.fits(start)

    def contended(self, cand: Candidate, start: float) -> float:
        """Return the contention raise of a run from ``start`` on ``cand`` (0 where its capacity does not bind)."""
        load = self.loads.get(cand.cluster_id)
        if load is None or self.contention <= 0.0 or not load.binds:  # as for the options: see best_options
            return 0.0
        return raise_at(load.fill, start, self.dur, self.t_now, self.t_latest - self.t_now, self.contention)

    def mean(self, zone: Zone, start: float) -> float:
        """Return the forecast mean intensity of a run from ``start`` (epoch seconds) in ``zone``."""
        return (zone.cum(start + self.dur) - zone.cum(start)) / self.dur


@dataclass(frozen=True)
class Choice:
    """A policy's answer: the chosen option, each candidate's best option, and why."""

    chosen: Option
    options: tuple[Option, ...]
    reason: str
    kept_incumbent: bool = False
    #: Better options (by forecast) that capacity ruled out; the planner reports those better than ``chosen``.
    limits: tuple[Limit, ...] = ()


class Policy:
    """A rule that chooses where and when a job runs. Subclass, set the attributes, :func:`register`."""

    #: The name users give (``policy="..."``, ``--policy ...``).
    name: ClassVar[str]
    #: One line for help texts and docs.
    summary: ClassVar[str]
    #: Whether it may choose a candidate other than home (else it sees home only).
    spatial: ClassVar[bool] = True
    #: Whether a waiting job re-plans at each forecast refresh (the backtest replays that).
    replans: ClassVar[bool] = False
    #: Whether it plans on the realised series: a bound for the backtest, never run by a task.
    offline: ClassVar[bool] = False
    #: Whether the backtest shows it the bookings of jobs planned before (capacities are then
    #: respected fleet-wide); the planner always respects whatever ``busy`` it is given.
    coordinated: ClassVar[bool] = True
    #: Whether it exists only as a comparison in the backtest (a task cannot use it).
    backtest_only: ClassVar[bool] = False

    def choose(self, ctx: PlanContext) -> Choice:
        """Return the option this policy chooses in ``ctx``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<policy {self.name}>"


_REGISTRY: dict[str, Policy] = {}
P = TypeVar("P", bound=type[Policy])


def register(cls: P) -> P:
    """Add a policy class to the registry (a class decorator); its name must be new."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a policy named {cls.name!r} is registered already")
    _REGISTRY[cls.name] = cls()
    return cls


def get_policy(name: str) -> Policy:
    """Return the registered policy ``name``; :class:`PlanningError` names the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise PlanningError(f"policy {name!r} is unknown; use one of: {', '.join(policy_names())}") from None


def policy_names(*, offline: bool = False) -> tuple[str, ...]:
    """Return the registered policy names in registration order; with ``offline``, backtest-only ones too
    (``oracle``, ``carbon-aware-uncoordinated``)."""
    return tuple(name for name, p in _REGISTRY.items() if offline or not (p.offline or p.backtest_only))


# -- the policies --------------------------------------------------------------------------


class _Window(Policy):
    """The lowest-mean run among the allowed starts up to the latest start, without hysteresis."""

    hourly: ClassVar[bool] = False

    def options(self, ctx: PlanContext) -> tuple[list[Option], list[Limit]]:
        return best_options(ctx.pool, ctx.zones, ctx.t_now, ctx.t_latest, ctx.dur, ctx.beyond_horizon, ctx.loads,
                            hourly=self.hourly, contention=ctx.contention)

    def best(self, ctx: PlanContext, options: list[Option]) -> Option:
        """Return the lowest-price option (the mean intensity unless others' bookings raise it, see
        :attr:`Option.price`); among equals the earlier start, then the earlier candidate."""
        lowest = min(o.price for o in options)
        limit = lowest * (1 + TIE) + TIE
        rank = {cand: i for i, cand in reversed(list(enumerate(ctx.pool)))}  # first position wins
        return min((o for o in options if o.price <= limit), key=lambda o: (o.start, rank[o.candidate]))

    def choose(self, ctx: PlanContext) -> Choice:
        options, limits = self.options(ctx)
        if not options:
            return _all_full(self.name, ctx)
        choice = self.settle(ctx, self.best(ctx, options), options)
        return replace(choice, limits=tuple(limits)) if limits else choice

    def settle(self, ctx: PlanContext, best: Option, options: list[Option]) -> Choice:
        """Return the choice given the best option: here the best itself, without hysteresis."""
        return Choice(best, tuple(options), _explain(self.name, best, ctx.baseline, False, False, 0.0, 0.0, 0.0, 0.0,
                                                    ctx.now))


@register
class CarbonAware(_Window):
    """Joint choice of cluster and start, kept unless a better one beats it by the hysteresis margin."""

    name = "carbon-aware"
    summary = "the cleanest cluster and start before the latest start, with hysteresis (the operator's default)"
    replans = True

    def settle(self, ctx: PlanContext, best: Option, options: list[Option]) -> Choice:
        """Keep the incumbent (or running now at home) unless ``best`` beats it by the hysteresis margin."""
        incumbent = ctx.incumbent
        if incumbent is not None and incumbent.candidate.zone in ctx.zones:
            start_t = max(incumbent.start, ctx.now).timestamp()
            if start_t > ctx.t_now and not ctx.zones[incumbent.candidate.zone].known(start_t, start_t + ctx.dur):
                incumbent = None  # its run now crosses a gap in the forecast: plan afresh
            elif not ctx.fits(incumbent.candidate, start_t):
                incumbent = None  # others' bookings took its room: plan afresh
        base = ctx.baseline
        if incumbent is None and not ctx.fits(ctx.home, ctx.t_now):
            base = best  # running now at home has no room: nothing to hold on to
        if incumbent is not None:
            start = max(incumbent.start, ctx.now)
            zone = ctx.zones.get(incumbent.candidate.zone)
            if zone is None:
                raise PlanningError(f"incumbent zone {incumbent.candidate.zone!r} has no forecast; pass it in forecasts")
            start_t = start.timestamp()
            base = Option(incumbent.candidate, start, ctx.mean(zone, start_t), ctx.contended(incumbent.candidate, start_t))
        gain = base.price - best.price  # the means, unless others' bookings raise a price
        gain_pct = 100.0 * gain / base.price if base.price > 0 else 0.0
        if (best.candidate, best.start) == (base.candidate, base.start):
            chosen, kept = base, incumbent is not None
        elif gain > TIE * max(1.0, base.mean_intensity) and gain_pct >= ctx.min_saving_pct \
                and gain >= ctx.min_saving_abs:
            chosen, kept = best, False
        else:
            chosen, kept = base, True
        reason = _explain(self.name, chosen, ctx.baseline, kept, incumbent is not None, gain, gain_pct,
                          ctx.min_saving_pct, ctx.min_saving_abs, ctx.now)
        return Choice(chosen, tuple(options), reason, kept and incumbent is not None)


@register
class CarbonAwareUncoordinated(CarbonAware):
    """``carbon-aware``'s rule, each job planned alone: blind to the bookings of the others (backtest only).

    The planner gives it whatever ``busy`` it is given, like any policy; what makes it
    uncoordinated is that the backtest gives it none, so every job of a burst picks the same
    greenest option and a capacity can be exceeded. It measures what coordination is worth.
    """

    name = "carbon-aware-uncoordinated"
    summary = "carbon-aware with each job planned alone, blind to others' bookings (a backtest comparison)"
    coordinated = False
    backtest_only = True


@register
class RollingWindow(_Window):
    """Time-shifting only: the cleanest start at home (the Carbon Aware SDK's rolling window)."""

    name = "rolling-window"
    summary = "the cleanest start at home (time-shifting only)"
    spatial = False


@register
class NextHourWindow(_Window):
    """Time-shifting on the hour only, at home."""

    name = "next-hour-window"
    summary = "the cleanest start on the hour at home"
    spatial = False
    hourly = True


@register
class GreenestNow(Policy):
    """Space-shifting only: now, on the candidate with the lowest current intensity."""

    name = "greenest-now"
    summary = "start now on the cluster with the lowest current intensity (space-shifting only)"

    def choose(self, ctx: PlanContext) -> Choice:
        found = _now_options(ctx)
        if found is None:
            return _all_full(self.name, ctx)
        options, current, greenest, limits = found
        reason = (f"policy greenest-now: {greenest.candidate.cluster_id} ({greenest.candidate.zone}) has the "
                  f"lowest current intensity, {current[greenest.candidate.zone]:.0f} g/kWh")
        return Choice(greenest, tuple(options), reason, limits=limits)


@register
class Threshold(Policy):
    """Now; move to the greenest candidate only when home is more than ``threshold_pct`` dirtier."""

    name = "threshold"
    summary = "start now; move only when home is more than threshold_pct dirtier than the greenest cluster"

    def choose(self, ctx: PlanContext) -> Choice:
        found = _now_options(ctx)
        if found is None:
            return _all_full(self.name, ctx)
        options, current, greenest, limits = found
        home_now, green_now = ctx.zones[ctx.home.zone].value_at(ctx.t_now), current[greenest.candidate.zone]
        if not ctx.fits(ctx.home, ctx.t_now):
            return Choice(greenest, tuple(options), (
                f"policy threshold: home {ctx.home.cluster_id} has no room now; start on "
                f"{greenest.candidate.cluster_id} ({greenest.candidate.zone}), the greenest with room"), limits=limits)
        if home_now > green_now * (1 + ctx.threshold_pct / 100.0):
            return Choice(greenest, tuple(options), (
                f"policy threshold: home {ctx.home.zone} at {home_now:.0f} g/kWh exceeds "
                f"{greenest.candidate.zone} at {green_now:.0f} by more than {ctx.threshold_pct:g} %"), limits=limits)
        return Choice(ctx.baseline, tuple(options), (
            f"policy threshold: home {ctx.home.zone} at {home_now:.0f} g/kWh is within "
            f"{ctx.threshold_pct:g} % of the greenest zone; stay home"), limits=limits)


@register
class RunNow(Policy):
    """The baseline: now, at home."""

    name = "run-now"
    summary = "start now on the home cluster (the baseline)"
    spatial = False
    coordinated = False  # the baseline ignores capacity: it is what happens without us

    def choose(self, ctx: PlanContext) -> Choice:
        return Choice(ctx.baseline, (), "policy run-now: start now on the home cluster")


@register
class Oracle(_Window):
    """The offline bound: the best cluster and start on the realised series (backtest only)."""

    name = "oracle"
    summary = "the best cluster and start on the realised intensities (an offline bound; backtest only)"
    offline = True


# -- shared helpers -------------------------------------------------------------------------


def _now_options(ctx: PlanContext) -> tuple[list[Option], dict[str, float], Option, tuple[Limit, ...]] | None:
    """Return each candidate with room now started now, the current values, the greenest and the
    candidates capacity ruled out; None when no candidate has room now."""
    room = [c for c in ctx.pool if ctx.fits(c, ctx.t_now)]
    if not room:
        return None
    current = {c.zone: ctx.zones[c.zone].value_at(ctx.t_now) for c in room}
    options = [Option(c, ctx.now, ctx.mean(ctx.zones[c.zone], ctx.t_now)) for c in room]
    order = sorted(range(len(room)), key=lambda i: (current[room[i].zone], i))
    limits = []
    for c in ctx.pool:
        if c not in room:
            load = ctx.loads[c.cluster_id]
            limits.append(Limit(Option(c, ctx.now, ctx.mean(ctx.zones[c.zone], ctx.t_now)),
                                load.why(ctx.t_now)[0], load.clause(ctx.t_now)))
    return options, current, options[order[0]], tuple(limits)


def _all_full(name: str, ctx: PlanContext) -> Choice:
    full = [(c, ctx.loads[c.cluster_id]) for c in ctx.pool if c.cluster_id in ctx.loads]
    why = "; ".join(f"{c.cluster_id}: {load.clause(ctx.t_now)}" for c, load in full)
    limits = tuple(Limit(Option(c, ctx.now, ctx.mean(ctx.zones[c.zone], ctx.t_now)), load.why(ctx.t_now)[0],
                         load.clause(ctx.t_now)) for c, load in full)
    return Choice(ctx.baseline, (), limits=limits, reason=(
        f"{name}: every candidate is at capacity for the whole window ({why}); starting now on the "
        f"home cluster {ctx.home.cluster_id} rather than missing the deadline"))


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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _human(delta: timedelta) -> str:
    minutes = int(round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
