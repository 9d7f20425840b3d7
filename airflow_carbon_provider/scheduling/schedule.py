"""A carbon-aware task's schedule: its candidates, timing and planning options, and how it plans.

Everything here validates its inputs when it is constructed (at DAG parse time for
operators) and reads connections and carbon data only when asked to plan (at run time).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import airflow_carbon_provider.scheduling.fleet as fleet
from airflow_carbon_provider.core.durations import format_duration, parse_duration
from airflow_carbon_provider.core.places import PlaceError, parse_place, resolve_place
from airflow_carbon_provider.core.planner import POLICIES, Candidate
from airflow_carbon_provider.core.policies import get_policy, policy_names
from airflow_carbon_provider.core.resources import Resources
from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.scheduling.candidates import (
    CARBON_CONN_EXTRA,
    DEFAULT_CARBON_CONN_ID,
    ZONE_EXTRA,
    ClusterCandidate,
    ScheduleConfigError,
    check_place,
    parse_candidates,
)
from airflow_carbon_provider.scheduling.decision import Decision
from airflow_carbon_provider.scheduling.fetching import (
    MAX_PLANNING_TIMEOUT,
    MIN_PLANNING_TIMEOUT,
    fetch_sources,
    planning_timeout_default,
    run_bounded,
    until_for,
)
from airflow_carbon_provider.scheduling.planning import PlanningOptions, decide

__all__ = ["DEFER_GRACE", "MAX_SPAN", "CarbonSchedule", "utcnow"]

UTC = timezone.utc
log = logging.getLogger(__name__)
#: The longest duration, delay or deadline distance a carbon-aware task may name.
MAX_SPAN = timedelta(days=366)
#: The defer timeout is a backstop after the latest start; the trigger itself fires at it.
DEFER_GRACE = timedelta(minutes=10)


def backtest_only() -> set[str]:
    """Return the registered policies a task cannot use (they plan on the realised series)."""
    return set(policy_names(offline=True)) - set(policy_names())


def utcnow() -> datetime:
    """Return the current time in UTC (the one clock this module reads)."""
    return datetime.now(UTC)



def _duration(value: Any, name: str, *, allow_zero: bool) -> timedelta:
    try:
        delta = parse_duration(value, name) if isinstance(value, (str, timedelta)) else None
    except ValueError as exc:
        raise ScheduleConfigError(str(exc)) from None
    except OverflowError:
        delta = MAX_SPAN * 2  # refused below with the bound
    if delta is None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            delta = timedelta(seconds=value) if abs(value) <= 2 * MAX_SPAN.total_seconds() else MAX_SPAN * 2
        else:
            raise ScheduleConfigError(f"{name} must be a timedelta, seconds or a string like '4h', got {value!r}")
    if delta > MAX_SPAN:
        raise ScheduleConfigError(f"{name} {value!r} is longer than {MAX_SPAN.days} days; give a shorter duration")
    if delta < timedelta(0) or (delta == timedelta(0) and not allow_zero):
        bound = "zero or more" if allow_zero else "longer than zero"
        raise ScheduleConfigError(f"{name} must be {bound}, got {format_duration(delta)}")
    return delta


def _instant(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleConfigError(f"{name} {value!r} is not an ISO-8601 datetime like 2026-11-28T08:00:00Z") from None
    else:
        raise ScheduleConfigError(f"{name} must be a datetime or an ISO-8601 string, got {value!r}")
    if moment.tzinfo is None:
        raise ScheduleConfigError(f"{name} {value!r} has no timezone; give one, e.g. 2026-11-28T08:00:00Z")
    return moment.astimezone(UTC)

class CarbonSchedule:
    """Plan a task's cluster and start from carbon forecasts; build the trigger that waits.

    :param cluster_conn_ids: Kubernetes connection ids (the first is home), or a mapping;
        see :func:`parse_candidates`. For tasks that are not pods, zones may stand in for
        connections (:class:`~airflow_carbon_provider.sensors.carbon_window.CarbonWindowSensor`).
    :param expected_duration: how long the task runs (``"4h"``, a timedelta or seconds).
    :param max_delay: how long after it becomes ready the task may start.
    :param deadline: when the task must have *finished*; the latest start is the deadline
        minus ``expected_duration``. Give ``max_delay`` or ``deadline``, not both.
    :param policy: a planner policy (default ``carbon-aware``).
    :param min_saving_pct: hysteresis, relative (percent).
    :param min_saving_abs: hysteresis, absolute (gCO2eq/kWh).
    :param carbon_conn_id: the carbon-intensity connection for candidates that name none.
    :param fail_open: on carbon-data failure, run at once at home and say so (default); if
        false the task fails instead.
    :param replan_interval: how often the trigger re-plans while waiting (default 15 min).
    :param beyond_horizon: ``exclude`` or ``persist`` (see the planner).
    :param allow_mixed_signals: accept average and marginal candidates in one comparison.
    :param planning_timeout: seconds one planning step (every carbon source at once) may take
        before the task plans without the sources that have not answered, or falls open
        (default ``[carbon] planning_timeout``, else 5).
    :param coordinate: plan with the fleet (:mod:`~airflow_carbon_provider.scheduling.fleet`):
        what each cluster can take (read from the cluster, capped by a declared ``capacity``)
        and the other carbon-aware tasks' reservations, and reserve the chosen window in the
        ledger's database; ``False`` plans alone, as before 0.2.0 (declared capacities only).
    """

    def __init__(
        self,
        cluster_conn_ids: Any,
        *,
        expected_duration: Any,
        max_delay: Any = None,
        deadline: Any = None,
        policy: str = "carbon-aware",
        min_saving_pct: float = 5.0,
        min_saving_abs: float = 0.0,
        carbon_conn_id: str = DEFAULT_CARBON_CONN_ID,
        fail_open: bool = True,
        replan_interval: Any = timedelta(minutes=15),
        beyond_horizon: str = "exclude",
        allow_mixed_signals: bool = False,
        planning_timeout: Any = None,
        coordinate: bool = True,
    ) -> None:
        self.candidates = parse_candidates(cluster_conn_ids, allow_mixed_signals=allow_mixed_signals)
        self.expected_duration = _duration(expected_duration, "expected_duration", allow_zero=False)
        if max_delay is None and deadline is None:
            raise ScheduleConfigError(
                "give max_delay (how late the task may start, e.g. '6h') or deadline (when it must be done)"
            )
        if max_delay is not None and deadline is not None:
            raise ScheduleConfigError("give max_delay or deadline, not both")
        self.max_delay = _duration(max_delay, "max_delay", allow_zero=True) if max_delay is not None else None
        # A deadline may be a template string that is rendered later; check it when planning.
        self.deadline = deadline
        if isinstance(deadline, datetime):
            _instant(deadline, "deadline")
        if policy not in POLICIES:
            if policy in backtest_only():
                what = ("plans on what really happened" if get_policy(policy).offline
                        else "is a comparison for the backtest (a task plans alone with coordinate=False instead)")
                raise ScheduleConfigError(f"policy {policy!r} {what} and exists only in the backtest; use one of: "
                                          f"{', '.join(POLICIES)}")
            raise ScheduleConfigError(f"policy {policy!r} is unknown; use one of: {', '.join(POLICIES)}")
        self.policy = policy
        for name, value in (("min_saving_pct", min_saving_pct), ("min_saving_abs", min_saving_abs)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ScheduleConfigError(f"{name} must be a number >= 0, got {value!r}")
        self.min_saving_pct = float(min_saving_pct)
        self.min_saving_abs = float(min_saving_abs)
        if not carbon_conn_id or not isinstance(carbon_conn_id, str):
            raise ScheduleConfigError(f"carbon_conn_id must be a connection id, got {carbon_conn_id!r}")
        self.carbon_conn_id = carbon_conn_id
        self.fail_open = bool(fail_open)
        self.replan_interval = _duration(replan_interval, "replan_interval", allow_zero=False)
        if self.replan_interval < timedelta(minutes=1):
            raise ScheduleConfigError(
                f"replan_interval {self.replan_interval} is under a minute; carbon forecasts change at most every "
                "5 minutes, so use '5m' or more"
            )
        if beyond_horizon not in ("exclude", "persist"):
            raise ScheduleConfigError(f"beyond_horizon {beyond_horizon!r} is unknown; use 'exclude' or 'persist'")
        self.beyond_horizon = beyond_horizon
        self.allow_mixed_signals = bool(allow_mixed_signals)
        self.planning_timeout = _planning_timeout(planning_timeout)
        if not isinstance(coordinate, bool):
            raise ScheduleConfigError(f"coordinate must be True or False, got {coordinate!r}")
        self.coordinate = coordinate
        #: The planning parameters a waiting trigger needs too (no timing, no candidates).
        self.options = self._options()
        #: Places the last :meth:`resolve` could not resolve (a failed location lookup), by source.
        self.place_errors: dict[tuple[str, str], str] = {}

    def _options(self) -> PlanningOptions:
        return PlanningOptions(
            policy=self.policy, min_saving_pct=self.min_saving_pct, min_saving_abs=self.min_saving_abs,
            carbon_conn_id=self.carbon_conn_id, beyond_horizon=self.beyond_horizon,
            allow_mixed_signals=self.allow_mixed_signals, fail_open=self.fail_open,
            planning_timeout=self.planning_timeout,
        )

    @classmethod
    def check_at_parse(cls, cluster_conn_ids: Any, **kwargs: Any) -> CarbonSchedule:
        """Validate what can be validated before templates are rendered.

        Jinja strings (``"{{ params.max_delay }}"``) stand in for valid values here; they are
        checked, like everything else, when the task builds its schedule at run time.
        """
        stand_ins = {"expected_duration": "1h", "max_delay": "1h", "deadline": "2000-01-01T00:00:00Z"}
        for name, value in list(kwargs.items()):
            if isinstance(value, str) and "{{" in value:
                kwargs[name] = stand_ins.get(name, value)
        return cls(cluster_conn_ids, **kwargs)

    # -- timing -------------------------------------------------------------------------

    def latest_start(self, arrival: datetime, deadline: Any = None) -> tuple[datetime, datetime | None]:
        """Return the latest start and the deadline (finish-by), from ``max_delay`` or ``deadline``."""
        if self.max_delay is not None:
            return arrival + self.max_delay, None
        finish_by = _instant(deadline if deadline is not None else self.deadline, "deadline")
        return finish_by - self.expected_duration, finish_by

    def defer_timeout(self, decision: Decision, now: datetime | None = None) -> timedelta:
        """Return the defer timeout: the latest start plus a grace period, from ``now``."""
        return max(decision.latest_start - (now or utcnow()), timedelta(0)) + DEFER_GRACE

    # -- carbon data ----------------------------------------------------------------------

    def source_of(self, cand: ClusterCandidate) -> tuple[str, str]:
        """Return the (carbon connection, zone) whose forecast applies to ``cand``."""
        return self.options.source_of(cand)

    def planner_candidate(self, cand: ClusterCandidate) -> Candidate:
        """Return ``cand`` as the planner sees it: its key, and its source as the "zone"."""
        return self.options.planner_candidate(cand)

    def resolve(self) -> list[ClusterCandidate]:
        """Fill in zones and carbon connections from the Kubernetes connections' extras.

        A candidate whose zone is given in ``cluster_conn_ids`` keeps it (and its
        ``carbon_conn_id``, else the task's); the connection is read only for the others. A
        place named as a cloud region or coordinates (there or in the extra ``carbon_zone``)
        is resolved to the key its carbon source uses (:meth:`resolve_place`).
        """
        from airflow_carbon_provider.hooks._registry import read_connection_extras

        resolved = []
        self.place_errors = {}
        for cand in self.candidates:
            carbon = cand.carbon_conn_id or self.carbon_conn_id
            where = f"cluster_conn_ids[{cand.key!r}]"
            if cand.zone is not None:  # given explicitly: the connection need not be read
                resolved.append(replace(cand, carbon_conn_id=carbon))
                continue
            place = cand.where
            if place is None:
                try:
                    extras = read_connection_extras(cand.conn_id)
                except CarbonDataError as exc:  # an undefined Kubernetes connection is a config error
                    raise ScheduleConfigError(str(exc)) from None
                if not extras.get(ZONE_EXTRA):
                    raise ScheduleConfigError(
                        f"Kubernetes connection {cand.conn_id!r} has no extra {ZONE_EXTRA!r}; add the grid zone it "
                        f"draws power from (e.g. {{\"{ZONE_EXTRA}\": \"DE\"}}, a cloud region such as "
                        f"\"aws:eu-central-1\") or give the zone in cluster_conn_ids"
                    )
                where = f"connection {cand.conn_id!r} extra {ZONE_EXTRA!r}"
                zone, place = check_place(extras[ZONE_EXTRA], where)
                carbon = cand.carbon_conn_id or str(extras.get(CARBON_CONN_EXTRA) or self.carbon_conn_id)
                if zone is not None:
                    resolved.append(replace(cand, zone=zone, carbon_conn_id=carbon))
                    continue
            assert place is not None
            resolved.append(self.resolve_place(cand, place, carbon, where))
        return resolved

    def resolve_place(self, cand: ClusterCandidate, written: str, carbon_conn_id: str, where: str) -> ClusterCandidate:
        """Return ``cand`` with the key that source ``carbon_conn_id`` uses for the place ``written``.

        A cloud region resolves through the bundled table; coordinates (and a region the table
        has no key for) through the source's location endpoint, within ``planning_timeout`` and
        cached for a day. A place that source cannot name is a configuration error; a lookup
        that fails (the API is down) leaves the candidate out of this plan, as missing carbon
        data does (home falls open), and says why.
        """
        from airflow_carbon_provider.hooks._registry import carbon_hook

        place = parse_place(written, where)
        budget = self.planning_timeout

        def unresolved(why: str) -> ClusterCandidate:
            self.place_errors[(carbon_conn_id, place.text)] = why
            log.warning("%s: %s", where, why)
            return replace(cand, zone=place.text, where=place.text, carbon_conn_id=carbon_conn_id)

        try:
            hook = run_bounded(lambda: carbon_hook(carbon_conn_id), budget, "carbon connection read")
        except Exception as exc:  # the fetch would fail the same way: leave the candidate out
            return unresolved(f"cannot resolve {place.text!r}: {type(exc).__name__}: {exc}")
        try:
            resolution = resolve_place(place, hook.provider, where)
        except PlaceError as exc:
            raise ScheduleConfigError(str(exc)) from None
        key = resolution.key
        if key is None:
            assert resolution.lookup is not None
            lat, lon = resolution.lookup
            try:
                key = str(run_bounded(lambda: hook.locate(lat, lon), budget, "location lookup"))
            except Exception as exc:  # API down, or no coverage there: this candidate has no data
                return unresolved(f"{place.text!r} could not be resolved by {carbon_conn_id} "
                                  f"({resolution.how}): {type(exc).__name__}: {exc}")
        log.info("%s: %s \u2192 %s for %s (%s)", where, place.text, key, carbon_conn_id, resolution.how)
        return replace(cand, zone=key, where=place.text, carbon_conn_id=carbon_conn_id)

    def fetch_forecasts(
        self, candidates: Sequence[ClusterCandidate], now: datetime, until: datetime,
        notes: dict[tuple[str, str], str] | None = None,
    ) -> tuple[dict[tuple[str, str], IntensitySeries], dict[tuple[str, str], str]]:
        """Fetch one forecast per (carbon connection, zone), all at once, within ``planning_timeout``.

        Each is conditioned on its zone's measured history, as the backtest's ``carbon-aware``
        plans (:mod:`~airflow_carbon_provider.scheduling.fetching`); ``notes`` receives how.
        """
        sources = [self.source_of(c) for c in candidates]
        unresolved = {s: self.place_errors[s] for s in sources if s in self.place_errors}
        series, errors = fetch_sources((s for s in sources if s not in unresolved), now, until,
                                       budget=self.planning_timeout, clock=lambda: now, notes=notes)
        return series, {**errors, **unresolved}

    # -- planning -------------------------------------------------------------------------

    def plan(
        self,
        now: datetime,
        arrival: datetime,
        *,
        deadline: Any = None,
        busy: Sequence[tuple[str, datetime, datetime]] = (),
        holder: Any = None,
        demand: Resources | None = None,
        read_cluster: bool = True,
    ) -> Decision:
        """Choose cluster and start; on carbon-data failure fall open (or raise if ``fail_open`` is off).

        Fetching takes at most ``planning_timeout`` seconds, whatever the carbon APIs do. With
        ``coordinate`` on and a ``holder`` (the task instance, :func:`~airflow_carbon_provider.scheduling.fleet.holder_for`),
        the plan sees the fleet and reserves its window (see :mod:`~airflow_carbon_provider.scheduling.fleet`).

        :param demand: what the task asks for while it runs (default one pod).
        :param read_cluster: read each candidate's room from its cluster (off for tasks that are
            not pods on those clusters, such as the sensor's).
        """
        latest, finish_by = self.latest_start(arrival, deadline)
        candidates = self.resolve()
        home = candidates[0]
        notes: dict[tuple[str, str], str] = {}
        series, errors = self.fetch_forecasts(candidates, now, until_for(latest, now, self.expected_duration), notes)
        if self.coordinate and holder is not None:
            decision = self._plan_with_fleet(candidates, series, errors, holder=holder, demand=demand,
                                             read_cluster=read_cluster, now=now, arrival=arrival, latest=latest,
                                             finish_by=finish_by, busy=busy, home=home, notes=notes)
        else:
            decision = self.decide(candidates, series, errors, now=now, arrival=arrival, latest=latest,
                                   finish_by=finish_by, busy=busy, home=home, demand=demand, notes=notes)
        unreachable = self.unreachable_deadline(now, finish_by)
        if unreachable:
            log.warning("%s", unreachable)
            decision = replace(decision, reason=f"{decision.reason}; {unreachable}")
        return decision

    def _plan_with_fleet(self, candidates: Sequence[ClusterCandidate],
                         series: Mapping[tuple[str, str], IntensitySeries], errors: Mapping[tuple[str, str], str],
                         *, holder: Any, demand: Resources | None, read_cluster: bool, now: datetime,
                         latest: datetime, **kwargs: Any) -> Decision:
        """Plan with the fleet's view and reserve the window; plan again if another task took it first."""
        budget = self.planning_timeout
        decision: Decision | None = None
        lost: list[str] = []
        for _ in range(fleet.MAX_ATTEMPTS):
            view = fleet.read_fleet(candidates, holder=holder, now=now, latest=latest,
                                    duration=self.expected_duration, budget=budget, read_cluster=read_cluster)
            decision = self.decide(candidates, series, errors, now=now, latest=latest, fleet=view, demand=demand,
                                   **kwargs)
            if decision.fail_open or not view.coordinated:
                return decision
            full = decision.plan is not None and not decision.plan.best_per_candidate
            held = fleet.hold(holder, decision.chosen_key, decision.planned_start, self.expected_duration, demand,
                              None if full else view.capacities.get(decision.chosen_key), now=now, budget=budget)
            decision = decision.with_fleet(reservation=held.status, reservation_note=held.message,
                                           holder=holder.as_dict() if hasattr(holder, "as_dict") else holder)
            if held.status != "refused":
                if held.status == "unavailable":
                    decision = replace(decision, reason=f"{decision.reason}; reservation not recorded "
                                                        f"({held.message}); planning without coordination")
                return decision
            lost.append(held.message)
        assert decision is not None
        # Others kept taking the windows this task chose: run now at home rather than risk the deadline.
        home = kwargs["home"]
        why = (f"the windows it chose were taken by other tasks {fleet.MAX_ATTEMPTS} times ({lost[-1]}); "
               f"running now on the home cluster {home.conn_id} rather than risking the deadline")
        fallback = decision.moved_to(home.key, decision.baseline_intensity, why)
        fallback = replace(fallback, planned_start=now).with_fleet(reservation="refused", reservation_note=lost[-1])
        fleet.hold(holder, home.key, now, self.expected_duration, demand, None, now=now, budget=budget)
        return fallback

    def unreachable_deadline(self, now: datetime, finish_by: datetime | None) -> str | None:
        """Say so when the deadline comes before a run started ``now`` could finish; else None."""
        if finish_by is None or now + self.expected_duration <= finish_by:
            return None
        left = max(finish_by - now, timedelta(0))
        return (f"WARNING: the deadline {finish_by.isoformat()} is {format_duration(timedelta(seconds=round(left.total_seconds()))) if left else 'already past'}"
                f"{' away' if left else ''}, less than expected_duration {format_duration(self.expected_duration)}: "
                "the task cannot finish by it, so it starts now without waiting; give a later deadline or a "
                "shorter expected_duration")

    def decide(
        self,
        candidates: Sequence[ClusterCandidate],
        series: Mapping[tuple[str, str], IntensitySeries],
        errors: Mapping[tuple[str, str], str],
        **kwargs: Any,
    ) -> Decision:
        """Plan from fetched forecasts: :func:`decide` with this schedule's options and duration."""
        return decide(self.options, self.expected_duration, candidates, series, errors, **kwargs)

def _planning_timeout(value: Any) -> float:
    if value is None:
        return planning_timeout_default()
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds)
            or not MIN_PLANNING_TIMEOUT <= seconds <= MAX_PLANNING_TIMEOUT):
        raise ScheduleConfigError(
            f"planning_timeout must be seconds between {MIN_PLANNING_TIMEOUT:g} and {MAX_PLANNING_TIMEOUT:g}, "
            f"got {value!r}"
        )
    return float(seconds)

