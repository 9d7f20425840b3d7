"""What the Carbon UI shows, as plain data: ledger summaries, one task's record, cluster intensities.

Nothing here knows about FastAPI or authentication: the app in :mod:`.app` decides who may
see what and passes the allowed DAG and connection ids in. Every function returns JSON-safe
dicts; a source that fails becomes an ``error`` entry, never an exception, except a ledger
that cannot be read at all (:class:`~airflow_carbon_provider.ledger.errors.LedgerUnavailableError`),
which the app turns into a 503.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_carbon_provider.ledger.config import conf_get
from airflow_carbon_provider.ledger.secrets import redact_text

if TYPE_CHECKING:
    from airflow_carbon_provider.plugins.timeline import DagRunTimeline, TaskTimeline

__all__ = [
    "ClusterConnection",
    "cluster_intensities",
    "dag_run_choices",
    "dag_run_timeline",
    "forecast_skill",
    "parse_map_index",
    "runs",
    "summary",
    "task_record",
    "task_timeline",
]

log = logging.getLogger(__name__)
UTC = timezone.utc
DEFAULT_HORIZON = timedelta(hours=24)
FETCH_TIMEOUT_S = 20.0
"""A cluster whose carbon source has not answered within this many seconds is shown as an error."""
UI_CLUSTERS_KEY = "ui_clusters"
UI_CARBON_CONN_KEY = "ui_carbon_conn_id"


def parse_map_index(value: str | int | None) -> int:
    """Return the map index from a query value; anything that is not an integer means unmapped (-1).

    Airflow's UI leaves the ``{MAP_INDEX}`` placeholder as it is for an unmapped task.
    """
    if value is None:
        return -1
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_text(f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__)


def _ledger(url: str | None = None) -> Any:
    from airflow_carbon_provider.ledger.store import Ledger

    return Ledger(url)


def _rows(ledger: Any, allowed_dag: Callable[[str], bool], **filters: Any) -> list[dict[str, Any]]:
    from airflow_carbon_provider.ledger.report import collect_rows

    return [row for row in collect_rows(ledger, **filters) if allowed_dag(str(row["dag_id"]))]


def summary(allowed_dag: Callable[[str], bool], *, ledger_url: str | None = None) -> dict[str, Any]:
    """Return savings per DAG, totals and objectives (SLO attainment) over the readable DAGs.

    ``totals`` is a list with one entry per (``signal_kind``, ``basis``), and ``dags`` has one
    entry per DAG and kind: average and marginal, realised and forecast figures are never
    added together. ``runs`` and ``finished`` count every row.

    Raises :class:`~airflow_carbon_provider.ledger.errors.LedgerUnavailableError` when the
    ledger cannot be read.
    """
    from airflow_carbon_provider.ledger.report import build_report
    from airflow_carbon_provider.ledger.slo import Objectives

    ledger = _ledger(ledger_url)
    rows = _rows(ledger, allowed_dag)
    report = build_report(rows, group_by="dag", objectives=Objectives.from_config(), ledger_url=ledger.masked_url)
    return {
        "ledger": report["ledger"],
        "runs": report["runs"],
        "finished": report["finished"],
        "totals": report["totals"],
        "dags": [{"dag_id": g.pop("group"), **g} for g in report["groups"]],
        "objectives": report["objectives"],
        "objectives_met": report["objectives_met"],
    }


SKILL_WINDOW = timedelta(days=7)
"""The Carbon page's forecast skill covers forecasts issued this long before now (the CLI: any period)."""


