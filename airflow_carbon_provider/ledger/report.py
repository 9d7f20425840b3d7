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

__all__ = ["GROUPS", "ROW_FIELDS", "build_report", "row_saving_pct", "collect_rows", "format_csv", "format_table",
           "kind_label", "plot_report", "plot_series"]

UTC = timezone.utc
GROUPS = ("dag", "task", "cluster", "day")
ROW_FIELDS = (
    "dag_id", "task_id", "run_id", "map_index", "try_number", "state", "cluster", "zone", "home_cluster",
    "home_zone", "policy", "arrival", "actual_start", "actual_end", "duration_s", "delay_s", "latest_start", "deadline",
    "started_by_latest_start", "deadline_met", "power_watts", "energy_kwh", "realised_intensity",
    "baseline_intensity", "emissions_g", "baseline_emissions_g", "saving_g", "saving_pct", "intensity_source",
    "fallback_used", "fail_open", "expected_intensity", "expected_saving_pct", "signal_kind", "basis", "where",
    "home_where",
)  # fmt: skip
CSV_FIELDS = (*ROW_FIELDS, "group", "group_objectives")
FIGURES = ("power_watts", "energy_kwh", "realised_intensity", "baseline_intensity", "emissions_g",
           "baseline_emissions_g", "saving_g")
"""Row fields kept unrounded (to 12 significant digits): only the table and the UI round them."""
_KIND_ORDER = {"average": 0, "marginal": 1}
_BASIS_ORDER = {"realised": 0, "forecast": 1, "none": 2}


def kind_of(row: Mapping[str, Any]) -> tuple[str, str]:
    """Return a row's (signal_kind, basis): rows of two different pairs are never added together."""
    return str(row.get("signal_kind") or "unknown"), str(row.get("basis") or "unknown")


def _kind_order(pair: tuple[str, str]) -> tuple[int, int, str, str]:
    return _KIND_ORDER.get(pair[0], 9), _BASIS_ORDER.get(pair[1], 9), pair[0], pair[1]


def kind_label(item: Mapping[str, Any]) -> str:
    """Return ``average/realised`` (etc.): the label every figure of a row, group or total carries."""
    kind, basis = kind_of(item)
    return f"{kind}/{basis}"


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
        # The places as the user named them (a cloud region, coordinates); zone is the key they resolved to.
        row["where"] = details.get("where")
        row["home_where"] = details.get("home_where")
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


