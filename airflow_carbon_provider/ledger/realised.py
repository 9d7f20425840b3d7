"""Realised emissions after a run: measured intensity where the task ran, and the counterfactual.

Emissions are ``power x duration x mean realised intensity`` over ``[actual_start, actual_end]``
in the zone the task ran in. The baseline is the same task, with the same power and duration,
on the home cluster at its original arrival: the home zone's mean realised intensity over
``[arrival, arrival + duration]``. The saving is the difference.

Both sides always come from the same kind of data. When the history of either zone is
unavailable, both use the forecast values the decision was made with and the outcome says
``intensity_source = "forecast"``; without those either, no baseline and no saving are
claimed (``"none"``).

Every outcome also says what its figures are: ``signal_kind`` (``average`` or ``marginal``:
the kind of the history used, else the planner's ``signal``, else ``unknown``, never a
guess) and ``basis`` (``realised`` from history, ``forecast``, or ``none``). Figures of two
kinds or bases are never added into one number downstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.core.emissions import emissions_g, energy_kwh
from airflow_carbon_provider.scheduling.decision import Decision

__all__ = ["BASES", "SIGNAL_KINDS", "START_GRACE", "basis_of", "realised_outcome", "saving_pct", "signal_kind_of"]

log = logging.getLogger(__name__)
UTC = timezone.utc
START_GRACE = timedelta(seconds=60)
"""A start this close after the latest start still counts as on time (pod scheduling jitter)."""
MIN_COVERAGE = 0.9
"""History must cover this share of a window for its mean to stand for the whole window."""
SIGNAL_KINDS = ("average", "marginal")
"""The signal kinds a row may carry; anything else (or nothing) is recorded as ``unknown``."""
BASES = {"history": "realised", "forecast": "forecast", "none": "none"}
"""An outcome's basis by its ``intensity_source``: never add figures of two bases into one number."""


def signal_kind_of(value: Any) -> str:
    """Return ``average`` or ``marginal`` for a recorded kind, else ``unknown`` (never a guess)."""
    text = str(getattr(value, "value", value) or "").strip().lower()
    return text if text in SIGNAL_KINDS else "unknown"


def basis_of(intensity_source: Any) -> str:
    """Return the basis of an outcome from its ``intensity_source`` (``unknown`` when unset)."""
    return BASES.get(str(intensity_source or ""), "unknown")


def saving_pct(realised_intensity: float | None, baseline_intensity: float | None) -> float | None:
    """Return the saving of a run in percent of its baseline, from the two mean intensities.

    Both sides of a run have the same power and duration, so the share saved is the share of
    intensity avoided, whatever the energy: no rounded grams in it. None without a baseline.
    """
    if realised_intensity is None or baseline_intensity is None or baseline_intensity <= 0:
        return None
    return 100.0 * (baseline_intensity - realised_intensity) / baseline_intensity