def forecast_skill(allowed_source: Callable[[str], bool], *, ledger_url: str | None = None,
                   now: datetime | None = None) -> dict[str, Any]:
    """Return the forecast error by lead time per source, zone and signal kind, over the last :data:`SKILL_WINDOW`.

    Only sources (carbon connection ids) the user may read are shown. Raises
    :class:`~airflow_carbon_provider.ledger.errors.LedgerUnavailableError` when the ledger
    cannot be read.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
    from airflow_carbon_provider.ledger.forecasts import read_forecasts
    from airflow_carbon_provider.ledger.skill import REALISED_FROM
    from airflow_carbon_provider.ledger.skill import forecast_skill as skill_of

    ledger = _ledger(ledger_url)
    since = (now or datetime.now(UTC)) - SKILL_WINDOW
    try:
        recorded = [r for r in read_forecasts(ledger, since=since) if allowed_source(str(r["source"]))]
    except (SQLAlchemyError, OSError) as exc:
        raise LedgerUnavailableError(f"cannot read the ledger at {ledger.masked_url}: {_short(exc)}",
                                     url=ledger.masked_url) from None
    rows, counts = skill_of(recorded)
    return {"ledger": ledger.masked_url, "since": _iso(since), "realised_from": REALISED_FROM, **counts,
            "rows": rows}


def runs(allowed_dag: Callable[[str], bool], *, dag_id: str | None = None, limit: int = 100,
         ledger_url: str | None = None) -> dict[str, Any]:
    """Return the newest ``limit`` ledger rows (one per task try), newest first."""
    ledger = _ledger(ledger_url)
    rows = _rows(ledger, allowed_dag, dag_id=dag_id)
    rows.reverse()
    return {"ledger": ledger.masked_url, "total_entries": len(rows), "rows": rows[:max(0, limit)]}


def _record(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    details = dict(rec.get("details") or {})
    merged = {**details, **{k: _iso(v) for k, v in rec.items() if k not in ("details", "id")}}
    return merged


def task_record(dag_id: str, run_id: str, task_id: str, map_index: int = -1, *,
                ledger_url: str | None = None) -> dict[str, Any]:
    """Return the decision and outcome of one task instance: its latest try, and every try's key.

    ``found`` is False when the ledger holds nothing for it (not every task is carbon-aware).
    """
    ledger = _ledger(ledger_url)
    try:
        records: dict[str, dict[int, dict[str, Any]]] = {}
        for kind in ("decision", "outcome"):
            records[kind] = {
                int(r["try_number"]): r
                for r in ledger.read(kind, dag_id=dag_id, task_id=task_id)
                if r["run_id"] == run_id and int(r["map_index"]) == map_index
            }
    except Exception as exc:
        from airflow_carbon_provider.ledger.config import redact_url_secrets
        from airflow_carbon_provider.ledger.errors import LedgerUnavailableError

        raise LedgerUnavailableError(
            f"cannot read the ledger at {ledger.masked_url}: {redact_url_secrets(_short(exc), ledger.url)}",
            url=ledger.masked_url) from None
    tries = sorted(set(records["decision"]) | set(records["outcome"]))
    latest = tries[-1] if tries else None
    decision = _record(records["decision"].get(latest)) if latest is not None else None
    outcome = _record(records["outcome"].get(latest)) if latest is not None else None
    if outcome is not None:
        from airflow_carbon_provider.ledger.report import row_saving_pct

        outcome["saving_pct"] = row_saving_pct(outcome)
    return {
        "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index,
        "found": latest is not None, "try_number": latest, "tries": tries,
        "decision": decision, "outcome": outcome, "ledger": ledger.masked_url,
    }


# -- timelines ----------------------------------------------------------------------------

FORECASTS_BEFORE = timedelta(hours=6)
"""Recorded forecasts issued this long before a task arrived are read for its timeline (the one in force)."""


def _unavailable(ledger: Any, exc: BaseException) -> Exception:
    from airflow_carbon_provider.ledger.config import redact_url_secrets
    from airflow_carbon_provider.ledger.errors import LedgerUnavailableError

    return LedgerUnavailableError(
        f"cannot read the ledger at {ledger.masked_url}: {redact_url_secrets(_short(exc), ledger.url)}",
        url=ledger.masked_url)


def _window_forecasts(ledger: Any, decisions: Iterable[Mapping[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Return the recorded forecasts of the decisions' candidate zones, issued from before the first arrival on."""
    from airflow_carbon_provider.ledger.forecasts import read_forecasts
    from airflow_carbon_provider.scheduling.decision import Decision

    zones: set[str] = set()
    begin = end = None
    for data in decisions:
        try:
            record = Decision.from_xcom(data)
        except ValueError:
            continue
        zones.update(c.zone for c in record.candidates if c.zone)
        first = min(record.arrival, record.decided_at)
        last = max(record.deadline or record.latest_start, record.latest_start, now)
        begin = first if begin is None else min(begin, first)
        end = last if end is None else max(end, last)
    if not zones or begin is None or end is None:
        return []
    rows = read_forecasts(ledger, since=begin - FORECASTS_BEFORE, until=end + timedelta(days=1))
    return [r for r in rows if r["zone"] in zones]


