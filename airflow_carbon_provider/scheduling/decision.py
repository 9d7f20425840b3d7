"""The decision record: what was decided for one carbon-aware task, and what changed it since.

A :class:`Decision` is frozen. The planner makes it; every later change returns a new
record from one of its methods: the waiting trigger's event (:meth:`Decision.after_trigger`),
the re-check just before the pod starts (:meth:`Decision.after_recheck`), a cluster that
refused the pod (:meth:`Decision.refused`) and the start itself (:meth:`Decision.starting`).
The expected figures (saving %, grams) are never stored: :meth:`Decision.figures` derives them
from the final state each time, so no figure can keep an earlier plan's value.

The chosen and home candidates are named by their key (``conn@context[selector]``), never by
connection id alone: two node pools of one connection are two candidates in two zones.

It travels as JSON (XCom ``carbon_decision``, ``defer(kwargs=...)``, the ledger) through
:meth:`Decision.to_xcom` and :meth:`Decision.from_xcom`; the ledger's columns are keys of
:meth:`Decision.to_xcom`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_carbon_provider.scheduling.candidates import ClusterCandidate

if TYPE_CHECKING:
    from airflow_carbon_provider.core.planner import Plan

__all__ = [
    "START_TOLERANCE",
    "XCOM_KEY",
    "CandidateRow",
    "Decision",
    "ExpectedFigures",
    "Fallback",
    "Recheck",
    "TriggerReport",
    "pull_decision",
]

log = logging.getLogger(__name__)
UTC = timezone.utc
XCOM_KEY = "carbon_decision"
#: A task whose best start is this close to now starts now rather than deferring (the
#: decision then records now as its planned start).
START_TOLERANCE = timedelta(seconds=5)
#: The candidate fields that travel with the decision and rebuild the candidate later.
_CANDIDATE_FIELDS = frozenset(ClusterCandidate.__dataclass_fields__)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _instant(value: Any) -> datetime | None:
    """Parse an ISO-8601 instant (``Z`` or offset) or pass a datetime through; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class CandidateRow:
    """One candidate as resolved when the decision was made, with its best window if planned."""

    candidate: ClusterCandidate
    best_start: datetime | None = None
    forecast_mean: float | None = None
    error: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        row: dict[str, Any] = {"cluster": self.candidate.conn_id, "key": self.candidate.key, **self.candidate.to_dict()}
        if self.best_start is not None:
            row["best_start"] = _iso(self.best_start)
        if self.forecast_mean is not None:
            row["forecast_mean"] = self.forecast_mean
        if self.error is not None:
            row["error"] = self.error
        return row

    @classmethod
    def from_xcom(cls, row: Mapping[str, Any]) -> CandidateRow:
        fields = {k: v for k, v in row.items() if k in _CANDIDATE_FIELDS}
        fields.setdefault("conn_id", str(row.get("cluster") or row.get("key") or "?"))
        return cls(ClusterCandidate.from_dict(fields), _instant(row.get("best_start")),
                   _number(row.get("forecast_mean")), row.get("error"))


@dataclass(frozen=True)
class TriggerReport:
    """How the wait in :class:`~airflow_carbon_provider.triggers.carbon_window.CarbonWindowTrigger` ended."""

    status: str
    fired_at: str | None = None
    replans: int | None = None
    api_errors: int | None = None
    error: str | None = None
    moves: tuple[Mapping[str, str], ...] = ()
    """The re-plans that moved the plan while waiting: ``at``, ``cluster`` (key) and ``start``, ISO-8601."""

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> TriggerReport:
        moves = tuple({k: str(m[k]) for k in ("at", "cluster", "start") if m.get(k) is not None}
                      for m in event.get("moves") or () if isinstance(m, Mapping))
        return cls(str(event.get("status") or "unknown"), event.get("fired_at"), event.get("replans"),
                   event.get("api_errors"), event.get("error"), moves)

    def to_xcom(self) -> dict[str, Any]:
        data = {"status": self.status, "fired_at": self.fired_at, "replans": self.replans,
                "api_errors": self.api_errors, "error": self.error,
                "moves": [dict(m) for m in self.moves] if self.moves else None}
        return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class Recheck:
    """The spatial re-check with fresh data just before the pod starts."""

    at: datetime
    chosen_key: str
    chosen_cluster: str
    expected_intensity: float | None

    def to_xcom(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "chosen_key": self.chosen_key, "chosen_cluster": self.chosen_cluster,
                "expected_intensity": self.expected_intensity}


