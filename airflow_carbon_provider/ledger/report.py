"""``airflow-carbon report``: ledger rows, groups and objectives as table, JSON, CSV or a PNG chart."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_carbon_provider.ledger.config import URL_ENV
from airflow_carbon_provider.ledger.errors import LedgerError, LedgerUnavailableError, ReportError
from airflow_carbon_provider.ledger.realised import saving_pct
from airflow_carbon_provider.ledger.secrets import redact_text
from airflow_carbon_provider.ledger.slo import Objectives, evaluate

__all__ = ["GROUPS", "ROW_FIELDS", "build_report", "row_saving_pct", "collect_rows", "format_csv", "format_table", "plot_report"]

UTC = timezone.utc
GROUPS = ("dag", "task", "cluster", "day")
ROW_FIELDS = (
    "dag_id", "task_id", "run_id", "map_index", "try_number", "state", "cluster", "zone", "home_cluster",
    "home_zone", "policy", "arrival", "actual_start", "actual_end", "duration_s", "delay_s", "latest_start", "deadline",
    "started_by_latest_start", "deadline_met", "power_watts", "energy_kwh", "realised_intensity",
    "baseline_intensity", "emissions_g", "baseline_emissions_g", "saving_g", "saving_pct", "intensity_source",
    "fallback_used", "fail_open", "expected_intensity", "expected_saving_pct", "signal_kind", "basis",
)  # fmt: skip
CSV_FIELDS = (*ROW_FIELDS, "group", "group_objectives")
FIGURES = ("power_watts", "energy_kwh", "realised_intensity", "baseline_intensity", "emissions_g",
           "baseline_emissions_g", "saving_g")
"""Row fields kept unrounded (to 12 significant digits): only the table and the UI round them."""


def _figure(value: Any) -> Any:
    """Return a figure to 12 significant digits: float noise gone (40.00000000000001), micrograms kept."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return float(f"{value:.12g}")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def row_saving_pct(row: Mapping[str, Any]) -> float | None:
    """Return a run's saving in percent of its baseline, to 0.01, or None when no saving is claimed.

    A run's two sides share its power and duration, so the share saved is the share of
    intensity avoided: taken from the realised and baseline intensities, never from grams
    rounded on their own (rows recorded before grams were kept unrounded had a 47 % saving
    read 0 % on a short pod). Without the intensities, from the grams.
    """
    saving, base_g = row.get("saving_g"), row.get("baseline_emissions_g")
    if saving is None or base_g is None:
        return None
    pct = None
    if _positive(row.get("power_watts")) and _positive(row.get("duration_s")):
        pct = saving_pct(row.get("realised_intensity"), row.get("baseline_intensity"))
    if pct is None and _positive(base_g):
        pct = 100.0 * float(saving) / float(base_g)
    return None if pct is None else round(pct, 2)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    return (rec["dag_id"], rec["run_id"], rec["task_id"], rec["map_index"], rec["try_number"])


def _merge(decision: Mapping[str, Any] | None, outcome: Mapping[str, Any] | None) -> dict[str, Any]:
    base = outcome or decision
    assert base is not None
    details = dict((decision or {}).get("details") or {})
    row: dict[str, Any] = {name: base[name] for name in ("dag_id", "task_id", "run_id", "map_index", "try_number")}
    if outcome is not None:
        extra = outcome.get("details") or {}
        for name in ROW_FIELDS:
            if name in outcome:
                row[name] = outcome[name]
            elif name in extra:
                row[name] = extra[name]
    else:
        row.update({
            "state": (decision or {}).get("phase") or "decided",
            "cluster": details.get("cluster") or details.get("chosen_cluster"),
            "zone": details.get("zone"),
            "home_cluster": details.get("home_cluster"),
            "home_zone": details.get("home_zone"),
            "arrival": details.get("arrival"),
            "actual_start": details.get("actual_start"),
            "latest_start": details.get("latest_start"),
            "deadline": details.get("deadline"),
            "fail_open": details.get("fail_open"),
        })
    if outcome is None:
        row["signal_kind"] = (decision or {}).get("signal_kind")
    # NULL (a row recorded before the columns existed, a decision with no outcome yet) reads unknown
    row["signal_kind"] = row.get("signal_kind") or "unknown"
    row["basis"] = row.get("basis") or "unknown"
    if decision is not None:
        row.setdefault("policy", decision.get("policy"))
        row["expected_intensity"] = decision.get("expected_intensity")
        row["expected_saving_pct"] = decision.get("expected_saving_pct")
        if row.get("fail_open") is None:
            row["fail_open"] = details.get("fail_open")
    for name in FIGURES:
        row[name] = _figure(row.get(name))
    row["saving_pct"] = row_saving_pct(row)
    return {name: _iso(row.get(name)) for name in ROW_FIELDS}