def task_timeline(record: Mapping[str, Any], *, ledger_url: str | None = None,
                  now: datetime | None = None) -> TaskTimeline | None:
    """Return the :class:`~airflow_carbon_provider.plugins.timeline.TaskTimeline` of a :func:`task_record`, or None.

    None when nothing is recorded or the decision is not readable (the page's table says what is
    there). Raises :class:`~airflow_carbon_provider.ledger.errors.LedgerUnavailableError` when
    the recorded forecasts cannot be read.
    """
    from airflow_carbon_provider.plugins import timeline

    decision = record.get("decision")
    if not record.get("found") or not decision:
        return None
    now = now or datetime.now(UTC)
    ledger = _ledger(ledger_url)
    try:
        forecasts = _window_forecasts(ledger, [decision], now)
    except Exception as exc:
        raise _unavailable(ledger, exc) from None
    try:
        return timeline.task_timeline(decision, record.get("outcome"), forecasts, now=now,
                                      dag_id=str(record["dag_id"]), run_id=str(record["run_id"]),
                                      task_id=str(record["task_id"]), map_index=int(record["map_index"]),
                                      try_number=record.get("try_number"))
    except ValueError as exc:
        log.warning("Carbon UI: the decision of %s/%s is not readable: %s", record["dag_id"], record["task_id"], exc)
        return None


def dag_run_choices(allowed_dag: Callable[[str], bool], *, limit: int = 30,
                    ledger_url: str | None = None) -> list[dict[str, Any]]:
    """Return the newest ``limit`` DAG runs with carbon-aware tasks: ``dag_id``, ``run_id``, ``tasks``, ``first``."""
    ledger = _ledger(ledger_url)
    runs_seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(ledger, allowed_dag):
        key = (str(row["dag_id"]), str(row["run_id"]))
        when = str(row.get("arrival") or row.get("actual_start") or "")
        entry = runs_seen.setdefault(key, {"dag_id": key[0], "run_id": key[1], "tasks": set(), "first": when})
        entry["tasks"].add((row["task_id"], row.get("map_index", -1)))
        entry["first"] = min(entry["first"], when) if entry["first"] and when else (entry["first"] or when)
    ordered = sorted(runs_seen.values(), key=lambda e: (e["first"], e["dag_id"], e["run_id"]), reverse=True)
    return [{**e, "tasks": len(e["tasks"])} for e in ordered[:max(0, limit)]]


def dag_run_timeline(dag_id: str, run_id: str, *, ledger_url: str | None = None,
                     now: datetime | None = None) -> DagRunTimeline:
    """Return the :class:`~airflow_carbon_provider.plugins.timeline.DagRunTimeline` of one DAG run (latest tries).

    The caller checks that the user may read ``dag_id``. Raises
    :class:`~airflow_carbon_provider.ledger.errors.LedgerUnavailableError` when the ledger cannot be read.
    """
    from airflow_carbon_provider.plugins import timeline

    now = now or datetime.now(UTC)
    ledger = _ledger(ledger_url)
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        found: dict[str, dict[tuple[str, int, int], dict[str, Any]]] = {}
        for kind in ("decision", "outcome"):
            found[kind] = {(str(r["task_id"]), int(r["map_index"]), int(r["try_number"])): r
                           for r in ledger.read(kind, dag_id=dag_id) if r["run_id"] == run_id}
        for task_id, map_index, try_number in sorted(set(found["decision"]) | set(found["outcome"])):
            key = (task_id, map_index, try_number)
            decision = _record(found["decision"].get(key))
            if decision is None:
                continue
            latest[(task_id, map_index)] = {"task_id": task_id, "map_index": map_index, "try_number": try_number,
                                            "decision": decision, "outcome": _record(found["outcome"].get(key))}
        forecasts = _window_forecasts(ledger, [r["decision"] for r in latest.values()], now)
    except Exception as exc:
        raise _unavailable(ledger, exc) from None
    return timeline.dag_run_timeline(list(latest.values()), forecasts, now=now, dag_id=dag_id, run_id=run_id)


