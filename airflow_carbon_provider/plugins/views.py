"""Server-rendered HTML of the Carbon pages: no script, no stylesheet or font from the network.

The pages are shown inside Airflow's UI (an external view is an iframe) and on their own (the
operator extra link opens the task page in a new tab), so every link here is relative to the
page itself. Every value from the ledger or a connection is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow_carbon_provider.plugins.charts import (
    colours_for,
    dag_run_timeline_svg,
    intensity_chart_svg,
    reserved_chart_svg,
    task_timeline_svg,
)

if TYPE_CHECKING:
    from airflow_carbon_provider.plugins.timeline import Curve, DagRunTimeline, TaskTimeline

__all__ = ["dag_run_section", "error_page", "forecast_skill_section", "overview_page", "task_page",
           "task_timeline_section", "timeline_clusters"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:16px;color:#1f2328;
background:#fff;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}
.muted{color:#656d76}.small{font-size:12px}
table{border-collapse:collapse;margin:4px 0 8px}th,td{padding:4px 10px;border-bottom:1px solid #d0d7de;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num,th.num{text-align:right}
.met{color:#1a7f37;font-weight:600}.missed{color:#b42318;font-weight:600}.nodata{color:#656d76}
.error{color:#b42318}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:130px}
.card .v{font-size:20px;font-weight:600}dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;margin:0}
dt{color:#656d76}dd{margin:0}a{color:#0969da}
"""


def _num(value: Any, fmt: str = "{:,.1f}") -> str:
    if value is None or value == "":
        return "–"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return escape(str(value))