@dataclass(frozen=True)
class Fallback:
    """A candidate whose Kubernetes API refused the pod (it was never created there)."""

    key: str
    cluster: str
    error: str

    def to_xcom(self) -> dict[str, Any]:
        return {"key": self.key, "cluster": self.cluster, "error": self.error}


@dataclass(frozen=True)
class ExpectedFigures:
    """The expected saving and emissions of a decision, unrounded (round only for display)."""

    saving_pct: float | None
    emissions_g: float | None = None
    baseline_emissions_g: float | None = None
    saving_g: float | None = None


@dataclass(frozen=True)
class Decision:
    """What was decided for one carbon-aware task try, and every change since (see the module doc).

    :param policy: the planner policy.
    :param rows: the candidates as resolved (zone and carbon connection filled in), home first.
    :param home_key: the key of the home candidate (the baseline: "run now at home").
    :param chosen_key: the key of the candidate the task runs (or will run) on.
    :param expected_intensity: forecast mean intensity of the chosen run (g/kWh), None without data.
    :param baseline_intensity: forecast mean intensity of running at home at decision time.
    :param fail_open: no usable carbon data: running now at home.
    :param errors: per candidate key, why its carbon data was not used.
    :param signal: ``average`` or ``marginal``: what the intensities measure.
    :param power_watts: the task's estimated average power; with ``expected_duration`` it gives grams.
    :param phase: ``decided``, ``waiting``, ``running``, ``open`` (sensor) or ``failed``.
    :param actual_start: when the pod (or the gated work) started.
    :param fleet: fleet coordination (:mod:`~airflow_carbon_provider.scheduling.fleet`): the
        capacities planned with, the capacity that limited the choice (``limited_by``), the
        task's demand and its reservation; None when the task did not coordinate.
    :param plan: the planner's result, present only on a fresh decision (never serialized).
    """

    policy: str
    rows: tuple[CandidateRow, ...]
    home_key: str
    chosen_key: str
    planned_start: datetime
    deadline: datetime | None
    latest_start: datetime
    arrival: datetime
    decided_at: datetime
    expected_intensity: float | None
    baseline_intensity: float | None
    reason: str
    fail_open: bool = False
    errors: Mapping[str, str] = field(default_factory=dict)
    signal: str | None = None
    horizon_limited: bool = False
    power_watts: float | None = None
    power_source: str | None = None
    expected_duration: timedelta | None = None
    phase: str = "decided"
    trigger: TriggerReport | None = None
    recheck: Recheck | None = None
    fallbacks: tuple[Fallback, ...] = ()
    actual_start: datetime | None = None
    reattached_pod: str | None = None
    fleet: Mapping[str, Any] | None = None
    plan: Plan | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        keys = [row.candidate.key for row in self.rows]
        for name in ("home_key", "chosen_key"):
            if getattr(self, name) not in keys:
                raise ValueError(f"{name} {getattr(self, name)!r} is not among the decision's candidates {keys}")

    # -- the candidates, by key -------------------------------------------------------------

    @property
    def candidates(self) -> list[ClusterCandidate]:
        """The candidates as resolved, home first."""
        return [row.candidate for row in self.rows]

    def candidate(self, key: str) -> ClusterCandidate | None:
        """Return the candidate named ``key``, or None."""
        return next((row.candidate for row in self.rows if row.candidate.key == key), None)

    @property
    def chosen(self) -> ClusterCandidate:
        """The candidate the task runs (or will run) on."""
        return self.candidate(self.chosen_key)  # type: ignore[return-value]  # checked in __post_init__

    @property
    def home(self) -> ClusterCandidate:
        """The home candidate (the baseline)."""
        return self.candidate(self.home_key)  # type: ignore[return-value]  # checked in __post_init__

    @property
    def zone(self) -> str | None:
        """The grid zone of the chosen candidate."""
        return self.chosen.zone

    @property
    def carbon_conn_id(self) -> str | None:
        """The carbon connection whose data applies to the chosen candidate."""
        return self.chosen.carbon_conn_id

    @property
    def waits(self) -> bool:
        """Whether the planned start is meaningfully later than the decision."""
        return self.planned_start - self.decided_at > START_TOLERANCE

    # -- figures, derived from the final state ---------------------------------------------

    @property
    def expected_saving_pct(self) -> float | None:
        """Expected reduction against home now, percent (None without carbon data)."""
        return self.figures().saving_pct

    def figures(self) -> ExpectedFigures:
        """Derive the expected saving, and grams given power and duration, from the current intensities.

        The one place these figures come from; nothing stores them, so a re-plan, the
        re-check or a fallback that changes the expected intensity changes them too.
        """
        expected, baseline = self.expected_intensity, self.baseline_intensity
        pct = None if expected is None or not baseline else 100.0 * (baseline - expected) / baseline
        if self.power_watts is None or self.expected_duration is None:
            return ExpectedFigures(pct)
        from airflow_carbon_provider.core.emissions import emissions_g

        exp_g = None if expected is None else emissions_g(self.power_watts, self.expected_duration, expected)
        base_g = None if baseline is None else emissions_g(self.power_watts, self.expected_duration, baseline)
        saving_g = None if exp_g is None or base_g is None else base_g - exp_g
        return ExpectedFigures(pct, exp_g, base_g, saving_g)

    # -- changes: each returns a new record -------------------------------------------------

    def with_power(self, watts: float, source: str, duration: timedelta) -> Decision:
        """Return the record with the task's power estimate and expected run time."""
        return replace(self, power_watts=float(watts), power_source=source, expected_duration=duration)

    def with_phase(self, phase: str) -> Decision:
        return replace(self, phase=phase)

    def moved_to(self, key: str, expected_intensity: float | None, why: str | None = None) -> Decision:
        """Return the record on candidate ``key`` with its own expected intensity (and why, if given)."""
        if self.candidate(key) is None:
            raise ValueError(f"{key!r} is not among the decision's candidates")
        reason = self.reason if why is None else f"{self.reason}; {why}"
        return replace(self, chosen_key=key, expected_intensity=expected_intensity, reason=reason)

    def after_trigger(self, event: Mapping[str, Any]) -> Decision:
        """Return the record as the waiting trigger left it: its report, cluster, start and intensity."""
        new = replace(self, trigger=TriggerReport.from_event(event))
        key = event.get("cluster")
        if isinstance(key, str) and key != self.chosen_key and self.candidate(key) is not None:
            log.info("While waiting, re-planning moved the task to %s", key)
            new = replace(new, chosen_key=key)
        planned = _instant(event.get("planned_start"))
        if planned is not None:
            new = replace(new, planned_start=planned)
        intensity = _number(event.get("expected_intensity"))
        if intensity is not None and self.expected_intensity is not None:
            new = replace(new, expected_intensity=intensity)
        return new

    def after_trigger_failure(self, error: str, note: str | None = None) -> Decision:
        """Return the record of a wait whose trigger ended without firing (the task starts at once)."""
        reason = self.reason if note is None else f"{self.reason}; {note}"
        return replace(self, trigger=TriggerReport("trigger_failed", error=error), reason=reason)

    def after_recheck(self, fresh: Decision) -> Decision:
        """Return the record after the re-check with fresh data: moved if ``fresh`` chose elsewhere."""
        new = replace(self, recheck=Recheck(fresh.decided_at, fresh.chosen_key, fresh.chosen.conn_id,
                                            fresh.expected_intensity))
        if fresh.chosen_key == self.chosen_key or self.candidate(fresh.chosen_key) is None:
            return new
        return new.moved_to(fresh.chosen_key, fresh.expected_intensity,
                            f"at start, fresh data moved it to {fresh.chosen.conn_id}")

    def refused(self, key: str, error: str) -> Decision:
        """Return the record after candidate ``key``'s API refused the pod."""
        cand = self.candidate(key)
        conn_id = cand.conn_id if cand is not None else key
        return replace(self, fallbacks=(*self.fallbacks, Fallback(key, conn_id, error)),
                       reason=f"{self.reason}; {conn_id} refused the pod ({error})")

    def with_fleet(self, **updates: Any) -> Decision:
        """Return the record with its fleet coordination record updated by ``updates``."""
        return replace(self, fleet={**(self.fleet or {}), **updates})

    def starting(self, at: datetime, phase: str = "running") -> Decision:
        """Return the record of the start at ``at`` on the chosen candidate."""
        return replace(self, phase=phase, actual_start=at)

    # -- JSON -------------------------------------------------------------------------------

    def to_xcom(self) -> dict[str, Any]:
        """Return the XCom ``carbon_decision`` (JSON-safe; no secrets, only connection ids).

        Intensities and grams are unrounded; ``expected_saving_pct`` is rounded to 0.01 for
        reading. The ledger's decision columns are keys of this dict.
        """
        chosen, home, figures = self.chosen, self.home, self.figures()
        data: dict[str, Any] = {
            "chosen_cluster": chosen.conn_id,
            "chosen_key": self.chosen_key,
            "zone": chosen.zone,
            "home_cluster": home.conn_id,
            "home_key": self.home_key,
            "home_zone": home.zone,
            "carbon_conn_id": chosen.carbon_conn_id,
            "planned_start": _iso(self.planned_start),
            "deadline": _iso(self.deadline),
            "latest_start": _iso(self.latest_start),
            "arrival": _iso(self.arrival),
            "decided_at": _iso(self.decided_at),
            "waited": self.waits,
            "expected_intensity": self.expected_intensity,
            "baseline_intensity": self.baseline_intensity,
            "expected_saving_pct": None if figures.saving_pct is None else round(figures.saving_pct, 2),
            "policy": self.policy,
            "reason": self.reason,
            "fail_open": self.fail_open,
            "errors": dict(self.errors),
            "signal": self.signal,
            "horizon_limited": self.horizon_limited,
            "phase": self.phase,
            "candidates": [row.to_xcom() for row in self.rows],
            "fallbacks": [f.to_xcom() for f in self.fallbacks],
        }
        if chosen.where:  # the place as the user named it; "zone" is the key it resolved to
            data["where"] = chosen.where
        if home.where:
            data["home_where"] = home.where
        if chosen.namespace:
            data["namespace"] = chosen.namespace
        if chosen.node_selector:
            data["node_selector"] = dict(chosen.node_selector)
        if self.power_watts is not None:
            data["power_watts"] = self.power_watts
            data["power_source"] = self.power_source
        if self.expected_duration is not None:
            data["expected_duration_s"] = self.expected_duration.total_seconds()
        if figures.emissions_g is not None or figures.baseline_emissions_g is not None:
            data["expected_emissions_g"] = figures.emissions_g
            data["baseline_emissions_g"] = figures.baseline_emissions_g
            data["expected_saving_g"] = figures.saving_g
        if self.trigger is not None:
            data["trigger"] = self.trigger.to_xcom()
        if self.recheck is not None:
            data["recheck"] = self.recheck.to_xcom()
        if self.actual_start is not None:
            data["cluster"] = chosen.conn_id  # where it ran
            data["actual_start"] = _iso(self.actual_start)
        if self.reattached_pod is not None:
            data["reattached_pod"] = self.reattached_pod
        if self.fleet is not None:
            data["fleet"] = dict(self.fleet)
        return data

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a record from :meth:`to_xcom` (also from the dicts 0.2.0 pushed).

        Raises :class:`ValueError` naming what is missing when ``data`` is not a decision.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a carbon decision is a dict, got {type(data).__name__}")
        rows = [CandidateRow.from_xcom(r) for r in data.get("candidates") or [] if isinstance(r, Mapping)]
        keys = [row.candidate.key for row in rows]

        def key_of(key: Any, conn_id: Any, zone: Any) -> str:
            """Find a candidate by key, else by a connection id naming one candidate; add it if absent."""
            if key in keys:
                return str(key)
            same = [row.candidate.key for row in rows if row.candidate.conn_id == conn_id]
            if len(same) == 1:
                return same[0]
            name = str(key or conn_id or "")
            if not name:
                raise ValueError("a carbon decision needs chosen_key (or chosen_cluster) and home_cluster")
            rows.append(CandidateRow(ClusterCandidate(name, zone=zone or None,
                                                      carbon_conn_id=data.get("carbon_conn_id"))))
            keys.append(rows[-1].candidate.key)
            return keys[-1]

        home_key = key_of(data.get("home_key"), data.get("home_cluster"), data.get("home_zone"))
        chosen_key = key_of(data.get("chosen_key"), data.get("chosen_cluster") or data.get("cluster"),
                            data.get("zone"))
        def instant(name: str) -> datetime | None:
            moment = _instant(data.get(name))
            if moment is None and data.get(name) not in (None, ""):
                raise ValueError(f"{name} {str(data.get(name))[:40]!r} is not an ISO-8601 instant")
            return moment

        planned = instant("planned_start")
        decided = instant("decided_at") or planned
        latest = instant("latest_start") or planned
        arrival = instant("arrival") or decided
        if planned is None or decided is None or latest is None or arrival is None:
            raise ValueError("a carbon decision needs planned_start (and decided_at, latest_start, arrival)")
        trigger = data.get("trigger")
        recheck = data.get("recheck")
        recheck_at = _instant(recheck.get("at")) if isinstance(recheck, Mapping) else None
        duration = _number(data.get("expected_duration_s"))
        return cls(
            policy=str(data.get("policy") or "carbon-aware"),
            rows=tuple(rows),
            home_key=home_key,
            chosen_key=chosen_key,
            planned_start=planned,
            deadline=instant("deadline"),
            latest_start=latest,
            arrival=arrival,
            decided_at=decided,
            expected_intensity=_number(data.get("expected_intensity")),
            baseline_intensity=_number(data.get("baseline_intensity")),
            reason=str(data.get("reason") or ""),
            fail_open=bool(data.get("fail_open")),
            errors={str(k): str(v) for k, v in (data.get("errors") or {}).items()},
            signal=data.get("signal"),
            horizon_limited=bool(data.get("horizon_limited")),
            power_watts=_number(data.get("power_watts")),
            power_source=data.get("power_source"),
            expected_duration=None if duration is None else timedelta(seconds=duration),
            phase=str(data.get("phase") or "decided"),
            trigger=TriggerReport.from_event(trigger) if isinstance(trigger, Mapping) else None,
            recheck=None if recheck_at is None else Recheck(
                recheck_at, str(recheck.get("chosen_key") or recheck.get("chosen_cluster")),  # type: ignore[union-attr]
                str(recheck.get("chosen_cluster")), _number(recheck.get("expected_intensity"))),  # type: ignore[union-attr]
            fallbacks=tuple(
                Fallback(str(f.get("key") or f.get("cluster")), str(f.get("cluster")), str(f.get("error", "")))
                for f in data.get("fallbacks") or [] if isinstance(f, Mapping)
            ),
            actual_start=instant("actual_start"),
            reattached_pod=data.get("reattached_pod"),
            fleet=dict(data["fleet"]) if isinstance(data.get("fleet"), Mapping) else None,
        )


def pull_decision(ti: Any, task_id: str) -> Decision | None:
    """Return the decision this task instance pushed to XCom, or None.

    The decision travels in ``defer(kwargs=...)``; Airflow 3.3's ``dag.test()`` resumes a
    deferred task with the trigger's event only, so the copy pushed before deferring is the
    fallback. A value that is not a decision is logged and ignored.
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
    if not isinstance(value, dict):
        return None
    try:
        return Decision.from_xcom(value)
    except ValueError as exc:
        log.warning("The carbon decision in XCom is not readable (%s)", exc)
        return None