def _by_kind(rows: Iterable[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    split: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        split.setdefault(kind_of(row), []).append(row)
    return [(pair, split[pair]) for pair in sorted(split, key=_kind_order)]


def _totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the sums over ``rows``, which must all be of one (signal_kind, basis)."""
    assert len({kind_of(r) for r in rows}) <= 1, "figures of two signal kinds or bases are never summed"
    both = [r for r in rows if r.get("emissions_g") is not None and r.get("baseline_emissions_g") is not None]
    emissions = sum(float(r["emissions_g"]) for r in both)
    baseline = sum(float(r["baseline_emissions_g"]) for r in both)
    finished = [r for r in rows if r.get("actual_end")]
    delays = [float(r["delay_s"]) for r in finished if r.get("delay_s") is not None]
    return {
        "runs": len(rows),
        "finished": len(finished),
        "with_emissions": len(both),
        # no runs with figures: no figures (not "0 g emitted")
        "emissions_g": _figure(emissions) if both else None,
        "baseline_emissions_g": _figure(baseline) if both else None,
        "saving_g": _figure(baseline - emissions) if both else None,
        # from the unrounded sums; only the percentage itself is rounded, to 0.01
        "saving_pct": round(100.0 * (baseline - emissions) / baseline, 2) if baseline > 0 else None,
        "energy_kwh": _figure(sum(float(r["energy_kwh"]) for r in finished if r.get("energy_kwh") is not None)),
        "mean_delay_s": round(sum(delays) / len(delays), 1) if delays else None,
        "from_history": sum(1 for r in both if r.get("intensity_source") == "history"),
        "from_forecast": sum(1 for r in both if r.get("intensity_source") == "forecast"),
    }


def _kind_totals(kind: str, basis: str, rows: list[dict[str, Any]], objectives: Objectives) -> dict[str, Any]:
    verdicts = evaluate(rows, objectives)
    return {"signal_kind": kind, "basis": basis, **_totals(rows), "objectives": verdicts,
            "objectives_met": _all_met(verdicts)}


def _all_met(verdicts: Iterable[Mapping[str, Any]]) -> bool | None:
    known = [v["met"] for v in verdicts if v["met"] is not None]
    return None if not known else all(known)


def build_report(rows: list[dict[str, Any]], *, group_by: str = "dag", objectives: Objectives | None = None,
                 ledger_url: str | None = None, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the report object: rows, groups with totals and objectives, overall objectives.

    Sums are taken within one (``signal_kind``, ``basis``) only: ``groups`` has one entry per
    group label and kind, and ``totals`` is a list with one entry per kind, each labelled by
    its ``signal_kind`` and ``basis``. No number adds average to marginal figures, or forecast
    to realised ones ("Green Mirage", arXiv 2402.03550). ``runs`` and ``finished`` count all
    rows (counts of runs, not carbon figures).
    """
    if group_by not in GROUPS:
        raise ReportError(f"unknown group {group_by!r}; use one of: {', '.join(GROUPS)}")
    objectives = objectives or Objectives()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(group_of(row, group_by), []).append(row)
    groups = []
    for label in sorted(grouped):
        for (kind, basis), part in _by_kind(grouped[label]):
            verdicts = evaluate(part, objectives)
            groups.append({"group": label, "signal_kind": kind, "basis": basis, **_totals(part),
                           "objectives": verdicts, "objectives_met": _all_met(verdicts)})
    overall = evaluate(rows, objectives)
    return {
        "ledger": ledger_url,
        "filters": {k: _iso(v) for k, v in (filters or {}).items() if v is not None},
        "group_by": group_by,
        "rows": rows,
        "groups": groups,
        "runs": len(rows),
        "finished": sum(1 for r in rows if r.get("actual_end")),
        "totals": [_kind_totals(kind, basis, part, objectives) for (kind, basis), part in _by_kind(rows)],
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
    """Render the report as aligned text: groups, one labelled total per signal kind and basis, objectives."""
    lines = [f"Carbon ledger {report.get('ledger') or ''}: {report['runs']} task runs "
             f"({report['finished']} finished), grouped by {report['group_by']}; "
             "figures of different signal kinds or bases are never added together", ""]
    columns = ["group", "signal/basis", "runs", "emissions g", "baseline g", "saving g", "saving %", "energy kWh",
               "mean delay h", "objectives"]

    def line(first: str, g: Mapping[str, Any], met: bool | None) -> list[str]:
        return [first, kind_label(g), str(g["runs"]), _num(g["emissions_g"]), _num(g["baseline_emissions_g"]),
                _num(g["saving_g"]), _num(g["saving_pct"]), _num(g["energy_kwh"], "{:.3f}"),
                _num(None if g["mean_delay_s"] is None else g["mean_delay_s"] / 3600, "{:.2f}"), _mark(met)]

    rows = [line(g["group"], g, g["objectives_met"]) for g in report["groups"]]
    rows += [line("TOTAL", t, t["objectives_met"]) for t in report["totals"]]
    lines += _table(columns, rows)
    lines += ["", "Objectives (all runs; reduction and low-carbon on the group each names):",
              *_objective_lines(report["objectives"])]
    if any(t["basis"] == "forecast" for t in report["totals"]):
        lines.append("Note: the forecast totals use forecast intensities (realised history was unavailable); "
                     "they are kept apart from realised ones.")
    if any("unknown" in (t["signal_kind"], t["basis"]) for t in report["totals"]):
        lines.append("Note: unknown: rows recorded without a signal kind or basis (before 0.2.0, fail-open "
                     "decisions, runs not finished yet); kept in their own group.")
    return "\n".join(lines)


def format_csv(report: Mapping[str, Any]) -> str:
    """Render the report's rows as CSV; each row carries its group and the group's objective verdicts.

    The group is labelled with its signal kind and basis (``train [average/realised]``), as
    the rows are (``signal_kind``, ``basis`` columns).
    """
    verdicts = {f"{g['group']} [{kind_label(g)}]": ";".join(f"{v['name']}={_mark(v['met'])}" for v in g["objectives"])
                for g in report["groups"]}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        group = f"{group_of(row, report['group_by'])} [{kind_label(row)}]"
        writer.writerow({**{k: ("" if row.get(k) is None else row.get(k)) for k in ROW_FIELDS},
                         "group": group, "group_objectives": verdicts.get(group, "")})
    return buffer.getvalue()


def plot_series(report: Mapping[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """Return the plot's bar labels (group and ``kind/basis``), baseline and actual grams per bar."""
    groups = report["groups"]
    labels = [f"{g['group']}\n{kind_label(g)}" for g in groups] or ["(no runs)"]
    base = [g["baseline_emissions_g"] or 0.0 for g in groups] or [0.0]
    actual = [g["emissions_g"] or 0.0 for g in groups] or [0.0]
    return labels, base, actual


def plot_report(report: Mapping[str, Any], path: Path) -> None:
    """Draw baseline vs actual emissions per group, objectives annotated, to a PNG file."""
    import matplotlib.pyplot as plt

    fig = draw_report(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_report(report: Mapping[str, Any]) -> Any:
    """Return the report's matplotlib figure (see :func:`plot_report`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("--plot needs matplotlib; install it with: pip install 'airflow-carbon-provider[plot]'") from None
    groups = report["groups"]
    labels, base, actual = plot_series(report)
    totals = [f"total {kind_label(t)}: {_num(t['emissions_g'])} g vs {_num(t['baseline_emissions_g'])} g baseline "
              f"({_num(t['saving_pct'], '{:.1f} %')} saved)" for t in report["totals"]]
    summary = [*totals, *(f"{_mark(v['met'])}: {v['description']} (actual {_num(v['actual'], '{:.1f} %')})"
                          for v in report["objectives"])] or ["no objectives configured"]
    # Three bands that never overlap: the title and legend above the axes, the bars (with the
    # per-group verdicts above them, headroom kept), and the totals and objectives below.
    text_h = 0.16 * len(summary) + 0.2
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(labels) + 3), 4.6 + text_h))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="baseline (home, original start)", color="#b0b0b0")
    ax.bar([x + 0.2 for x in xs], actual, width=0.4, label="actual", color="#2e8b57")
    top = max([*base, *actual, 0.0]) or 1.0
    for x, g in zip(xs, groups):
        ax.annotate(_mark(g["objectives_met"]), (x, max(g["baseline_emissions_g"] or 0, g["emissions_g"] or 0)),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8,
                    color="#1a7f37" if g["objectives_met"] else ("#b42318" if g["objectives_met"] is False else "gray"))
    ax.set_ylim(0, top * 1.18)
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel("emissions, g CO2eq")
    ax.set_title(f"Carbon ledger by {report['group_by']} (each bar one signal kind and basis; never summed)",
                 fontsize=10, pad=28)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.text(0.01, 0.01, "\n".join(summary), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, text_h / (4.6 + text_h) + 0.02, 1, 1))
    return fig


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
    if group_by not in GROUPS:
        raise ReportError(f"unknown group {group_by!r}; use one of: {', '.join(GROUPS)}")
    if since and until and since >= until:
        raise ReportError(f"--since {_iso(since)} is not before --until {_iso(until)}")
    ledger = open_for_report(ledger_url)
    try:
        rows = collect_rows(ledger, dag_id=dag_id, task_id=task_id, cluster=cluster, since=since, until=until)
    finally:
        ledger.dispose()
    filters = {"dag_id": dag_id, "task_id": task_id, "cluster": cluster, "since": since, "until": until}
    return build_report(rows, group_by=group_by, objectives=objectives, ledger_url=ledger.masked_url,
                        filters=filters)


def open_for_report(ledger_url: str | None) -> Any:
    """Return the :class:`~airflow_carbon_provider.ledger.store.Ledger` a report reads, or raise one-line errors.

    A SQLite ledger file that does not exist is an error (``no ledger at ...``): a report
    never creates one.
    """
    from airflow_carbon_provider.ledger.store import Ledger

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
    return ledger
