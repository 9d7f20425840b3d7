"""The public library API: describe where a task may run, plan it, defer to the window.

Operators in this package use it, and so can custom operators::

    schedule = CarbonSchedule(["k8s_de", "k8s_se"], expected_duration="4h", max_delay="12h")
    decision = schedule.plan(now=utcnow(), arrival=utcnow())
    if decision.waits:
        self.defer(trigger=CarbonWindowTrigger.from_decision(schedule, decision),
                   method_name="execute_complete", kwargs={"decision": decision.to_dict()},
                   timeout=schedule.defer_timeout(decision))

Everything here validates its inputs when it is constructed (at DAG parse time for
operators) and reads connections and carbon data only when asked to plan (at run time).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.durations import format_duration, parse_duration
from airflow_carbon_provider.core.planner import POLICIES, Candidate, Option, Plan, PlanningError, plan
from airflow_carbon_provider.core.signals import IntensitySeries, SignalError
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.fetching import (
    MAX_PLANNING_TIMEOUT,
    MIN_PLANNING_TIMEOUT,
    fetch_sources,
    planning_timeout_default,
    splice_current,
    until_for,
)

__all__ = [
    "DEFAULT_CARBON_CONN_ID",
    "CarbonSchedule",
    "ClusterCandidate",
    "Decision",
    "PlanningOptions",
    "ScheduleConfigError",
    "decide",
    "parse_candidates",
    "splice_current",
]

log = logging.getLogger(__name__)
UTC = timezone.utc
DEFAULT_CARBON_CONN_ID = "carbontrace_default"
ZONE_EXTRA = "carbon_zone"
CARBON_CONN_EXTRA = "carbon_conn_id"
_ZONE = re.compile(r"^[A-Z0-9][A-Z0-9_.\-]*$")
#: The longest duration, delay or deadline distance a carbon-aware task may name.
MAX_SPAN = timedelta(days=366)
# A task whose best start is this close to now starts now rather than deferring (the
# decision then records now as its planned start).
START_TOLERANCE = timedelta(seconds=5)
# The defer timeout is a backstop after the latest start; the trigger itself fires at it.
DEFER_GRACE = timedelta(minutes=10)


class ScheduleConfigError(ValueError):
    """Raised for a carbon-aware task configured in a way that cannot work."""


def utcnow() -> datetime:
    """Return the current time in UTC (the one clock this module reads)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClusterCandidate:
    """One place a task may run: a Kubernetes connection and the grid zone it draws from.

    :param conn_id: the Kubernetes connection id.
    :param zone: the grid zone; ``None`` means the connection's extra ``carbon_zone``.
    :param namespace: the namespace to use on this candidate (default: the operator's).
    :param node_selector: a node selector for this candidate (e.g. a region-labelled pool).
    :param affinity: an affinity for this candidate, as a Kubernetes dict.
    :param carbon_conn_id: the carbon-intensity connection for this zone (default: the
        Kubernetes connection's extra ``carbon_conn_id``, then the task's ``carbon_conn_id``).
    :param capacity: at most this many planned carbon-aware tasks overlap here.
    :param signal: ``average`` or ``marginal`` when known at parse time, to refuse a mix early.
    :param config_file: a kubeconfig path for this candidate (KPO's ``config_file``); default
        the connection's own configuration.
    :param cluster_context: the kubeconfig context for this candidate (KPO's ``cluster_context``).
    :param in_cluster: use the in-cluster configuration for this candidate (KPO's ``in_cluster``).
    """

    conn_id: str
    zone: str | None = None
    namespace: str | None = None
    node_selector: dict[str, str] | None = None
    affinity: dict[str, Any] | None = None
    carbon_conn_id: str | None = None
    capacity: int | None = None
    signal: str | None = None
    config_file: str | None = None
    cluster_context: str | None = None
    in_cluster: bool | None = None

    @property
    def key(self) -> str:
        """A unique name for this candidate: connection id, ``@context`` and ``[node selector]`` if any."""
        key = f"{self.conn_id}@{self.cluster_context}" if self.cluster_context else self.conn_id
        if self.node_selector:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.node_selector.items()))
            return f"{key}[{labels}]"
        return key

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (what the trigger's kwargs hold)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterCandidate:
        """Rebuild from :meth:`to_dict`."""
        return cls(**dict(data))


def _check_zone(zone: Any, where: str) -> str:
    if isinstance(zone, str) and zone != zone.upper() and _ZONE.match(zone.upper()):
        raise ScheduleConfigError(
            f"{where}: zone {zone!r} is lower case; carbon sources name zones in upper case: use {zone.upper()!r}"
        )
    if not isinstance(zone, str) or not _ZONE.match(zone):
        raise ScheduleConfigError(
            f"{where}: zone {zone!r} is not a zone key; use the key your carbon source names, "
            "e.g. 'DE', 'SE-SE1', 'US-CAL-CISO' or 'CAISO_NORTH'"
        )
    return zone


def parse_candidates(cluster_conn_ids: Any, *, allow_mixed_signals: bool = False) -> list[ClusterCandidate]:
    """Validate ``cluster_conn_ids`` (a list of connection ids or a mapping) into candidates.

    A mapping's values are a zone string or a dict with ``zone`` and optionally ``namespace``,
    ``node_selector``, ``affinity``, ``carbon_conn_id``, ``capacity``, ``signal`` and
    ``conn_id`` (to use one connection several times, e.g. one cluster with node pools in
    several regions: then the mapping's keys are just names).
    """
    if isinstance(cluster_conn_ids, str):
        cluster_conn_ids = [cluster_conn_ids]
    if not cluster_conn_ids:
        raise ScheduleConfigError(
            "cluster_conn_ids is empty; give at least one Kubernetes connection id (the first is home)"
        )
    candidates: list[ClusterCandidate] = []
    if isinstance(cluster_conn_ids, Mapping):
        for name, spec in cluster_conn_ids.items():
            where = f"cluster_conn_ids[{name!r}]"
            if spec is None or isinstance(spec, str):
                candidates.append(ClusterCandidate(str(name), _check_zone(spec, where) if spec else None))
                continue
            if not isinstance(spec, Mapping):
                raise ScheduleConfigError(f"{where} must be a zone string or a dict with 'zone', got {spec!r}")
            known = {"zone", "namespace", "node_selector", "affinity", "carbon_conn_id", "capacity", "signal",
                     "conn_id", "config_file", "cluster_context", "in_cluster"}
            unknown = sorted(set(spec) - known)
            if unknown:
                raise ScheduleConfigError(f"{where} has unknown key(s) {unknown}; allowed: {sorted(known)}")
            zone = spec.get("zone")
            capacity = spec.get("capacity")
            if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
                raise ScheduleConfigError(f"{where}: capacity must be a positive integer, got {capacity!r}")
            signal = spec.get("signal")
            if signal is not None and signal not in ("average", "marginal"):
                raise ScheduleConfigError(f"{where}: signal must be 'average' or 'marginal', got {signal!r}")
            for key in ("node_selector", "affinity"):
                if spec.get(key) is not None and not isinstance(spec[key], Mapping):
                    raise ScheduleConfigError(f"{where}: {key} must be a dict, got {type(spec[key]).__name__}")
            for key in ("config_file", "cluster_context", "namespace", "carbon_conn_id"):
                if spec.get(key) is not None and not isinstance(spec[key], str):
                    raise ScheduleConfigError(f"{where}: {key} must be a string, got {type(spec[key]).__name__}")
            if spec.get("in_cluster") is not None and not isinstance(spec["in_cluster"], bool):
                raise ScheduleConfigError(f"{where}: in_cluster must be true or false, got {spec['in_cluster']!r}")
            candidates.append(
                ClusterCandidate(
                    conn_id=str(spec.get("conn_id") or name),
                    zone=_check_zone(zone, where) if zone is not None else None,
                    namespace=spec.get("namespace"),
                    node_selector=dict(spec["node_selector"]) if spec.get("node_selector") else None,
                    affinity=dict(spec["affinity"]) if spec.get("affinity") else None,
                    carbon_conn_id=spec.get("carbon_conn_id"),
                    capacity=capacity,
                    signal=signal,
                    config_file=spec.get("config_file"),
                    cluster_context=spec.get("cluster_context"),
                    in_cluster=spec.get("in_cluster"),
                )
            )
    elif isinstance(cluster_conn_ids, Sequence):
        for item in cluster_conn_ids:
            if isinstance(item, ClusterCandidate):
                candidates.append(item)
            elif isinstance(item, str) and item.strip():
                candidates.append(ClusterCandidate(item.strip()))
            else:
                raise ScheduleConfigError(
                    f"cluster_conn_ids holds {item!r}; give Kubernetes connection ids as strings"
                )
    else:
        raise ScheduleConfigError(
            f"cluster_conn_ids must be a list of connection ids or a dict of id to zone, got "
            f"{type(cluster_conn_ids).__name__}"
        )
    keys = [c.key for c in candidates]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ScheduleConfigError(f"cluster_conn_ids names {duplicates} more than once; list each candidate once")
    signals = {c.signal for c in candidates if c.signal}
    if len(signals) > 1 and not allow_mixed_signals:
        raise ScheduleConfigError(
            "cluster_conn_ids mixes average and marginal signals; use one kind for every candidate or pass "
            "allow_mixed_signals=True"
        )
    return candidates


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


@dataclass
class Decision:
    """What was decided for one task: the plan (or why there is none) and how it ended."""

    policy: str
    candidates: list[ClusterCandidate]
    home: ClusterCandidate
    chosen: ClusterCandidate
    planned_start: datetime
    deadline: datetime | None
    latest_start: datetime
    arrival: datetime
    decided_at: datetime
    expected_intensity: float | None
    baseline_intensity: float | None
    reason: str
    plan: Plan | None = None
    fail_open: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def waits(self) -> bool:
        """Whether the planned start is meaningfully later than the decision."""
        return self.planned_start - self.decided_at > START_TOLERANCE

    @property
    def expected_saving_pct(self) -> float | None:
        """Expected reduction against home now, percent (None without carbon data)."""
        if self.expected_intensity is None or not self.baseline_intensity:
            return None
        return 100.0 * (self.baseline_intensity - self.expected_intensity) / self.baseline_intensity

    def sentence(self) -> str:
        """Describe the decision in one readable sentence."""
        return self.reason

    def to_dict(self) -> dict[str, Any]:
        """Return the XCom ``carbon_decision`` (JSON-safe; no secrets, only connection ids)."""
        saving = self.expected_saving_pct
        data: dict[str, Any] = {
            "chosen_cluster": self.chosen.conn_id,
            "chosen_key": self.chosen.key,
            "zone": self.chosen.zone,
            "home_cluster": self.home.conn_id,
            "home_zone": self.home.zone,
            "planned_start": _iso(self.planned_start),
            "deadline": _iso(self.deadline) if self.deadline else None,
            "latest_start": _iso(self.latest_start),
            "arrival": _iso(self.arrival),
            "decided_at": _iso(self.decided_at),
            "waited": self.waits,
            "expected_intensity": _round(self.expected_intensity),
            "baseline_intensity": _round(self.baseline_intensity),
            "expected_saving_pct": None if saving is None else round(saving, 2),
            "policy": self.policy,
            "reason": self.reason,
            "fail_open": self.fail_open,
            "errors": dict(self.errors),
            "candidates": self._candidate_rows(),
        }
        if self.chosen.namespace:
            data["namespace"] = self.chosen.namespace
        if self.chosen.node_selector:
            data["node_selector"] = dict(self.chosen.node_selector)
        data.update(self.extra)
        return data

    def _candidate_rows(self) -> list[dict[str, Any]]:
        best = {}
        if self.plan is not None:
            best = {o.candidate.cluster_id: o for o in self.plan.best_per_candidate}
        rows = []
        for cand in self.candidates:
            option = best.get(cand.key)
            row: dict[str, Any] = {"cluster": cand.conn_id, "key": cand.key, **cand.to_dict()}
            if option is not None:
                row["best_start"] = _iso(option.start)
                row["forecast_mean"] = _round(option.mean_intensity)
            if cand.key in self.errors:
                row["error"] = self.errors[cand.key]
            rows.append(row)
        return rows


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


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

    @property
    def options(self) -> PlanningOptions:
        """The planning parameters a waiting trigger needs too (no timing, no candidates)."""
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
        ``carbon_conn_id``, else the task's); the connection is read only for the others.
        """
        from airflow_carbon_provider.hooks._registry import read_connection_extras

        resolved = []
        for cand in self.candidates:
            if cand.zone is not None:  # given explicitly: the connection need not be read
                resolved.append(replace(cand, carbon_conn_id=cand.carbon_conn_id or self.carbon_conn_id))
                continue
            try:
                extras = read_connection_extras(cand.conn_id)
            except CarbonDataError as exc:  # an undefined Kubernetes connection is a config error
                raise ScheduleConfigError(str(exc)) from None
            zone = cand.zone or extras.get(ZONE_EXTRA)
            if not zone:
                raise ScheduleConfigError(
                    f"Kubernetes connection {cand.conn_id!r} has no extra {ZONE_EXTRA!r}; add the grid zone it draws "
                    f"power from (e.g. {{\"{ZONE_EXTRA}\": \"DE\"}}) or give the zone in cluster_conn_ids"
                )
            zone = _check_zone(zone, f"connection {cand.conn_id!r} extra {ZONE_EXTRA!r}")
            carbon = cand.carbon_conn_id or extras.get(CARBON_CONN_EXTRA) or self.carbon_conn_id
            resolved.append(replace(cand, zone=zone, carbon_conn_id=str(carbon)))
        return resolved

    def fetch_forecasts(
        self, candidates: Sequence[ClusterCandidate], now: datetime, until: datetime
    ) -> tuple[dict[tuple[str, str], IntensitySeries], dict[tuple[str, str], str]]:
        """Fetch one forecast per (carbon connection, zone), all at once, within ``planning_timeout``."""
        return fetch_sources((self.source_of(c) for c in candidates), now, until,
                             budget=self.planning_timeout, clock=lambda: now)

    # -- planning -------------------------------------------------------------------------

    def plan(
        self,
        now: datetime,
        arrival: datetime,
        *,
        deadline: Any = None,
        busy: Sequence[tuple[str, datetime, datetime]] = (),
    ) -> Decision:
        """Choose cluster and start; on carbon-data failure fall open (or raise if ``fail_open`` is off).

        Fetching takes at most ``planning_timeout`` seconds, whatever the carbon APIs do.
        """
        latest, finish_by = self.latest_start(arrival, deadline)
        candidates = self.resolve()
        home = candidates[0]
        series, errors = self.fetch_forecasts(candidates, now, until_for(latest, now, self.expected_duration))
        return self.decide(candidates, series, errors, now=now, arrival=arrival, latest=latest,
                           finish_by=finish_by, busy=busy, home=home)

    def decide(
        self,
        candidates: Sequence[ClusterCandidate],
        series: Mapping[tuple[str, str], IntensitySeries],
        errors: Mapping[tuple[str, str], str],
        **kwargs: Any,
    ) -> Decision:
        """Plan from fetched forecasts: :func:`decide` with this schedule's options and duration."""
        return decide(self.options, self.expected_duration, candidates, series, errors, **kwargs)


@dataclass(frozen=True)
class PlanningOptions:
    """The planner parameters a task and its waiting trigger share (JSON-safe, no secrets)."""

    policy: str = "carbon-aware"
    min_saving_pct: float = 5.0
    min_saving_abs: float = 0.0
    carbon_conn_id: str = DEFAULT_CARBON_CONN_ID
    beyond_horizon: str = "exclude"
    allow_mixed_signals: bool = False
    fail_open: bool = True
    planning_timeout: float = 5.0

    def source_of(self, cand: ClusterCandidate) -> tuple[str, str]:
        """Return the (carbon connection, zone) whose forecast applies to ``cand``."""
        return cand.carbon_conn_id or self.carbon_conn_id, cand.zone or ""

    def planner_candidate(self, cand: ClusterCandidate) -> Candidate:
        """Return ``cand`` as the planner sees it: its key, and its source as the "zone"."""
        conn_id, zone = self.source_of(cand)
        return Candidate(cand.key, f"{conn_id}|{zone}", cand.capacity)


def decide(
    options: PlanningOptions,
    duration: timedelta,
    candidates: Sequence[ClusterCandidate],
    series: Mapping[tuple[str, str], IntensitySeries],
    errors: Mapping[tuple[str, str], str],
    *,
    now: datetime,
    arrival: datetime,
    latest: datetime,
    finish_by: datetime | None,
    busy: Sequence[tuple[str, datetime, datetime]] = (),
    home: ClusterCandidate | None = None,
    incumbent: Option | None = None,
    fail_open: bool | None = None,
) -> Decision:
    """Plan from fetched forecasts (pure apart from logging); shared by the worker and the trigger.

    :param fail_open: override ``options.fail_open`` (a waiting trigger always keeps its plan).
    """
    home = home or candidates[0]
    source_of = options.source_of
    per_candidate_errors = {c.key: errors[source_of(c)] for c in candidates if source_of(c) in errors}
    usable = [c for c in candidates if c.key not in per_candidate_errors]
    may_fall_open = options.fail_open if fail_open is None else fail_open

    def fallback(why: str) -> Decision:
        if not may_fall_open:
            raise CarbonPlanningFailed(why)
        return Decision(
            options.policy, list(candidates), home, home, now, finish_by, latest, arrival, now, None, None,
            f"{why}; running now on the home cluster {home.conn_id} (fail_open)", None, True,
            per_candidate_errors,
        )

    if home.key in per_candidate_errors:
        return fallback(f"carbon data for the home zone {home.zone} is unavailable "
                        f"({per_candidate_errors[home.key]})")
    cands = [options.planner_candidate(c) for c in usable]
    forecasts = {pc.zone: series[source_of(c)] for pc, c in zip(cands, usable)}
    try:
        result = plan(
            cands, forecasts, now=now, duration=duration, latest_start=latest,
            policy=options.policy, min_saving_pct=options.min_saving_pct, min_saving_abs=options.min_saving_abs,
            incumbent=incumbent, busy=busy, beyond_horizon=options.beyond_horizon,
            allow_mixed_signals=options.allow_mixed_signals,
        )
    except (PlanningError, SignalError) as exc:
        return fallback(f"the planner could not plan ({exc})")
    by_key = {c.key: c for c in usable}
    chosen = by_key[result.chosen.candidate.cluster_id]
    planned_start = result.chosen.start if result.chosen.start - now > START_TOLERANCE else now
    reason = _readable(result, chosen, home, by_key)
    if per_candidate_errors:
        reason += f" (left out for lack of data: {', '.join(sorted(per_candidate_errors))})"
    return Decision(
        options.policy, list(candidates), home, chosen, planned_start, finish_by, latest, arrival, now,
        result.chosen.mean_intensity, result.baseline.mean_intensity, reason, result, False,
        per_candidate_errors,
        {"signal": result.signal.value, "horizon_limited": result.horizon_limited},
    )


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


XCOM_KEY = "carbon_decision"


class CarbonScheduledMixin:
    """For tasks with carbon parameters: check them at parse time, build the schedule at run time.

    The task sets ``expected_duration``, ``max_delay``, ``deadline`` (possibly Jinja strings,
    rendered before ``execute``), ``_carbon_options`` and implements :meth:`_carbon_candidates`.
    """

    task_id: str
    expected_duration: Any
    max_delay: Any
    deadline: Any
    _carbon_options: dict[str, Any]

    def _carbon_candidates(self) -> Any:
        raise NotImplementedError

    def _prefixed(self, exc: ScheduleConfigError) -> ScheduleConfigError:
        return ScheduleConfigError(f"{type(self).__name__} {self.task_id!r}: {exc}")

    def _set_carbon_parameters(self, expected_duration: Any, max_delay: Any, deadline: Any,
                               **options: Any) -> None:
        """Keep the carbon parameters (templated ones as given) and check them at parse time."""
        self.expected_duration = expected_duration
        self.max_delay = max_delay
        self.deadline = deadline
        self._carbon_options = options
        self._check_carbon_parameters()

    def _check_carbon_parameters(self) -> None:
        """Validate at parse time; Jinja strings are checked once rendered."""
        try:
            CarbonSchedule.check_at_parse(
                self._carbon_candidates(), expected_duration=self.expected_duration, max_delay=self.max_delay,
                deadline=self.deadline, **self._carbon_options,
            )
        except ScheduleConfigError as exc:
            raise self._prefixed(exc) from None

    @property
    def carbon_schedule(self) -> CarbonSchedule:
        """The schedule built from the (rendered) carbon parameters."""
        try:
            return CarbonSchedule(
                self._carbon_candidates(), expected_duration=self.expected_duration, max_delay=self.max_delay,
                deadline=self.deadline, **self._carbon_options,
            )
        except ScheduleConfigError as exc:
            raise self._prefixed(exc) from None


def refresh_expected_figures(record: dict[str, Any], watts: float | None = None,
                             duration: timedelta | None = None) -> None:
    """Derive a decision's expected saving (and emissions, given power and duration) from its intensities.

    The one place these figures come from: called again whenever a re-plan, the re-check or a
    fallback changes the expected intensity, so no figure keeps an earlier plan's value.
    """
    expected, baseline = record.get("expected_intensity"), record.get("baseline_intensity")
    record["expected_saving_pct"] = (
        None if expected is None or not baseline else round(100.0 * (baseline - expected) / baseline, 2)
    )
    if watts is None or duration is None:
        return
    from airflow_carbon_provider.core.emissions import emissions_g

    record["expected_duration_s"] = duration.total_seconds()
    exp_g = None if expected is None else emissions_g(watts, duration, expected)
    base_g = None if baseline is None else emissions_g(watts, duration, baseline)
    # Unrounded: the ledger and the report round only for display.
    record["expected_emissions_g"] = exp_g
    record["baseline_emissions_g"] = base_g
    record["expected_saving_g"] = None if exp_g is None or base_g is None else base_g - exp_g


def pull_decision(ti: Any, task_id: str) -> dict[str, Any] | None:
    """Return the ``carbon_decision`` this task instance pushed to XCom, or None.

    The decision travels in ``defer(kwargs=...)``; Airflow 3.3's ``dag.test()`` resumes a
    deferred task with the trigger's event only, so the copy pushed before deferring is the
    fallback.
    """
    kwargs: dict[str, Any] = {"task_ids": task_id, "key": XCOM_KEY}
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        kwargs["map_indexes"] = map_index
    try:
        value = ti.xcom_pull(**kwargs)
    except Exception as exc:  # a missing XCom must not hide the real outcome
        log.warning("Could not read the carbon decision from XCom: %s", exc)
        return None
    return value if isinstance(value, dict) else None


class CarbonPlanningFailed(CarbonDataError):
    """Raised instead of falling open when ``fail_open`` is false."""

    def __init__(self, message: str) -> None:
        super().__init__(message, provider="planner")


def _readable(result: Plan, chosen: ClusterCandidate, home: ClusterCandidate,
              by_key: Mapping[str, ClusterCandidate]) -> str:
    """Return the decision as one sentence a user can read in the task log."""
    wait = result.chosen.start - result.now
    when = "now" if wait <= START_TOLERANCE else f"at {_iso(result.chosen.start)} (in {_human(wait)})"
    where = chosen.conn_id if chosen.conn_id == chosen.key else f"{chosen.conn_id} with nodes {chosen.key}"
    base = result.baseline.mean_intensity
    exp = result.chosen.mean_intensity
    saving = 100.0 * (base - exp) / base if base > 0 else 0.0
    text = (
        f"Carbon-aware plan ({result.policy}): start {when} on {where} ({chosen.zone}); expected "
        f"{exp:.0f} gCO2eq/kWh against {base:.0f} running now on {home.conn_id} ({home.zone}), "
        f"{saving:.1f} % lower"
    )
    if "; kept " in result.reason:  # hysteresis held the plan: say why
        text += "; " + result.reason.split("; kept ", 1)[1].join(("kept ", ""))
    return text


def _human(delta: timedelta) -> str:
    if delta < timedelta(minutes=1):
        return f"{int(delta.total_seconds())} s"
    minutes = int(round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