def collect_rows(
    ledger: Any,
    *,
    dag_id: str | None = None,
    task_id: str | None = None,
    cluster: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return one row per recorded task try (outcome joined with its decision), oldest first.

    Replays the spool first. A try with a decision but no outcome yet is listed with its
    phase as ``state`` and no emissions. ``since``/``until`` filter on the actual start (or
    the arrival while none is known).
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        if ledger.spool.pending():
            ledger.spool.replay(ledger.write_spooled)
        decisions = {_key(r): r for r in ledger.read("decision", dag_id=dag_id, task_id=task_id)}
        outcomes = {_key(r): r for r in ledger.read("outcome", dag_id=dag_id, task_id=task_id)}
    except (SQLAlchemyError, OSError, ImportError) as exc:
        from airflow_carbon_provider.ledger.config import redact_url_secrets

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = redact_url_secrets(first, ledger.url)
        raise LedgerUnavailableError(
            f"cannot read the ledger at {ledger.masked_url}: {type(exc).__name__}: {text[:200]}",
            url=ledger.masked_url,
        ) from None
    rows = [_merge(decisions.get(k), outcomes.get(k)) for k in dict.fromkeys([*decisions, *outcomes])]
    picked = []
    for row in rows:
        if cluster and row.get("cluster") != cluster:
            continue
        when = _parse(row.get("actual_start") or row.get("arrival"))
        if since and (when is None or when < since):
            continue
        if until and (when is None or when >= until):
            continue
        picked.append(row)
    picked.sort(key=lambda r: (r.get("actual_start") or r.get("arrival") or "", r["dag_id"], r["task_id"]))
    return picked


def group_of(row: Mapping[str, Any], group_by: str) -> str:
    """Return the group label of ``row``."""
    if group_by == "dag":
        return str(row["dag_id"])
    if group_by == "task":
        return f"{row['dag_id']}.{row['task_id']}"
    if group_by == "cluster":
        return str(row.get("cluster") or "unknown")
    if group_by == "day":
        when = row.get("actual_start") or row.get("arrival")
        return str(when)[:10] if when else "unknown"
    raise ReportError(f"unknown group {group_by!r}; use one of: {', '.join(GROUPS)}")


def _totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    both = [r for r in rows if r.get("emissions_g") is not None and r.get("baseline_emissions_g") is not None]
    emissions = sum(float(r["emissions_g"]) for r in both)
    baseline = sum(float(r["baseline_emissions_g"]) for r in both)
    finished = [r for r in rows if r.get("actual_end")]
    delays = [float(r["delay_s"]) for r in finished if r.get("delay_s") is not None]
    return {
        "runs": len(rows),
        "finished": len(finished),
        "with_emissions": len(both),
        "emissions_g": _figure(emissions),
        "baseline_emissions_g": _figure(baseline),
        "saving_g": _figure(baseline - emissions),
        # from the unrounded sums; only the percentage itself is rounded, to 0.01
        "saving_pct": round(100.0 * (baseline - emissions) / baseline, 2) if baseline > 0 else None,
        "energy_kwh": _figure(sum(float(r["energy_kwh"]) for r in finished if r.get("energy_kwh") is not None)),
        "mean_delay_s": round(sum(delays) / len(delays), 1) if delays else None,
        "from_history": sum(1 for r in both if r.get("intensity_source") == "history"),
        "from_forecast": sum(1 for r in both if r.get("intensity_source") == "forecast"),
    }


def _all_met(verdicts: Iterable[Mapping[str, Any]]) -> bool | None:
    known = [v["met"] for v in verdicts if v["met"] is not None]
    return None if not known else all(known)


def build_report(rows: list[dict[str, Any]], *, group_by: str = "dag", objectives: Objectives | None = None,
                 ledger_url: str | None = None, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the report object: rows, groups with totals and objectives, overall objectives."""
    if group_by not in GROUPS:
        raise ReportError(f"unknown group {group_by!r}; use one of: {', '.join(GROUPS)}")
    objectives = objectives or Objectives()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(group_of(row, group_by), []).append(row)
    groups = []
    for label in sorted(grouped):
        verdicts = evaluate(grouped[label], objectives)
        groups.append({"group": label, **_totals(grouped[label]), "objectives": verdicts,
                       "objectives_met": _all_met(verdicts)})
    overall = evaluate(rows, objectives)
    return {
        "ledger": ledger_url,
        "filters": {k: _iso(v) for k, v in (filters or {}).items() if v is not None},
        "group_by": group_by,
        "rows": rows,
        "groups": groups,
        "totals": _totals(rows),
        "objectives": overall,
        "objectives_met": _all_met(overall),
    }


def _mark(met: bool | None) -> str:
    return "no data" if met is None else ("MET" if met else "MISSED")


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return out


def _objective_lines(verdicts: list[Mapping[str, Any]]) -> list[str]:
    if not verdicts:
        return ["  (no objectives configured)"]
    return [f"  [{_mark(v['met'])}] {v['description']}: actual {_num(v['actual'], '{:.1f} %')} over {v['runs']} runs"
            for v in verdicts]


def format_table(report: Mapping[str, Any]) -> str:
    """Render the report as aligned text: groups, then objectives (met or missed)."""
    totals = report["totals"]
    lines = [f"Carbon ledger {report.get('ledger') or ''}: {totals['runs']} task runs "
             f"({totals['finished']} finished), grouped by {report['group_by']}", ""]
    columns = ["group", "runs", "emissions g", "baseline g", "saving g", "saving %", "energy kWh",
               "mean delay h", "objectives"]
    rows = [[
        g["group"], str(g["runs"]), _num(g["emissions_g"]), _num(g["baseline_emissions_g"]), _num(g["saving_g"]),
        _num(g["saving_pct"]), _num(g["energy_kwh"], "{:.3f}"),
        _num(None if g["mean_delay_s"] is None else g["mean_delay_s"] / 3600, "{:.2f}"),
        _mark(g["objectives_met"]),
    ] for g in report["groups"]]
    rows.append([
        "TOTAL", str(totals["runs"]), _num(totals["emissions_g"]), _num(totals["baseline_emissions_g"]),
        _num(totals["saving_g"]), _num(totals["saving_pct"]), _num(totals["energy_kwh"], "{:.3f}"),
        _num(None if totals["mean_delay_s"] is None else totals["mean_delay_s"] / 3600, "{:.2f}"),
        _mark(report["objectives_met"]),
    ])
    lines += _table(columns, rows)
    lines += ["", "Objectives (all runs):", *_objective_lines(report["objectives"])]
    if totals["from_forecast"]:
        lines.append(f"Note: {totals['from_forecast']} of {totals['with_emissions']} runs use forecast intensities "
                     "(realised history was unavailable); see the intensity_source column (--format csv).")
    return "\n".join(lines)


def format_csv(report: Mapping[str, Any]) -> str:
    """Render the report's rows as CSV; each row carries its group and the group's objective verdicts."""
    verdicts = {g["group"]: ";".join(f"{v['name']}={_mark(v['met'])}" for v in g["objectives"])
                for g in report["groups"]}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        group = group_of(row, report["group_by"])
        writer.writerow({**{k: ("" if row.get(k) is None else row.get(k)) for k in ROW_FIELDS},
                         "group": group, "group_objectives": verdicts.get(group, "")})
    return buffer.getvalue()


def plot_report(report: Mapping[str, Any], path: Path) -> None:
    """Draw baseline vs actual emissions per group, objectives annotated, to a PNG file."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib; install it with: pip install 'airflow-carbon-provider[plot]'") from None
    groups = report["groups"]
    labels = [g["group"] for g in groups] or ["(no runs)"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 3), 4.8))
    xs = range(len(labels))
    base = [g["baseline_emissions_g"] for g in groups] or [0]
    actual = [g["emissions_g"] for g in groups] or [0]
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="baseline (home, original start)", color="#b0b0b0")
    ax.bar([x + 0.2 for x in xs], actual, width=0.4, label="actual", color="#2e8b57")
    for x, g in zip(xs, groups):
        ax.annotate(_mark(g["objectives_met"]), (x, max(g["baseline_emissions_g"], g["emissions_g"])),
                    ha="center", va="bottom", fontsize=8,
                    color="#1a7f37" if g["objectives_met"] else ("#b42318" if g["objectives_met"] is False else "gray"))
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel("emissions, g CO2eq")
    ax.set_title(f"Carbon ledger by {report['group_by']}")
    ax.legend(loc="upper right", fontsize=8)
    summary = "\n".join(f"{_mark(v['met'])}: {v['description']} (actual {_num(v['actual'], '{:.1f} %')})"
                        for v in report["objectives"]) or "no objectives configured"
    fig.text(0.01, 0.01, summary, fontsize=7, va="bottom")
    fig.subplots_adjust(bottom=0.28)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_report(
    *,
    ledger_url: str | None,
    group_by: str,
    objectives: Objectives,
    dag_id: str | None = None,
    task_id: str | None = None,
    cluster: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Open the ledger, collect the rows and build the report (raises :class:`LedgerError` subclasses).

    A SQLite ledger file that does not exist is an error (``no ledger at ...``): a report
    never creates one.
    """
    from airflow_carbon_provider.ledger.store import Ledger

    if group_by not in GROUPS:
        raise ReportError(f"unknown group {group_by!r}; use one of: {', '.join(GROUPS)}")
    if since and until and since >= until:
        raise ReportError(f"--since {_iso(since)} is not before --until {_iso(until)}")
    try:
        ledger = Ledger(ledger_url)
    except LedgerError:
        raise
    except Exception as exc:
        raise LedgerError(f"ledger URL not usable: {type(exc).__name__}: {redact_text(str(exc))[:200]}") from None
    try:
        from sqlalchemy.engine import make_url

        make_url(ledger.url)
    except Exception:
        raise ReportError(f"ledger URL {ledger.masked_url!r} is not a SQLAlchemy URL "
                          "(e.g. sqlite:////path/ledger.db or postgresql://user@host/db)") from None
    missing = ledger.sqlite_file()
    if missing is not None and not missing.exists():  # a report reads; it never creates a ledger
        waiting = ledger.spool.pending()
        spooled = f"; {waiting} record(s) wait in the spool {ledger.spool.path}" if waiting else ""
        raise LedgerError(f"no ledger at {missing}: nothing has been recorded there yet, or the ledger URL "
                          f"(--ledger-url, {URL_ENV}, [carbon] ledger_conn_id) names the wrong file{spooled}")
    try:
        rows = collect_rows(ledger, dag_id=dag_id, task_id=task_id, cluster=cluster, since=since, until=until)
    finally:
        ledger.dispose()
    filters = {"dag_id": dag_id, "task_id": task_id, "cluster": cluster, "since": since, "until": until}
    return build_report(rows, group_by=group_by, objectives=objectives, ledger_url=ledger.masked_url,
                        filters=filters)
