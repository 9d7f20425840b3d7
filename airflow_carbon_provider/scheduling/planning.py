"""Plan from fetched carbon data: the one decision rule the worker and the trigger share.

:func:`decide` turns candidates and their forecasts into a
:class:`~airflow_carbon_provider.scheduling.decision.Decision`; a candidate whose source
failed is left out, and with no data for home the task falls open (runs now at home) or,
with ``fail_open`` off, raises :class:`CarbonPlanningFailed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.core.planner import Candidate, Option, Plan, PlanningError, plan
from airflow_carbon_provider.core.resources import POD, Booking, Resources
from airflow_carbon_provider.core.signals import IntensitySeries, SignalError
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.scheduling.candidates import DEFAULT_CARBON_CONN_ID, ClusterCandidate
from airflow_carbon_provider.scheduling.decision import START_TOLERANCE, CandidateRow, Decision
from airflow_carbon_provider.scheduling.fleet import FleetView

__all__ = ["CarbonPlanningFailed", "PlanningOptions", "decide"]

UTC = timezone.utc


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

    def planner_candidate(self, cand: ClusterCandidate, capacity: Resources | None = None) -> Candidate:
        """Return ``cand`` as the planner sees it: its key, its source as the "zone", and its capacity.

        :param capacity: what it can take (the fleet's view); default its declared capacity.
        """
        conn_id, zone = self.source_of(cand)
        return Candidate(cand.key, f"{conn_id}|{zone}", cand.resources if capacity is None else capacity)


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
    fleet: FleetView | None = None,
    demand: Resources | None = None,
    notes: Mapping[tuple[str, str], str] | None = None,
) -> Decision:
    """Plan from fetched forecasts (pure apart from logging); shared by the worker and the trigger.

    :param fail_open: override ``options.fail_open`` (a waiting trigger always keeps its plan).
    :param fleet: what the clusters can take and the other tasks hold
        (:mod:`~airflow_carbon_provider.scheduling.fleet`); None plans alone, on declared capacities.
    :param demand: what the task asks for while it runs (default one pod).
    :param notes: per source, what the fetch did to its forecast (conditioned on measured
        history, or why not); the reason ends with them.
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
            options.policy, _rows(candidates, None, per_candidate_errors), home.key, home.key, now, finish_by,
            latest, arrival, now, None, None, f"{why}; running now on the home cluster {home.conn_id} (fail_open)",
            fail_open=True, errors=per_candidate_errors,
        )

    if home.key in per_candidate_errors:
        return fallback(f"carbon data for the home zone {home.place} is unavailable "
                        f"({per_candidate_errors[home.key]})")
    caps = fleet.capacities if fleet is not None else {}
    cands = [options.planner_candidate(c, caps.get(c.key)) for c in usable]
    forecasts = {pc.zone: series[source_of(c)] for pc, c in zip(cands, usable)}
    booked: list[Booking | tuple[str, datetime, datetime]] = [*busy, *(fleet.busy if fleet is not None else ())]
    try:
        result = plan(
            cands, forecasts, now=now, duration=duration, latest_start=latest,
            policy=options.policy, min_saving_pct=options.min_saving_pct, min_saving_abs=options.min_saving_abs,
            incumbent=incumbent, busy=booked, beyond_horizon=options.beyond_horizon,
            allow_mixed_signals=options.allow_mixed_signals, demand=demand,
        )
    except (PlanningError, SignalError) as exc:
        return fallback(f"the planner could not plan ({exc})")
    by_key = {c.key: c for c in usable}
    chosen = by_key[result.chosen.candidate.cluster_id]
    planned_start = result.chosen.start if result.chosen.start - now > START_TOLERANCE else now
    reason = _readable(result, chosen, home, by_key)
    if per_candidate_errors:
        reason += f" (left out for lack of data: {', '.join(sorted(per_candidate_errors))})"
    if fleet is not None:
        for note in fleet.notes:
            reason += f"; {note}"
    reason += _forecast_notes(notes or {}, [source_of(c) for c in usable])
    return Decision(
        options.policy, _rows(candidates, result, per_candidate_errors), home.key, chosen.key, planned_start,
        finish_by, latest, arrival, now, result.chosen.mean_intensity, result.baseline.mean_intensity, reason,
        errors=per_candidate_errors, signal=result.signal.value, horizon_limited=result.horizon_limited,
        fleet=None if fleet is None else {
            **fleet.to_xcom(), "demand": dict(demand or POD),
            "limited_by": [list(pair) for pair in result.capacity_limited],
        },
        plan=result,
    )


def _rows(candidates: Sequence[ClusterCandidate], result: Plan | None,
          errors: Mapping[str, str]) -> tuple[CandidateRow, ...]:
    """Return each candidate with its best window in ``result`` (if planned) and its data error."""
    best = {o.candidate.cluster_id: o for o in result.best_per_candidate} if result is not None else {}
    rows = []
    for cand in candidates:
        option = best.get(cand.key)
        rows.append(CandidateRow(cand, option.start if option else None, option.mean_intensity if option else None,
                                 errors.get(cand.key)))
    return tuple(rows)

def _forecast_notes(notes: Mapping[tuple[str, str], str], sources: Sequence[tuple[str, str]]) -> str:
    """Return what was done to the forecasts planned on, one clause per distinct note ("" if none)."""
    by_note: dict[str, list[str]] = {}
    for source in dict.fromkeys(sources):
        if source in notes:
            by_note.setdefault(notes[source], []).append(source[1])
    if not by_note:
        return ""
    if len(by_note) == 1:
        return f"; {next(iter(by_note))}"
    return "; " + "; ".join(f"{', '.join(zones)}: {note}" for note, zones in by_note.items())


class CarbonPlanningFailed(CarbonDataError):
    """Raised instead of falling open when ``fail_open`` is false."""

    def __init__(self, message: str) -> None:
        super().__init__(message, provider="planner")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
        f"Carbon-aware plan ({result.policy}): start {when} on {where} ({chosen.place}); expected "
        f"{exp:.0f} gCO2eq/kWh against {base:.0f} running now on {home.conn_id} ({home.place}), "
        f"{saving:.1f} % lower"
    )
    if "; kept " in result.reason:  # hysteresis held the plan: say why
        text += "; " + result.reason.split("; kept ", 1)[1].split("; ")[0].join(("kept ", ""))
    if ALL_FULL in result.reason:  # no room anywhere: running now at home, over capacity, deadline first
        text += "; " + ALL_FULL + result.reason.split(ALL_FULL, 1)[1]
    elif result.capacity_limited:  # capacity ruled out a better option: say which and what was taken
        first = f"{result.capacity_limited[0][0]} was full ("
        text += "; " + (result.reason[result.reason.index(first):] if first in result.reason else
                        ", ".join(f"{k} had no room ({r})" for k, r in result.capacity_limited))
    return text


#: How the planner says that no candidate has room in the whole window.
ALL_FULL = "every candidate is at capacity"


def _human(delta: timedelta) -> str:
    if delta < timedelta(minutes=1):
        return f"{int(delta.total_seconds())} s"
    minutes = int(round(delta.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
