"""Server-rendered HTML of the Carbon pages: no script, no stylesheet or font from the network.

The pages are shown inside Airflow's UI (an external view is an iframe) and on their own (the
operator extra link opens the task page in a new tab), so every link here is relative to the
page itself. Every value from the ledger or a connection is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import urlencode

__all__ = ["error_page", "forecast_skill_section", "intensity_chart_svg", "overview_page", "reserved_chart_svg",
           "task_page"]

PALETTE = ("#2e7d32", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64")
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


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


LegendItem = tuple[str, str, str]
"""A legend entry: swatch (``box``, ``line``, ``dash``, ``band``, ``thin``), colour and label (unescaped)."""
GRID, MUTED = "#eaeef2", "#656d76"
LEGEND_CHARS = 24
"""A legend label longer than this is cut (the whole label stays in its tooltip)."""


@dataclass(frozen=True)
class _Frame:
    """What every chart shares: the plot area and its scales, the value grid, time ticks, caption and legend.

    The legend sits in the right margin, one entry per 18 px; :meth:`legend_height` says how
    tall the chart must be for it to fit.
    """

    width: int
    height: int
    t0: float
    t1: float
    v_max: float
    plot_h: int
    left: int = 56
    right: int = 150
    top: int = 12

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def bottom(self) -> int:
        """Return the y of the plot's bottom edge."""
        return self.top + self.plot_h

    def x(self, t: float) -> float:
        return self.left + self.plot_w * (t - self.t0) / max(self.t1 - self.t0, 1.0)

    def y(self, v: float) -> float:
        return self.top + self.plot_h * (1.0 - v / (self.v_max or 1.0))

    def open(self, element_id: str, title: str, desc: str | None = None) -> str:
        """Return the ``<svg>`` start tag with its accessible title (and description)."""
        described = f"<desc>{escape(desc)}</desc>" if desc else ""
        return (f'<svg id="{element_id}" role="img" xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
                f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" font-size="11" '
                f'font-family="sans-serif"><title>{escape(title)}</title>{described}')

    def value_grid(self, lines: int) -> str:
        """Return ``lines`` horizontal grid lines from 0 to the top value, labelled on the left."""
        parts = []
        for i in range(lines):
            v = self.v_max * i / (lines - 1)
            parts.append(f'<line x1="{self.left}" x2="{self.left + self.plot_w}" y1="{self.y(v):.1f}" '
                         f'y2="{self.y(v):.1f}" stroke="{GRID}"/><text x="{self.left - 6}" y="{self.y(v) + 4:.1f}" '
                         f'text-anchor="end" fill="{MUTED}">{v:.0f}</text>')
        return "".join(parts)

    def time_ticks(self, step_s: int, fmt: str, *, first: int, grid: bool = True, label_y: float | None = None,
                   grid_to: float | None = None) -> str:
        """Return time labels every ``step_s`` from ``first`` (UTC), with light vertical grid lines if ``grid``."""
        parts = []
        label_y = self.bottom + 14 if label_y is None else label_y
        for tick in range(first, int(self.t1) + 1, step_s):
            if tick < self.t0:
                continue
            label = datetime.fromtimestamp(tick, tz=timezone.utc).strftime(fmt)
            if grid:
                parts.append(f'<line x1="{self.x(tick):.1f}" x2="{self.x(tick):.1f}" y1="{self.top}" '
                             f'y2="{grid_to or self.bottom}" stroke="#f3f4f6"/>')
            parts.append(f'<text x="{self.x(tick):.1f}" y="{label_y:.0f}" text-anchor="middle" fill="{MUTED}">'
                         f"{label}</text>")
        return "".join(parts)

    def caption(self, text: str) -> str:
        """Return the line under the chart that names its units."""
        return f'<text x="{self.left}" y="{self.height - 4}" fill="{MUTED}">{escape(text)}</text>'

    @staticmethod
    def legend_height(entries: int, top: int = 12) -> int:
        """Return the chart height a legend of ``entries`` needs."""
        return top + 18 * entries + 8

    def legend(self, entries: Sequence[LegendItem]) -> str:
        """Return the legend in the right margin: a swatch and a label per entry, 18 px apart."""
        parts = ['<g class="legend">']
        x0 = self.left + self.plot_w + 12
        for i, (swatch, colour, label) in enumerate(entries):
            ly = self.top + 14 + 18 * i
            if swatch == "box":
                parts.append(f'<rect x="{x0}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
            elif swatch == "band":
                parts.append(f'<rect x="{x0}" y="{ly - 9}" width="12" height="12" fill="{colour}" fill-opacity="0.18" '
                             f'stroke="{colour}" stroke-dasharray="2 2"/>')
            else:
                dash = ' stroke-dasharray="5 3"' if swatch == "dash" else ""
                stroke = 1.5 if swatch == "thin" else 2.5
                parts.append(f'<line x1="{x0}" x2="{x0 + 12}" y1="{ly - 3}" y2="{ly - 3}" stroke="{colour}" '
                             f'stroke-width="{stroke}"{dash}/>')
            shown = label if len(label) <= LEGEND_CHARS else label[:LEGEND_CHARS - 1] + "…"
            parts.append(f'<text x="{x0 + 18}" y="{ly + 1}"><title>{escape(label)}</title>{escape(shown)}</text>')
        parts.append("</g>")
        return "".join(parts)


def colour_of(clusters: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Return each cluster's colour, by its place in the page's list: the same in every chart."""
    return {str(c["conn_id"]): PALETTE[i % len(PALETTE)] for i, c in enumerate(clusters)}


def intensity_chart_svg(clusters: Sequence[Mapping[str, Any]], *, width: int = 760, height: int = 300) -> str:
    """Return an SVG step chart of each cluster's forecast, its current value marked by a dot."""
    ok = [c for c in clusters if c.get("status") == "ok" and c.get("forecast")]
    if not ok:
        return ('<p class="muted" id="carbon-intensity-chart-empty">No cluster has a forecast to chart '
                "(see the table below).</p>")
    starts = [_parse(p["start"]).timestamp() for c in ok for p in c["forecast"]]
    ends = [_parse(p["end"]).timestamp() for c in ok for p in c["forecast"]]
    values = [float(p["value"]) for c in ok for p in c["forecast"]]
    values += [float(c["current"]["value"]) for c in ok if c.get("current")]
    t0, t1 = min(starts), max(ends)
    frame = _Frame(width, height, t0, max(t1, t0 + 1.0), max(values) * 1.1 or 1.0, plot_h=height - 12 - 34)
    x, y = frame.x, frame.y
    hours = (t1 - t0) / 3600.0
    step = 1 if hours <= 8 else (3 if hours <= 30 else 6)
    parts = [frame.open("carbon-intensity-chart", "Carbon intensity now and forecast per cluster, g CO2eq/kWh"),
             frame.value_grid(5), frame.time_ticks(step * 3600, "%H:%M", first=int(t0 // 3600 + 1) * 3600),
             frame.caption("UTC; g CO2eq/kWh")]
    colours = colour_of(clusters)
    legend: list[LegendItem] = []
    for cluster in ok:
        colour = colours[str(cluster["conn_id"])]
        points = []
        for p in cluster["forecast"]:
            v = y(float(p["value"]))
            points.append(f"{x(_parse(p['start']).timestamp()):.1f},{v:.1f}")
            points.append(f"{x(_parse(p['end']).timestamp()):.1f},{v:.1f}")
        name = escape(f"{cluster['conn_id']} ({cluster['zone']})")
        parts.append(f'<polyline class="forecast" data-cluster="{escape(str(cluster["conn_id"]))}" fill="none" '
                     f'stroke="{colour}" stroke-width="2" points="{" ".join(points)}"><title>{name}</title></polyline>')
        current = cluster.get("current")
        if current:
            t = min(max(_parse(current["start"]).timestamp(), t0), t1)
            parts.append(f'<circle class="current" cx="{x(t):.1f}" cy="{y(float(current["value"])):.1f}" r="4.5" '
                         f'fill="{colour}"><title>{name} now: {float(current["value"]):.0f} g/kWh</title></circle>')
        legend.append(("box", colour, f"{cluster['conn_id']} ({cluster['zone']})"))
    parts.append(frame.legend(legend))
    parts.append("</svg>")
    return "".join(parts)


def reserved_chart_svg(clusters: Sequence[Mapping[str, Any]], *, width: int = 760, height: int = 200) -> str:
    """Return an SVG step chart of each cluster's reserved pods over the next 48 h (fleet coordination)."""
    shown = [c for c in clusters if (c.get("reserved") or {}).get("points")]
    if not any((c["reserved"].get("peak_pods") or 0) > 0 for c in shown):
        return ('<p class="muted" id="carbon-reserved-chart-empty">No carbon-aware task holds a reservation in the '
                "next 48 h.</p>")
    starts = [_parse(p["start"]).timestamp() for c in shown for p in c["reserved"]["points"]]
    step = (starts[1] - starts[0]) if len(starts) > 1 else 3600.0
    t0, t1 = min(starts), max(starts) + step
    frame = _Frame(width, height, t0, t1, max(float(c["reserved"]["peak_pods"]) for c in shown) * 1.15 or 1.0,
                   plot_h=height - 12 - 34)
    x, y = frame.x, frame.y
    parts = [frame.open("carbon-reserved-chart", "Pods reserved by carbon-aware tasks per cluster, next 48 h"),
             frame.value_grid(3), frame.time_ticks(6 * 3600, "%d %H:%M", first=int(t0), grid=False),
             frame.caption("UTC; pods reserved (peak per hour)")]
    colours = colour_of(clusters)
    legend: list[LegendItem] = []
    for cluster in shown:
        colour = colours[str(cluster["conn_id"])]
        points = []
        for p in cluster["reserved"]["points"]:
            t, v = _parse(p["start"]).timestamp(), y(float(p["pods"]))
            points.append(f"{x(t):.1f},{v:.1f} {x(t + step):.1f},{v:.1f}")
        name = escape(f"{cluster['conn_id']} ({cluster['zone']})")
        parts.append(f'<polyline class="reserved" data-cluster="{escape(str(cluster["conn_id"]))}" fill="none" '
                     f'stroke="{colour}" stroke-width="2" points="{" ".join(points)}"><title>{name}: peak '
                     f'{float(cluster["reserved"]["peak_pods"]):.0f} pods</title></polyline>')
        legend.append(("box", colour, f"{cluster['conn_id']} ({cluster['zone']})"))
    parts.append(frame.legend(legend))
    parts.append("</svg>")
    return "".join(parts)


# -- pages ---------------------------------------------------------------------------------


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


def overview_page(summary: Mapping[str, Any] | None, recent: Mapping[str, Any] | None,
                  clusters: Mapping[str, Any], *, ledger_error: str | None = None,
                  skill: Mapping[str, Any] | None = None) -> str:
    """Return the Carbon page: savings per DAG, SLO attainment, intensity per cluster, recent runs."""
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


def task_page(record: Mapping[str, Any], *, ledger_error: str | None = None) -> str:
    """Return the task-instance page: the latest try's carbon decision and outcome."""
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
    body.append("<h2>Decision</h2>" + (_fields(decision, _DECISION_FIELDS, "carbon-decision") if decision
                                       else "<p class=\"muted\">No decision recorded.</p>"))
    body.append("<h2>Outcome</h2>" + (_fields(outcome, _OUTCOME_FIELDS, "carbon-outcome") if outcome
                                      else "<p class=\"muted\" id=\"carbon-outcome-none\">Not finished yet.</p>"))
    notes = (outcome or {}).get("notes") or []
    if notes:
        body.append("<ul class=\"small muted\">" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    body.append(f"<p class=\"muted small\">Ledger: {escape(str(record.get('ledger')))}</p>")
    return _page(title, "".join(body))