# -- clusters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterConnection:
    """A Kubernetes connection that names its grid zone (extra ``carbon_zone``)."""

    conn_id: str
    zone: str
    carbon_conn_id: str


def _extra(extras: Mapping[str, Any], key: str) -> Any:
    value = extras.get(key, extras.get(f"extra__kubernetes__{key}"))
    return None if value in (None, "") else value


def _cluster_of(conn_id: str, extras: Mapping[str, Any], default_carbon: str) -> ClusterConnection | None:
    zone = _extra(extras, "carbon_zone")
    if zone is None:
        return None
    return ClusterConnection(conn_id, str(zone), str(_extra(extras, "carbon_conn_id") or default_carbon))


def default_carbon_conn_id() -> str:
    """Return the carbon connection for clusters that name none (``[carbon] ui_carbon_conn_id``)."""
    from airflow_carbon_provider.scheduling import DEFAULT_CARBON_CONN_ID

    return conf_get(UI_CARBON_CONN_KEY) or DEFAULT_CARBON_CONN_ID


def configured_clusters(db_connections: Iterable[tuple[str, str | None, Mapping[str, Any]]] = (),
                        environ: Mapping[str, str] | None = None,
                        read_connection: Callable[[str], Any] | None = None) -> list[ClusterConnection]:
    """Return every Kubernetes connection with a ``carbon_zone``, sorted by connection id.

    Three places are looked at: ``db_connections`` (``(conn_id, conn_type, extras)`` from
    Airflow's metadata database), ``AIRFLOW_CONN_*`` environment variables, and the ids in
    ``[carbon] ui_clusters`` (comma-separated; for secrets backends that cannot be listed),
    which ``read_connection`` resolves.
    """
    default_carbon = default_carbon_conn_id()
    environ = os.environ if environ is None else environ
    found: dict[str, ClusterConnection] = {}
    for conn_id, conn_type, extras in db_connections:
        cluster = _cluster_of(conn_id, extras, default_carbon) if conn_type == "kubernetes" else None
        if cluster is not None:
            found[conn_id] = cluster
    ids = [key[len("AIRFLOW_CONN_"):].lower() for key in environ if key.startswith("AIRFLOW_CONN_")]
    listed = [i.strip() for i in (conf_get(UI_CLUSTERS_KEY) or "").split(",") if i.strip()]
    for conn_id in dict.fromkeys([*ids, *listed]):
        if conn_id in found or read_connection is None:
            continue
        try:
            conn = read_connection(conn_id)
        except Exception as exc:
            if conn_id in listed:
                log.warning("Carbon UI: cluster connection %r not readable: %s", conn_id, _short(exc))
            continue
        if getattr(conn, "conn_type", None) == "kubernetes":
            cluster = _cluster_of(conn_id, conn.extra_dejson or {}, default_carbon)
            if cluster is not None:
                found[conn_id] = cluster
    return [found[k] for k in sorted(found)]


def _points(series: Any) -> list[dict[str, Any]]:
    return [{"start": _iso(iv.start), "end": _iso(iv.end), "value": round(float(iv.value), 2)}
            for iv in series.intervals]


