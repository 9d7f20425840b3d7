"""Carbon metrics through Airflow's own Stats (StatsD, Datadog or OpenTelemetry, as configured).

Names start with ``carbon.`` (Airflow adds its ``[metrics] statsd_prefix``, ``airflow`` by
default). Plain StatsD has no tags, so the identifying parts are name components; the same
values are also passed as tags for backends that keep them (OpenTelemetry, Datadog, InfluxDB
StatsD):

====================================================================  =======  ==================================================
name                                                                  type     value
====================================================================  =======  ==================================================
``carbon.intensity.<zone>``                                           gauge    forecast mean g/kWh per candidate zone at decision
``carbon.decision.expected_saving_pct.<kind>.forecast.<dag>.<task>``  gauge    expected saving against home, percent
``carbon.api_errors.<dag>.<task>``                                    counter  candidates whose carbon data failed
``carbon.fail_open.<dag>.<task>``                                     counter  decisions that ran at home without data
``carbon.task.emissions_g.<kind>.<basis>.<dag>.<task>``               gauge    realised emissions of the run, grams
``carbon.task.baseline_emissions_g.<kind>.<basis>.<dag>.<task>``      gauge    the counterfactual at home, grams
``carbon.task.saving_g.<kind>.<basis>.<dag>.<task>``                  gauge    baseline minus realised, grams
``carbon.task.delay.<dag>.<task>``                                    timer    start minus arrival (ms on StatsD)
``carbon.cluster.runs.<cluster>``                                     counter  runs that started on the cluster
``carbon.fallbacks.<cluster>``                                        counter  clusters that refused a pod
``carbon.reservations.held.<cluster>``                                gauge    unexpired reservations on the cluster
``carbon.reservations.refused.<cluster>.<resource>``                  counter  reservations refused for lack of the resource
====================================================================  =======  ==================================================

``<kind>`` is the signal kind (``average``, ``marginal`` or ``unknown``) and ``<basis>`` where the
figures come from (``realised`` history, ``forecast``, ``none`` or ``unknown``); both are also
tags (``signal_kind``, ``basis``). Figures of different kinds or bases are different
quantities: they have different names so that a dashboard cannot add them up by accident
("Green Mirage", arXiv 2402.03550).

Metrics never raise: without Airflow, or with metrics off, they are no-ops. StatsD needs the
``statsd`` package (``pip install 'airflow-carbon-provider[metrics]'`` or Airflow's ``statsd``
extra); without it Airflow logs an error once and falls back to no metrics.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

__all__ = ["emit_decision", "emit_outcome", "emit_reservation_refused", "emit_reservations_held", "stats"]

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_stats: Any = None


def _part(value: Any) -> str:
    """Return a StatsD-safe name component (dots would split the hierarchy)."""
    return _UNSAFE.sub("_", str(value))[:100] or "unknown"


def stats() -> Any:
    """Return Airflow's Stats interface (``incr``, ``gauge``, ``timing``), initialised from config.

    Airflow 3.2+ exposes it as ``airflow.sdk.observability.stats`` and initialises it in its own
    processes (task runner, scheduler, triggerer); elsewhere (``dag.test()``, the CLI) this
    initialises it from ``[metrics]``. Airflow 3.1 has ``airflow.stats.Stats``, which
    initialises itself. Returns None when neither is importable.
    """
    global _stats
    if _stats is not None:
        return _stats
    try:
        from airflow.sdk._shared.observability.metrics import stats as shared
        from airflow.sdk.observability import stats as sdk_stats
        from airflow.sdk.observability.metrics import stats_utils

        if getattr(shared, "_factory", None) is None:
            from airflow.sdk.configuration import conf

            shared.initialize(factory=stats_utils.get_stats_factory(),
                              export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True))
        _stats = sdk_stats
    except ImportError:
        try:
            from airflow.stats import Stats  # Airflow 3.1

            _stats = Stats
        except ImportError:
            return None
    return _stats


def _safely(kind: str, name: str, *args: Any, tags: Mapping[str, Any] | None = None) -> None:
    backend = stats()
    if backend is None:
        return
    try:
        getattr(backend, kind)(name, *args, tags={k: str(v) for k, v in (tags or {}).items()})
    except Exception as exc:  # metrics must never break a task
        log.debug("Carbon metric %s not emitted: %s", name, exc)


def emit_decision(decision: Mapping[str, Any], *, dag_id: str, task_id: str) -> None:
    """Emit the metrics of a decision: intensity per zone, expected saving, API errors, fail-open."""
    try:
        _emit_decision(decision, dag_id, task_id)
    except Exception as exc:  # a malformed record must not break a task either
        log.debug("Carbon decision metrics not emitted: %s", exc)


def emit_outcome(outcome: Mapping[str, Any], *, dag_id: str, task_id: str) -> None:
    """Emit the metrics of a finished run: emissions, baseline, saving, delay, fallbacks."""
    try:
        _emit_outcome(outcome, dag_id, task_id)
    except Exception as exc:
        log.debug("Carbon outcome metrics not emitted: %s", exc)


def _emit_decision(decision: Mapping[str, Any], dag_id: str, task_id: str) -> None:
    tags = {"dag_id": dag_id, "task_id": task_id}
    suffix = f"{_part(dag_id)}.{_part(task_id)}"
    seen = set()
    for row in decision.get("candidates") or []:
        if not isinstance(row, Mapping):
            continue
        zone, mean = row.get("zone"), row.get("forecast_mean")
        if zone and mean is not None and zone not in seen:
            seen.add(zone)
            _safely("gauge", f"carbon.intensity.{_part(zone)}", float(mean),
                    tags={**tags, "zone": zone, "cluster": row.get("cluster", "")})
    zone = decision.get("zone")
    if zone and zone not in seen and decision.get("expected_intensity") is not None:
        _safely("gauge", f"carbon.intensity.{_part(zone)}", float(decision["expected_intensity"]),
                tags={**tags, "zone": zone, "cluster": decision.get("chosen_cluster", "")})
    if decision.get("expected_saving_pct") is not None:
        from airflow_carbon_provider.ledger.realised import signal_kind_of

        kind = signal_kind_of(decision.get("signal"))
        _safely("gauge", f"carbon.decision.expected_saving_pct.{kind}.forecast.{suffix}",
                float(decision["expected_saving_pct"]), tags={**tags, "signal_kind": kind, "basis": "forecast"})
    errors = decision.get("errors") or {}
    if errors:
        _safely("incr", f"carbon.api_errors.{suffix}", len(errors), tags=tags)
    if decision.get("fail_open"):
        _safely("incr", f"carbon.fail_open.{suffix}", tags=tags)


def _emit_outcome(outcome: Mapping[str, Any], dag_id: str, task_id: str) -> None:
    cluster = outcome.get("cluster") or "unknown"
    tags = {"dag_id": dag_id, "task_id": task_id, "zone": outcome.get("zone") or "", "cluster": cluster}
    suffix = f"{_part(dag_id)}.{_part(task_id)}"
    from airflow_carbon_provider.ledger.realised import signal_kind_of

    kind = signal_kind_of(outcome.get("signal_kind"))
    basis = outcome.get("basis") if outcome.get("basis") in ("realised", "forecast", "none") else "unknown"
    figures = {**tags, "signal_kind": kind, "basis": basis}
    for field in ("emissions_g", "baseline_emissions_g", "saving_g"):
        if outcome.get(field) is not None:
            _safely("gauge", f"carbon.task.{field}.{kind}.{basis}.{suffix}", float(outcome[field]), tags=figures)
    if outcome.get("delay_s") is not None:
        _safely("timing", f"carbon.task.delay.{suffix}", timedelta(seconds=float(outcome["delay_s"])), tags=tags)
    _safely("incr", f"carbon.cluster.runs.{_part(cluster)}", tags=tags)
    for fallback in outcome.get("fallbacks") or []:
        refused = fallback.get("cluster") if isinstance(fallback, Mapping) else None
        _safely("incr", f"carbon.fallbacks.{_part(refused or 'unknown')}", tags={**tags, "refused": refused or ""})


def emit_reservations_held(cluster: str, count: int) -> None:
    """Set ``carbon.reservations.held.<cluster>`` to the number of unexpired reservations on it."""
    try:
        _safely("gauge", f"carbon.reservations.held.{_part(cluster)}", int(count), tags={"cluster": cluster})
    except Exception as exc:  # never the reservation's problem
        log.debug("Carbon reservation metric not emitted: %s", exc)


def emit_reservation_refused(cluster: str, resource: str) -> None:
    """Count one reservation refused on ``cluster`` because ``resource`` was full."""
    try:
        _safely("incr", f"carbon.reservations.refused.{_part(cluster)}.{_part(resource)}",
                tags={"cluster": cluster, "resource": resource})
    except Exception as exc:
        log.debug("Carbon reservation metric not emitted: %s", exc)