def _instant(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _history_mean(hook_for: Callable[[str], Any], conn_id: str, zone: str, start: datetime,
                  end: datetime) -> tuple[float | None, str | None, str]:
    """Return (mean realised intensity, None, signal kind) or (None, why not, kind)."""
    kind = "unknown"
    try:
        series = hook_for(conn_id).get_history(zone, start, end)
        kind = signal_kind_of(getattr(series, "kind", None))
        lo, hi = max(series.start, start), min(series.end, end)
        covered = (hi - lo).total_seconds() / (end - start).total_seconds() if hi > lo else 0.0
        if covered < MIN_COVERAGE:
            return None, f"history of {zone} covers {100 * covered:.0f} % of the run", kind
        return float(series.mean(lo, hi)), None, kind
    except Exception as exc:  # any source failure: fall back to forecasts, never fail the task
        return None, f"history of {zone} unavailable ({type(exc).__name__}: {str(exc)[:160]})", kind


def _default_hook(conn_id: str) -> Any:
    from airflow_carbon_provider.hooks._registry import carbon_hook

    return carbon_hook(conn_id)


def realised_outcome(
    decision: Decision | Mapping[str, Any],
    actual_end: datetime,
    *,
    actual_start: datetime | None = None,
    carbon_conn_id: str | None = None,
    state: str = "success",
    hook_for: Callable[[str], Any] | None = None,
    power_watts: float | None = None,
) -> dict[str, Any]:
    """Return the outcome of a finished run (JSON-safe: instants as ISO strings).

    :param decision: the decision (or its XCom ``carbon_decision``) the operator pushed (its ``actual_start``,
        ``cluster``, ``arrival``, ``power_watts`` and forecast intensities are read).
    :param actual_end: when the task finished (aware).
    :param actual_start: when it started (default: the decision's ``actual_start``).
    :param carbon_conn_id: the carbon connection whose history is fetched (default: the
        decision's ``carbon_conn_id``, else ``carbontrace_default``).
    :param state: how the task ended (``success``, ``failed``...).
    :param hook_for: ``conn_id -> hook`` (default :func:`~airflow_carbon_provider.hooks._registry.carbon_hook`).
    :param power_watts: override the decision's power estimate.
    """
    record = decision if isinstance(decision, Decision) else Decision.from_xcom(decision)
    hook_for = hook_for or _default_hook
    conn_id = carbon_conn_id or record.carbon_conn_id or "carbontrace_default"
    end = _instant(actual_end)
    start = _instant(actual_start) or record.actual_start or record.planned_start
    arrival = record.arrival
    if end is None:
        raise ValueError("an outcome needs actual_end")
    if end < start:
        raise ValueError(f"actual_end {_iso(end)} is before actual_start {_iso(start)}")
    # By the candidate's key: two node pools of one connection are two zones.
    cluster, zone = record.chosen.conn_id, record.zone
    home_cluster, home_zone = record.home.conn_id, record.home.zone
    watts = power_watts if power_watts is not None else record.power_watts
    duration = end - start
    latest, deadline = record.latest_start, record.deadline
    fallbacks = [f.to_xcom() for f in record.fallbacks]
    notes: list[str] = []

    realised = baseline = None
    source = "none"
    planned_kind = signal_kind_of(record.signal)
    kind = planned_kind
    if duration > timedelta(0) and zone and home_zone:
        realised, why, run_kind = _history_mean(hook_for, conn_id, zone, start, end)
        if why:
            notes.append(why)
        if realised is not None:
            baseline, why, home_kind = _history_mean(hook_for, conn_id, home_zone, arrival, arrival + duration)
            if why:
                notes.append(why)
            if baseline is not None and run_kind != home_kind:  # two quantities: no saving from them
                notes.append(f"history of {zone} is {run_kind} but of {home_zone} {home_kind}: not compared")
                baseline = None
        if realised is not None and baseline is not None:
            source = "history"
            kind = run_kind  # the figures measure what the history measures, whatever was planned on
    if source != "history":
        kind = planned_kind
        realised = baseline = None
        expected, base = record.expected_intensity, record.baseline_intensity
        if expected is not None and base is not None:
            realised, baseline, source = float(expected), float(base), "forecast"
            notes.append("forecast intensities used for both the run and the baseline")
        else:
            notes.append("no intensity for both sides: no emissions or saving claimed")

    energy = emissions = base_emissions = saving = None
    if watts is not None:
        energy = energy_kwh(float(watts), duration)
        if realised is not None and baseline is not None:
            emissions = emissions_g(float(watts), duration, realised)
            base_emissions = emissions_g(float(watts), duration, baseline)
            saving = base_emissions - emissions
    else:
        notes.append("no power estimate: no emissions computed")

    on_time = None if latest is None else start <= latest + START_GRACE
    finished_in_time = None if deadline is None else end <= deadline
    deadline_met = None if on_time is None else bool(on_time and finished_in_time is not False)

    return {
        "state": state,
        "cluster": cluster,
        "zone": zone,
        "home_cluster": home_cluster,
        "home_zone": home_zone,
        "arrival": _iso(arrival),
        "actual_start": _iso(start),
        "actual_end": _iso(end),
        "latest_start": _iso(latest),
        "deadline": _iso(deadline),
        "duration_s": round(duration.total_seconds(), 3),
        "delay_s": round((start - arrival).total_seconds(), 3),
        # unrounded: a short pod emits micrograms, and a figure rounded here could never be
        # summed or divided honestly again (0.001 g emitted vs 0.001 g baseline read 0 % saved)
        "power_watts": None if watts is None else float(watts),
        "power_source": record.power_source,
        "energy_kwh": energy,
        "realised_intensity": realised,
        "baseline_intensity": baseline,
        "emissions_g": emissions,
        "baseline_emissions_g": base_emissions,
        "saving_g": saving,
        "saving_pct": saving_pct(realised, baseline) if saving is not None else None,
        "intensity_source": source,
        "signal_kind": kind,
        "basis": basis_of(source),
        "carbon_conn_id": conn_id,
        "started_by_latest_start": on_time,
        "finished_by_deadline": finished_in_time,
        "deadline_met": deadline_met,
        "fallback_used": bool(fallbacks),
        "fallbacks": fallbacks,
        "fail_open": record.fail_open,
        "policy": record.policy,
        "notes": notes,
    }