def _fetch_one(cluster: ClusterConnection, now: datetime, horizon: timedelta,
               hook_for: Callable[[str], Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"conn_id": cluster.conn_id, "zone": cluster.zone, "carbon_conn_id": cluster.carbon_conn_id}
    try:
        hook = hook_for(cluster.carbon_conn_id)
        current = hook.get_current(cluster.zone)
        forecast = hook.get_forecast(cluster.zone, now, now + horizon)
    except Exception as exc:  # any failure of the source is shown as such
        return {**entry, "status": "error", "error": _short(exc)}
    kind = getattr(current.kind, "value", current.kind)
    return {
        **entry,
        "status": "ok",
        "kind": str(kind),
        "source": current.source,
        "current": {"value": round(float(current.value_at(current.start)), 2), "start": _iso(current.start),
                    "end": _iso(current.end)},
        "forecast_issued_at": _iso(forecast.issued_at),
        "forecast": _points(forecast),
    }


def _default_hook(conn_id: str) -> Any:
    from airflow_carbon_provider.hooks._registry import carbon_hook

    return carbon_hook(conn_id)


def cluster_intensities(clusters: Iterable[ClusterConnection], *, now: datetime | None = None,
                        horizon: timedelta = DEFAULT_HORIZON, hook_for: Callable[[str], Any] | None = None,
                        timeout_s: float = FETCH_TIMEOUT_S,
                        allowed: Container[str] | None = None) -> dict[str, Any]:
    """Return current intensity and forecast per cluster; a failing source gives an error entry.

    Clusters are fetched in parallel; one that takes longer than ``timeout_s`` is reported as
    an error (its request goes on in the background and fills the hook's cache).

    :param allowed: connection ids the caller may see (None: all).
    """
    now = now or datetime.now(UTC)
    hook_for = hook_for or _default_hook
    picked = [c for c in clusters if allowed is None or c.conn_id in allowed]
    entries: list[dict[str, Any]] = []
    if picked:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(picked)),
                                                     thread_name_prefix="carbon-ui")
        try:
            futures = [(c, pool.submit(_fetch_one, c, now, horizon, hook_for)) for c in picked]
            done, _ = concurrent.futures.wait([f for _, f in futures], timeout=timeout_s)
            for cluster, future in futures:
                if future in done:
                    entries.append(future.result())
                else:
                    entries.append({"conn_id": cluster.conn_id, "zone": cluster.zone,
                                    "carbon_conn_id": cluster.carbon_conn_id, "status": "error",
                                    "error": f"no answer from {cluster.carbon_conn_id} within {timeout_s:g} s"})
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return {"generated_at": _iso(now), "horizon_h": horizon.total_seconds() / 3600.0, "clusters": entries}


RESERVED_HORIZON = timedelta(hours=48)
RESERVED_STEP = timedelta(hours=1)


def cluster_of_key(key: str) -> str:
    """Return the connection id of a candidate key (``conn@context[selector]`` -> ``conn``)."""
    return key.split("[", 1)[0].split("@", 1)[0]


def reserved_load(conn_ids: Iterable[str], *, now: datetime | None = None, ledger_url: str | None = None,
                  horizon: timedelta = RESERVED_HORIZON, step: timedelta = RESERVED_STEP) -> dict[str, Any]:
    """Return each cluster's reserved load per ``step`` over the next ``horizon`` (fleet coordination).

    Per connection id: ``points`` (``start``, the peak ``pods`` and every resource held at once
    within the step, summed over the candidates of that connection, e.g. its node pools),
    ``peak_pods`` and ``holders``-free totals. A ledger that cannot be read gives ``error``.
    """
    from airflow_carbon_provider.ledger.reservations import held_clusters
    from airflow_carbon_provider.ledger.reservations import reserved_load as load_of

    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    wanted = list(dict.fromkeys(conn_ids))
    ledger = _ledger(ledger_url)
    try:
        keys = [k for k in held_clusters(now=now, ledger=ledger, budget=5.0) if cluster_of_key(k) in wanted]
        series = load_of(keys, now, now + horizon, step, now=now, ledger=ledger, budget=5.0) if keys else {}
    except Exception as exc:  # the page still shows everything else
        return {"error": _short(exc), "clusters": {}}
    finally:
        ledger.dispose()
    out: dict[str, Any] = {}
    for conn_id in wanted:
        mine = [points for key, points in series.items() if cluster_of_key(key) == conn_id]
        points = []
        for i in range(int(horizon / step)):
            total: dict[str, float] = {}
            for part in mine:
                for resource, amount in part[i][1].items():
                    total[resource] = total.get(resource, 0.0) + amount
            points.append({"start": _iso(now + i * step), "pods": round(total.get("pods", 0.0), 3),
                           "resources": {k: round(v, 3) for k, v in total.items()}})
        out[conn_id] = {"points": points, "peak_pods": max((p["pods"] for p in points), default=0.0)}
    return {"generated_at": _iso(now), "horizon_h": horizon.total_seconds() / 3600.0,
            "step_h": step.total_seconds() / 3600.0, "clusters": out}