def _text(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def _kind_cells(group: dict) -> str:
    """Return the cells a total and a DAG's row share: kind, basis, runs, grams and saving."""
    return (f"<td>{_text(group['signal_kind'])}</td><td>{_text(group['basis'])}</td>"
            f"<td class=\"num\">{int(group['runs'])}</td><td class=\"num\">{_num(group['emissions_g'])}</td>"
            f"<td class=\"num\">{_num(group['baseline_emissions_g'])}</td><td class=\"num\">{_num(group['saving_g'])}</td>"
            f"<td class=\"num\">{_num(group['saving_pct'], '{:.1f} %')}</td>")


def _mark(met: bool | None) -> str:
    if met is None:
        return '<span class="nodata" data-slo="nodata">no data</span>'
    if met:
        return '<span class="met" data-slo="met">✔ MET</span>'
    return '<span class="missed" data-slo="missed">✘ MISSED</span>'


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def error_page(status: int, message: str) -> str:
    """Return a small page for a refused or failed request (401, 403, 503...)."""
    hint = ""
    if status in (401, 403):
        hint = "<p>Log in to Airflow first; these pages use Airflow's own authentication.</p>"
    return _page(f"Carbon: {status}", f"<h1>Carbon</h1><p class=\"error\">{status}: {escape(message)}</p>{hint}")


def _task_href(base: str, row: Mapping[str, Any]) -> str:
    query = urlencode({"dag_id": row["dag_id"], "run_id": row["run_id"], "task_id": row["task_id"],
                       "map_index": row.get("map_index", -1)})
    return f"{base}task?{query}"


# -- the chart -----------------------------------------------------------------------------


def _notes(notes: Sequence[str], element_id: str) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f'<ul class="small muted" id="{element_id}">{items}</ul>'


def task_timeline_section(task: TaskTimeline, colours: Mapping[str, str]) -> str:
    """Return the task page's timeline: the chart, then what it could not draw and why."""
    return ("<section id=\"carbon-task-timeline-section\"><h2>Timeline</h2>" + task_timeline_svg(task, colours)
            + _notes(task.notes, "carbon-task-timeline-notes") + "</section>")


def _objectives(verdicts: Iterable[Mapping[str, Any]]) -> str:
    items = [f"<li>{_mark(v['met'])} {escape(str(v['description']))}: actual {_num(v['actual'], '{:.1f} %')} "
             f"over {int(v['runs'])} runs</li>" for v in verdicts]
    return f"<ul id=\"carbon-objectives\">{''.join(items)}</ul>" if items else "<p class=\"muted\">No objectives configured.</p>"


def _clusters_table(clusters: Sequence[Mapping[str, Any]]) -> str:
    if not clusters:
        return ("<p class=\"muted\" id=\"carbon-no-clusters\">No Kubernetes connection names a grid zone "
                "(extra <code>carbon_zone</code>).</p>")
    rows = []
    for c in clusters:
        if c.get("status") == "ok":
            forecast = c.get("forecast") or []
            low = min(forecast, key=lambda p: p["value"]) if forecast else None
            status = (f"{_num(c['current']['value'], '{:.0f}')} g/kWh now ({escape(str(c.get('kind')))}, "
                      f"{escape(str(c.get('source')))})")
            lowest = f"{_num(low['value'], '{:.0f}')} g/kWh at {escape(str(low['start'])[11:16])} UTC" if low else "–"
        else:
            status = f"<span class=\"error\">error: {escape(str(c.get('error')))}</span>"
            lowest = "–"
        reserved = c.get("reserved") or {}
        held = f"{_num(reserved.get('peak_pods'), '{:.0f}')} pods" if reserved else "–"
        rows.append(f"<tr data-cluster=\"{escape(str(c['conn_id']))}\" data-status=\"{escape(str(c.get('status')))}\">"
                    f"<td>{_text(c['conn_id'])}</td><td>{_text(c['zone'])}</td><td>{_text(c['carbon_conn_id'])}</td>"
                    f"<td>{status}</td><td>{lowest}</td><td class=\"num\">{held}</td></tr>")
    return ("<table id=\"carbon-clusters\"><tr><th>cluster</th><th>zone</th><th>carbon connection</th>"
            "<th>intensity</th><th>lowest in forecast</th><th class=\"num\">reserved, peak in 48 h</th></tr>"
            f"{''.join(rows)}</table>")


def forecast_skill_section(skill: Mapping[str, Any] | None) -> str:
    """Return the page's forecast-skill section: error by lead time per source, zone and signal kind."""
    head = ("<h2>Forecast skill</h2><p class=\"muted small\">How wrong the forecasts the hooks fetched were, by how "
            "far ahead they looked: mean absolute percentage error and bias (positive: too high) against the "
            "realised values, taken from later forecasts' lead-0 values. Average and marginal are never "
            "compared.</p>")
    if skill is None:
        return head + "<p class=\"muted\">Not available: the ledger cannot be read.</p>"
    if not skill.get("rows"):
        return head + (f"<p class=\"muted\" id=\"carbon-forecast-skill-empty\">No forecast to compare since "
                       f"{_text(skill.get('since'))} ({int(skill.get('forecasts') or 0)} recorded).</p>")
    rows = [f"<tr data-zone=\"{escape(str(r['zone']))}\" data-lead=\"{escape(str(r['lead']))}\">"
            f"<td>{_text(r['source'])}</td><td>{_text(r['zone'])}</td><td>{_text(r['signal_kind'])}</td>"
            f"<td>{_text(r['lead'])}</td><td class=\"num\">{int(r['n'])}</td>"
            f"<td class=\"num\">{_num(r['mape_pct'])} %</td><td class=\"num\">{_num(r['bias_pct'], '{:+.1f}')} %</td>"
            f"<td class=\"num\">{_num(r['mae_g'])}</td></tr>" for r in skill["rows"]]
    return head + ("<table id=\"carbon-forecast-skill\"><tr><th>source</th><th>zone</th><th>signal</th><th>lead</th>"
                   "<th class=\"num\">intervals</th><th class=\"num\">MAPE</th><th class=\"num\">bias</th>"
                   f"<th class=\"num\">MAE g/kWh</th></tr>{''.join(rows)}</table>"
                   f"<p class=\"muted small\">Forecasts issued since {_text(skill.get('since'))}: "
                   f"{int(skill.get('forecasts') or 0)}.</p>")


def timeline_clusters(tasks: Sequence[TaskTimeline], curves: Sequence[Curve] = ()) -> list[str]:
    """Return the connections timelines draw, in drawing order: the clusters :func:`colours_for` adds."""
    return [*(c.cluster for c in curves), *(c.cluster for t in tasks for c in t.curves),
            *(t.cluster for t in tasks), *(t.home_cluster for t in tasks)]


def dag_run_section(section: Mapping[str, Any] | None, clusters: Sequence[Mapping[str, Any]]) -> str:
    """Return the Carbon page's DAG-run section: a picker of recent runs and the picked run's timeline."""
    head = ("<h2>DAG run timeline</h2><p class=\"muted small\">Every carbon-aware "
            "task of one DAG run: its wait (thin line), planned window (dashed outline) and run (bar, in its "
            "cluster's colour), grouped by cluster, over the candidates' intensity (dashed: the forecast in force "
            "at the decision; solid: realised). Each task's name opens its task page.</p>")
    if section is None:
        return f"<section id=\"carbon-dagrun-section\">{head}<p class=\"muted\">Not available: the ledger cannot be read.</p></section>"
    choices = section.get("choices") or []
    selected = section.get("selected")
    parts = ["<section id=\"carbon-dagrun-section\">", head]
    if choices:
        options = []
        for c in choices:
            value = f"{c['dag_id']}/{c['run_id']}"
            chosen = " selected" if selected == (c["dag_id"], c["run_id"]) else ""
            options.append(f"<option value=\"{escape(value)}\"{chosen}>{escape(str(c['dag_id']))} · "
                           f"{escape(str(c['run_id']))} ({int(c['tasks'])} task{'s' if c['tasks'] != 1 else ''})"
                           "</option>")
        parts.append("<form method=\"get\" action=\"#carbon-dagrun-section\" id=\"carbon-dagrun-form\">"
                     "<label>DAG run <select name=\"dag_run\">" + "".join(options) + "</select></label> "
                     "<button type=\"submit\">Show</button></form>")
    if section.get("error"):
        parts.append(f"<p class=\"error\" id=\"carbon-dagrun-error\">{escape(str(section['error']))}</p>")
    run: DagRunTimeline | None = section.get("timeline")
    if run is not None:
        colours = colours_for(clusters, timeline_clusters(run.tasks, run.curves))
        if not any(selected == (c["dag_id"], c["run_id"]) for c in choices):  # not among the newest: name it
            parts.append(f"<p class=\"small\">{escape(run.dag_id)} · {escape(run.run_id)}</p>")
        parts.append(dag_run_timeline_svg(run, colours) + _notes(run.notes, "carbon-dagrun-timeline-notes"))
    elif not choices and not section.get("error"):
        parts.append("<p class=\"muted\" id=\"carbon-dagrun-none\">No carbon-aware task recorded yet.</p>")
    parts.append("</section>")
    return "".join(parts)


def overview_page(summary: Mapping[str, Any] | None, recent: Mapping[str, Any] | None,
                  clusters: Mapping[str, Any], *, ledger_error: str | None = None,
                  skill: Mapping[str, Any] | None = None, dag_runs: Mapping[str, Any] | None = None) -> str:
    """Return the Carbon page: savings per DAG, SLO attainment, a DAG run's timeline, intensity per cluster, recent runs.

    :param dag_runs: the DAG-run section: ``choices`` (from
        :func:`~airflow_carbon_provider.plugins.data.dag_run_choices`), ``selected`` (dag_id,
        run_id), its ``timeline`` and an ``error``; None leaves the section out.
    """
    body = ["<h1>Carbon</h1>",
            "<p class=\"muted small\">What carbon-aware scheduling emitted and saved (saving: the same task on its "
            "home cluster at its original start), whether the objectives are met, and the grid now.</p>"]
    if ledger_error or summary is None:
        body.append(f"<p class=\"error\" id=\"carbon-ledger-error\">The ledger cannot be read: "
                    f"{escape(ledger_error or 'unknown error')}</p>")
    else:
        body.append("<div class=\"cards\" id=\"carbon-totals\">"
                    f"<div class=\"card\"><div class=\"muted small\">task runs</div><div class=\"v\">{int(summary['runs'])}</div></div>"
                    f"<div class=\"card\"><div class=\"muted small\">objectives</div><div class=\"v\">{_mark(summary['objectives_met'])}</div></div>"
                    "</div>")
        kinds = []
        for t in summary["totals"]:
            label = f"{t['signal_kind']}/{t['basis']}"
            kinds.append(f"<tr data-kind=\"{escape(label)}\">{_kind_cells(t)}</tr>")
        body.append("<h2>Totals per signal kind and basis</h2><p class=\"muted small\">Average and marginal "
                    "intensities, and figures from realised history and from forecasts, are different quantities: "
                    "each has its own total, and none is added to another.</p>"
                    "<table id=\"carbon-kind-totals\"><tr><th>signal</th><th>basis</th><th class=\"num\">runs</th>"
                    "<th class=\"num\">emitted g</th><th class=\"num\">baseline g</th><th class=\"num\">saved g</th>"
                    f"<th class=\"num\">saved</th></tr>{''.join(kinds)}</table>")
        body.append("<h2>Sustainability objectives</h2>" + _objectives(summary["objectives"]))
        rows = []
        for d in summary["dags"]:
            label = f"{d['signal_kind']}/{d['basis']}"
            rows.append(f"<tr data-dag=\"{escape(str(d['dag_id']))}\" data-kind=\"{escape(label)}\"><td>{_text(d['dag_id'])}</td>"
                        f"{_kind_cells(d)}"
                        f"<td class=\"num\">{_num(None if d['mean_delay_s'] is None else d['mean_delay_s'] / 3600, '{:.2f}')}</td>"
                        f"<td>{_mark(d['objectives_met'])}</td></tr>")
        table = ("<table id=\"carbon-dags\"><tr><th>DAG</th><th>signal</th><th>basis</th><th class=\"num\">runs</th>"
                 "<th class=\"num\">emitted g</th>"
                 "<th class=\"num\">baseline g</th><th class=\"num\">saved g</th><th class=\"num\">saved</th>"
                 f"<th class=\"num\">mean delay h</th><th>objectives</th></tr>{''.join(rows)}</table>")
        body.append("<h2>Savings per DAG</h2>" + (table if rows else "<p class=\"muted\">No runs recorded yet.</p>"))
        if dag_runs is not None:
            body.append(dag_run_section(dag_runs, clusters.get("clusters") or []))
    horizon = clusters.get("horizon_h")
    body.append(f"<h2>Grid intensity per cluster: now and the next {_num(horizon, '{:.0f}')} h</h2>")
    body.append(intensity_chart_svg(clusters.get("clusters") or []))
    body.append("<h3>Reserved by carbon-aware tasks: the next 48 h</h3>")
    if clusters.get("reserved_error"):
        body.append(f"<p class=\"error\" id=\"carbon-reserved-error\">Reservations not readable: "
                    f"{escape(str(clusters['reserved_error']))}</p>")
    else:
        body.append(reserved_chart_svg(clusters.get("clusters") or []))
    body.append(_clusters_table(clusters.get("clusters") or []))
    if not ledger_error:
        body.append(forecast_skill_section(skill))
    if recent and recent.get("rows"):
        rows = []
        for r in recent["rows"]:
            rows.append(f"<tr><td>{_text(r['dag_id'])}</td><td><a href=\"{escape(_task_href('', r))}\">"
                        f"{_text(r['task_id'])}</a></td><td class=\"small\">{_text(r['run_id'])}</td>"
                        f"<td>{_text(r.get('state'))}</td><td>{_text(r.get('cluster'))}</td>"
                        f"<td class=\"small\">{_text(r.get('actual_start'))}</td>"
                        f"<td class=\"num\">{_num(r.get('saving_g'))}</td><td>{_text(r.get('deadline_met'))}</td></tr>")
        body.append(f"<h2>Recent task runs</h2><table id=\"carbon-runs\"><tr><th>DAG</th><th>task</th><th>run</th>"
                    "<th>state</th><th>cluster</th><th>started</th><th class=\"num\">saved g</th><th>deadline met</th>"
                    f"</tr>{''.join(rows)}</table>")
    if summary is not None:
        body.append(f"<p class=\"muted small\">Ledger: {escape(str(summary.get('ledger')))} · "
                    f"forecast fetched {escape(str(clusters.get('generated_at')))}</p>")
    return _page("Carbon", "".join(body))


_DECISION_FIELDS = (
    ("policy", "policy"), ("chosen_cluster", "chosen cluster"), ("zone", "zone"), ("home_cluster", "home cluster"),
    ("home_zone", "home zone"), ("arrival", "arrived"), ("planned_start", "planned start"),
    ("latest_start", "latest start"), ("deadline", "deadline"), ("waited", "waited"),
    ("expected_intensity", "expected intensity g/kWh"), ("baseline_intensity", "baseline intensity g/kWh"),
    ("expected_saving_pct", "expected saving %"), ("fail_open", "failed open"), ("reason", "reason"),
)
_OUTCOME_FIELDS = (
    ("state", "state"), ("cluster", "ran on"), ("zone", "zone"), ("actual_start", "started"),
    ("actual_end", "ended"), ("delay_s", "delay s"), ("energy_kwh", "energy kWh"),
    ("realised_intensity", "realised intensity g/kWh"), ("baseline_intensity", "baseline intensity g/kWh"),
    ("emissions_g", "emitted g"), ("baseline_emissions_g", "baseline g"), ("saving_g", "saved g"),
    ("saving_pct", "saved %"), ("intensity_source", "intensities from"), ("started_by_latest_start", "on time"),
    ("deadline_met", "deadline met"), ("fallback_used", "fell back"),
)


def _fields(record: Mapping[str, Any], fields: Sequence[tuple[str, str]], element_id: str) -> str:
    items = []
    for key, label in fields:
        value = record.get(key)
        shown = _num(value, "{:,.3f}") if isinstance(value, float) else _text(value)
        items.append(f"<dt>{escape(label)}</dt><dd data-field=\"{key}\">{shown}</dd>")
    return f"<dl id=\"{element_id}\">{''.join(items)}</dl>"


def task_page(record: Mapping[str, Any], *, ledger_error: str | None = None, timeline: TaskTimeline | None = None,
              colours: Mapping[str, str] | None = None, timeline_error: str | None = None) -> str:
    """Return the task-instance page: the latest try's timeline, carbon decision and outcome."""
    title = f"{record['dag_id']} · {record['task_id']}"
    mapped = f" [{int(record['map_index'])}]" if int(record["map_index"]) >= 0 else ""
    body = [f"<h1>Carbon decision: {escape(title)}{mapped}</h1>",
            f"<p class=\"muted small\">run {escape(str(record['run_id']))}</p>"]
    if ledger_error:
        body.append(f"<p class=\"error\" id=\"carbon-ledger-error\">The ledger cannot be read: {escape(ledger_error)}</p>")
        return _page(title, "".join(body))
    if not record.get("found"):
        body.append("<p id=\"carbon-task-none\">No carbon decision is recorded for this task instance: it is not "
                    "carbon-aware, or it has not been decided yet.</p>")
        return _page(title, "".join(body))
    tries = record.get("tries") or []
    body.append(f"<p class=\"small\">try {int(record['try_number'])}"
                + (f" of tries {', '.join(str(int(t)) for t in tries)}" if len(tries) > 1 else "") + "</p>")
    decision, outcome = record.get("decision"), record.get("outcome")
    if outcome:
        body.append("<div class=\"cards\" id=\"carbon-task-summary\">"
                    f"<div class=\"card\"><div class=\"muted small\">emitted</div><div class=\"v\">{_num(outcome.get('emissions_g'))} g</div></div>"
                    f"<div class=\"card\"><div class=\"muted small\">saved</div><div class=\"v\">{_num(outcome.get('saving_g'))} g"
                    f" ({_num(outcome.get('saving_pct'), '{:.1f} %')})</div></div>"
                    f"<div class=\"card\"><div class=\"muted small\">deadline</div><div class=\"v\">"
                    f"{_mark(outcome.get('deadline_met'))}</div></div></div>")
    if timeline is not None:
        body.append(task_timeline_section(timeline, colours or colours_for([], timeline_clusters([timeline]))))
    elif timeline_error:
        body.append(f"<h2>Timeline</h2><p class=\"error\" id=\"carbon-task-timeline-error\">Not drawn: "
                    f"{escape(timeline_error)}</p>")
    body.append("<h2>Decision</h2>" + (_fields(decision, _DECISION_FIELDS, "carbon-decision") if decision
                                       else "<p class=\"muted\">No decision recorded.</p>"))
    body.append("<h2>Outcome</h2>" + (_fields(outcome, _OUTCOME_FIELDS, "carbon-outcome") if outcome
                                      else "<p class=\"muted\" id=\"carbon-outcome-none\">Not finished yet.</p>"))
    notes = (outcome or {}).get("notes") or []
    if notes:
        body.append("<ul class=\"small muted\">" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    body.append(f"<p class=\"muted small\">Ledger: {escape(str(record.get('ledger')))}</p>")
    return _page(title, "".join(body))
