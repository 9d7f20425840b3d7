"""The Carbon pages' charts as inline SVG: one shared frame (scales, grid, time ticks, legend).

Intensity forecasts and reserved load per cluster, a task's timeline and a DAG run's; every
label is escaped. :mod:`~airflow_carbon_provider.plugins.views` places them in the pages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from airflow_carbon_provider.plugins.timeline import Curve, DagRunTimeline, TaskTimeline

__all__ = ["colour_of", "colours_for", "dag_run_timeline_svg", "intensity_chart_svg", "reserved_chart_svg",
           "task_timeline_svg"]

PALETTE = ("#2e7d32", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64")

def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


LegendItem = tuple[str, str, str]
"""A legend entry: swatch (``box``, ``line``, ``dash``, ``band``, ``thin``, ``tri``), colour and label (unescaped)."""
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
                f'font-family="sans-serif" style="max-width:100%;height:auto">'  # shrinks in a narrow iframe
                f"<title>{escape(title)}</title>{described}")

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
            elif swatch == "tri":
                parts.append(f'<path d="M{x0 + 6},{ly + 1} l5,-8 h-10 z" fill="{colour}"/>')
            elif swatch == "band":
                parts.append(f'<rect x="{x0}" y="{ly - 9}" width="12" height="12" fill="{colour}" fill-opacity="0.18" '
                             f'stroke="{colour}" stroke-dasharray="2 2"/>')
            else:
                dash = ' stroke-dasharray="5 3"' if swatch == "dash" else ""
                stroke = 1.5 if swatch == "thin" else 2.5
                parts.append(f'<line x1="{x0}" x2="{x0 + 12}" y1="{ly - 3}" y2="{ly - 3}" stroke="{colour}" '
                             f'stroke-width="{stroke}"{dash}/>')
            if len(label) <= LEGEND_CHARS:
                parts.append(f'<text x="{x0 + 18}" y="{ly + 1}">{escape(label)}</text>')
            else:  # cut, with the whole label as its tooltip
                parts.append(f'<text x="{x0 + 18}" y="{ly + 1}"><title>{escape(label)}</title>'
                             f"{escape(label[:LEGEND_CHARS - 1])}…</text>")
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


# -- timelines ------------------------------------------------------------------------------

WAIT_COLOUR, DEADLINE_COLOUR, NOW_COLOUR = "#8c959f", "#b42318", "#1f2328"
CHAR_W = 6.2
"""Rough width of one 11 px sans-serif character, to keep labels from running into each other."""


def colours_for(clusters: Sequence[Mapping[str, Any]], more: Iterable[str] = ()) -> dict[str, str]:
    """Return :func:`colour_of` for the page's clusters, then a colour for each other connection in ``more``."""
    known = [str(c["conn_id"]) for c in clusters]
    extra = [c for c in dict.fromkeys(more) if c not in known]
    return colour_of([{"conn_id": c} for c in [*known, *extra]])


def _hm(moment: datetime | None) -> str:
    return "–" if moment is None else moment.astimezone(timezone.utc).strftime("%d %b %H:%M")


def _span(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _planned_span(task: TaskTimeline) -> str:
    if task.planned_end <= task.planned_start:
        return f"start at {_hm(task.planned_start)} UTC"
    return f"{_hm(task.planned_start)}–{task.planned_end.strftime('%H:%M')} UTC"


def _time_step(span_s: float, width: float) -> tuple[int, str]:
    """Return a tick step (seconds) and label format that leave room for each label."""
    fmt = "%H:%M" if span_s <= 36 * 3600 else "%d %H:%M"
    room = max(1, int(width // (70 if fmt == "%H:%M" else 90)))
    for hours in (0.25, 0.5, 1, 2, 3, 6, 12, 24, 48):
        if span_s / (hours * 3600) <= room:
            return int(hours * 3600), fmt
    return 7 * 86400, "%d %b"


def _curve_svg(frame: _Frame, curve: Curve, colour: str) -> str:
    points = []
    for lo, hi, value in curve.points:
        v = frame.y(float(value))
        points.append(f"{frame.x(lo.timestamp()):.1f},{v:.1f} {frame.x(hi.timestamp()):.1f},{v:.1f}")
    dash = ' stroke-dasharray="5 3"' if curve.kind == "forecast" else ""
    what = (f"forecast issued {_hm(curve.issued_at)} UTC (in force at the decision)" if curve.kind == "forecast"
            else "realised (lead-0 values of later forecasts)")
    low = min(float(p[2]) for p in curve.points)
    high = max(float(p[2]) for p in curve.points)
    return (f'<polyline class="curve {curve.kind}" data-cluster="{escape(curve.cluster)}" '
            f'data-zone="{escape(str(curve.zone))}" fill="none" stroke="{colour}" '
            f'stroke-width="{1.6 if curve.kind == "forecast" else 2.2}"{dash} points="{" ".join(points)}">'
            f"<title>{escape(curve.key)} ({escape(str(curve.zone))}): {what}, {low:.0f}–{high:.0f} g/kWh"
            "</title></polyline>")


def _top_labels(frame: _Frame, labels: Sequence[tuple[float, str, str, str]]) -> str:
    """Return labels above the plot, each left of its line; one that would overlap its neighbour is left out."""
    parts, right_edge = [], float(frame.left) - 4
    for t, text, colour, cls in sorted(labels):
        x = frame.x(t)
        width = CHAR_W * len(text)
        if x - 3 - width < right_edge + 4 or x - 3 - width < 0:
            continue
        parts.append(f'<text class="{cls}-label" x="{x - 3:.1f}" y="{frame.top - 5}" text-anchor="end" '
                     f'fill="{colour}">{escape(text)}</text>')
        right_edge = x - 3
    return "".join(parts)


def _vline(frame: _Frame, t: float, y2: float, colour: str, cls: str, dash: str, title: str) -> str:
    return (f'<line class="{cls}" x1="{frame.x(t):.1f}" x2="{frame.x(t):.1f}" y1="{frame.top}" y2="{y2:.1f}" '
            f'stroke="{colour}" stroke-width="1.2" stroke-dasharray="{dash}"><title>{escape(title)}</title></line>')


def _lane_svg(frame: _Frame, task: TaskTimeline, colours: Mapping[str, str], y0: float, height: float,
              marker_tip: float, short_labels: bool = False) -> str:
    """Return one task's lane: the wait (a thin line), the planned window's outline, the run bar and the markers.

    Markers are small triangles pointing down at ``marker_tip``; with ``short_labels``, those
    that have one (the re-plans) are printed beside them.
    """
    mid = y0 + height / 2
    parts = []
    planned_colour = colours.get(task.planned_cluster, WAIT_COLOUR)
    px0, px1 = frame.x(task.planned_start.timestamp()), frame.x(task.planned_end.timestamp())
    planned = f"planned: {task.planned_cluster} ({task.planned_zone}) {_planned_span(task)}"
    wx0, wx1 = frame.x(task.arrival.timestamp()), frame.x(task.wait_until.timestamp())
    waited = (task.wait_until - task.arrival).total_seconds()
    wait_title = (f"waiting since {_hm(task.arrival)} UTC ({_span(waited)} so far)" if task.status == "waiting"
                  else f"arrived {_hm(task.arrival)} UTC; no start recorded" if task.run is None
                  else f"waited {_span(waited)}: arrived {_hm(task.arrival)}, started {_hm(task.wait_until)} UTC")
    parts.append(f'<line class="wait" x1="{wx0:.1f}" x2="{max(wx1, wx0 + 1):.1f}" y1="{mid:.1f}" y2="{mid:.1f}" '
                 f'stroke="{WAIT_COLOUR}" stroke-width="2"><title>{escape(wait_title)}</title></line>'
                 f'<circle class="arrival" cx="{wx0:.1f}" cy="{mid:.1f}" r="3" fill="{WAIT_COLOUR}">'
                 f"<title>arrived {_hm(task.arrival)} UTC</title></circle>")
    if px1 - px0 >= 4:
        parts.append(f'<rect class="planned" x="{px0:.1f}" y="{y0 + 2:.1f}" width="{px1 - px0:.1f}" '
                     f'height="{height - 4:.1f}" fill="none" stroke="{planned_colour}" stroke-dasharray="3 2">'
                     f"<title>{escape(planned)}</title></rect>")
    else:  # no expected duration: the planned start alone, as a hollow diamond
        parts.append(f'<path class="planned" d="M{px0:.1f},{mid - 6:.1f} l6,6 l-6,6 l-6,-6 z" fill="#fff" '
                     f'stroke="{planned_colour}" stroke-width="1.5"><title>{escape(planned)} (no expected duration '
                     "recorded)</title></path>")
    run = task.run
    if run is not None:
        end = run.end or task.drawn_until
        rx0, rx1 = frame.x(run.start.timestamp()), frame.x(end.timestamp())
        colour = colours.get(run.cluster, WAIT_COLOUR)
        name = f"{run.cluster} ({run.zone})" if run.zone else run.cluster
        title = (f"ran on {name} {_hm(run.start)}–{end.strftime('%H:%M')} UTC ({run.state or 'finished'})"
                 if run.end else f"started on {name} at {_hm(run.start)} UTC; no end recorded")
        opacity = "1" if run.end else "0.55"  # still running: lighter
        parts.append(f'<rect class="run" data-cluster="{escape(run.cluster)}" x="{rx0:.1f}" y="{y0 + 4:.1f}" '
                     f'width="{max(rx1 - rx0, 3):.1f}" height="{height - 8:.1f}" rx="2" fill="{colour}" '
                     f'fill-opacity="{opacity}"><title>{escape(title)}</title></rect>')
        width = CHAR_W * len(name)
        if rx1 - rx0 >= width + 8:
            parts.append(f'<text class="run-label" x="{(rx0 + rx1) / 2:.1f}" y="{mid + 4:.1f}" text-anchor="middle" '
                         f'fill="#fff">{escape(name)}</text>')
        elif rx1 + 4 + width <= frame.left + frame.plot_w:
            parts.append(f'<text class="run-label" x="{rx1 + 4:.1f}" y="{mid + 4:.1f}" fill="{colour}">'
                         f"{escape(name)}</text>")
        else:
            parts.append(f'<text class="run-label" x="{rx0 - 4:.1f}" y="{mid + 4:.1f}" text-anchor="end" '
                         f'fill="{colour}">{escape(name)}</text>')
    for marker in task.markers:
        mx = frame.x(marker.at.timestamp())
        shape = (f"M{mx:.1f},{marker_tip:.1f} l4,-6 h-8 z" if marker.kind != "fallback"
                 else f"M{mx - 4:.1f},{marker_tip - 6:.1f} l8,6 m0,-6 l-8,6")
        colour = DEADLINE_COLOUR if marker.kind == "fallback" else "#57606a"
        parts.append(f'<path class="marker" data-kind="{marker.kind}" d="{shape}" fill="{colour}" stroke="{colour}">'
                     f"<title>{escape(f'{_hm(marker.at)} UTC: {marker.label}')}</title></path>")
        if marker.short and short_labels:
            parts.append(f'<text class="marker-label" x="{mx + 6:.1f}" y="{marker_tip - 1:.1f}" font-size="10" '
                         f'fill="#57606a">{escape(marker.short)}</text>')
    return "".join(parts)


def _legend_for(curves: Sequence[Curve], clusters: Iterable[str], colours: Mapping[str, str]) -> list[LegendItem]:
    zones: dict[str, list[str]] = {}
    for curve in curves:
        zones.setdefault(curve.cluster, [])
        if curve.zone and curve.zone not in zones[curve.cluster]:
            zones[curve.cluster].append(curve.zone)
    items: list[LegendItem] = []
    for cluster in dict.fromkeys([*zones, *clusters]):
        shown = ", ".join(zones.get(cluster) or [])
        items.append(("box", colours.get(cluster, WAIT_COLOUR), f"{cluster} ({shown})" if shown else cluster))
    kinds = {c.kind for c in curves}
    if "forecast" in kinds:
        items.append(("dash", MUTED, "forecast at decision"))
    if "realised" in kinds:
        items.append(("line", MUTED, "realised"))
    items += [("band", MUTED, "planned window"), ("thin", WAIT_COLOUR, "wait"), ("box", "#57606a", "run (cluster colour)"),
              ("tri", "#57606a", "decision, re-plan, start")]
    return items


def _v_max(curves: Sequence[Curve], *extra: float | None, intervals: int = 4) -> float:
    """Return a round top value above every value: ``intervals`` grid steps of a round multiple of a power of ten."""
    values = [float(p[2]) for c in curves for p in c.points] + [float(v) for v in extra if v is not None]
    top = max(values) * 1.05 if values and max(values) > 0 else 100.0
    scale = 10 ** math.floor(math.log10(top / intervals))
    step = next(m * scale for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * scale * intervals >= top)
    return step * intervals


def task_timeline_svg(task: TaskTimeline, colours: Mapping[str, str], *, width: int = 760) -> str:
    """Return one task's timeline: candidates' curves, the planned window, wait, markers and the run bar.

    ``task`` is a :class:`~airflow_carbon_provider.plugins.timeline.TaskTimeline`.
    """
    curves = task.curves
    clusters = [task.home_cluster, task.planned_cluster, *([task.run.cluster] if task.run else [])]
    legend = _legend_for(curves, clusters, colours)
    plot_h, lane_h, top = 170, 26, 22
    height = max(top + plot_h + 16 + lane_h + 38, _Frame.legend_height(len(legend), top))
    frame = _Frame(width, height, task.start.timestamp(), task.end.timestamp(),
                   _v_max(curves, task.expected_intensity, task.baseline_intensity), plot_h=plot_h, right=170, top=top)
    lane_y = frame.bottom + 16
    axis_y = lane_y + lane_h + 14
    step, fmt = _time_step(frame.t1 - frame.t0, frame.plot_w)
    run = task.run
    summary = (f"ran on {run.cluster} from {_hm(run.start)}" + (f" to {_hm(run.end)}" if run.end else " (running)")
               if run else f"waiting, planned on {task.planned_cluster} at {_hm(task.planned_start)}")
    title = (f"Timeline of {task.label}: arrived {_hm(task.arrival)}, {summary} UTC; deadline {_hm(task.deadline)}; "
             "candidates' intensity in g CO2eq/kWh")
    parts = [frame.open("carbon-task-timeline", title),
             frame.value_grid(5),
             frame.time_ticks(step, fmt, first=int(-(-frame.t0 // step) * step), label_y=axis_y,
                              grid_to=lane_y + lane_h)]
    planned_colour = colours.get(task.planned_cluster, WAIT_COLOUR)
    px0, px1 = frame.x(task.planned_start.timestamp()), frame.x(task.planned_end.timestamp())
    window = f"planned window on {task.planned_cluster} ({task.planned_zone}): {_planned_span(task)}"
    parts.append(f'<rect class="planned-window" data-cluster="{escape(task.planned_cluster)}" x="{px0:.1f}" '
                 f'y="{frame.top}" width="{max(px1 - px0, 2):.1f}" height="{lane_y + lane_h - frame.top:.1f}" '
                 f'fill="{planned_colour}" fill-opacity="0.13"><title>{escape(window)}</title></rect>')
    for curve in curves:
        parts.append(_curve_svg(frame, curve, colours.get(curve.cluster, WAIT_COLOUR)))
    if not curves:
        parts.append(f'<text class="no-curves" x="{frame.left + frame.plot_w / 2:.1f}" y="{frame.top + plot_h / 2:.1f}" '
                     f'text-anchor="middle" fill="{MUTED}">no intensity recorded for the candidates</text>')
    labels: list[tuple[float, str, str, str]] = []
    bottom = lane_y + lane_h
    if task.deadline is not None:
        parts.append(_vline(frame, task.deadline.timestamp(), bottom, DEADLINE_COLOUR, "deadline", "5 3",
                            f"deadline {_hm(task.deadline)} UTC"))
        labels.append((task.deadline.timestamp(), "deadline", DEADLINE_COLOUR, "deadline"))
    if task.latest_start != task.deadline:
        parts.append(_vline(frame, task.latest_start.timestamp(), bottom, MUTED, "latest-start", "2 3",
                            f"latest start {_hm(task.latest_start)} UTC"))
        labels.append((task.latest_start.timestamp(), "latest start", MUTED, "latest-start"))
    if task.status in ("waiting", "running"):
        parts.append(_vline(frame, task.now.timestamp(), bottom, NOW_COLOUR, "now", "1 0", f"now {_hm(task.now)} UTC"))
        labels.append((task.now.timestamp(), "now", NOW_COLOUR, "now"))
    parts.append(_top_labels(frame, labels))
    parts.append(f'<line x1="{frame.left}" x2="{frame.left + frame.plot_w}" y1="{lane_y + lane_h / 2:.1f}" '
                 f'y2="{lane_y + lane_h / 2:.1f}" stroke="{GRID}"/>')
    parts.append(_lane_svg(frame, task, colours, lane_y, lane_h, marker_tip=lane_y - 2, short_labels=True))
    parts.append(frame.caption("UTC; g CO2eq/kWh; dashed: forecast at decision time, solid: realised"))
    parts.append(frame.legend(legend))
    parts.append("</svg>")
    return "".join(parts)


MAX_ROWS = 60
"""A DAG run's timeline draws at most this many tasks (the rest are counted)."""


def dag_run_timeline_svg(run: DagRunTimeline, colours: Mapping[str, str], *, width: int = 900) -> str:
    """Return a DAG run's timeline: one row per carbon-aware task (wait, planned window, run) over the curves.

    ``run`` is a :class:`~airflow_carbon_provider.plugins.timeline.DagRunTimeline`; rows are grouped by
    cluster (the one each task ran on, else is planned on) and each task's name links to its task page.
    """
    tasks = list(run.tasks[:MAX_ROWS])
    if not tasks:
        return '<p class="muted" id="carbon-dagrun-timeline-empty">No carbon-aware task is recorded for this DAG run.</p>'
    curves = run.curves
    legend = _legend_for(curves, [t.cluster for t in tasks], colours)
    plot_h, row_h, top, left = 130, 24, 22, 170
    rows_y = top + plot_h + 14
    height = max(rows_y + row_h * len(tasks) + 38, _Frame.legend_height(len(legend), top))
    frame = _Frame(width, height, run.start.timestamp(), run.end.timestamp(), _v_max(curves, intervals=2), plot_h=plot_h,
                   left=left, right=170, top=top)
    axis_y = rows_y + row_h * len(tasks) + 14
    step, fmt = _time_step(frame.t1 - frame.t0, frame.plot_w)
    finished = sum(1 for t in run.tasks if t.status == "finished")
    title = (f"Timeline of DAG run {run.run_id} of {run.dag_id}: {len(run.tasks)} carbon-aware tasks "
             f"({finished} finished), waits and runs by cluster over the candidates' intensity, g CO2eq/kWh")
    parts = [frame.open("carbon-dagrun-timeline", title), frame.value_grid(3),
             frame.time_ticks(step, fmt, first=int(-(-frame.t0 // step) * step), label_y=axis_y,
                              grid_to=axis_y - 12)]
    for curve in curves:
        parts.append(_curve_svg(frame, curve, colours.get(curve.cluster, WAIT_COLOUR)))
    if not curves:
        parts.append(f'<text class="no-curves" x="{frame.left + frame.plot_w / 2:.1f}" y="{frame.top + plot_h / 2:.1f}" '
                     f'text-anchor="middle" fill="{MUTED}">no intensity recorded for the candidates</text>')
    if any(t.status in ("waiting", "running") for t in run.tasks):
        parts.append(_vline(frame, run.now.timestamp(), axis_y - 12, NOW_COLOUR, "now", "1 0",
                            f"now {_hm(run.now)} UTC"))
        parts.append(_top_labels(frame, [(run.now.timestamp(), "now", NOW_COLOUR, "now")]))
    previous = None
    for i, task in enumerate(tasks):
        y0 = rows_y + row_h * i
        colour = colours.get(task.cluster, WAIT_COLOUR)
        if task.cluster != previous and i:
            parts.append(f'<line x1="8" x2="{frame.left + frame.plot_w}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#d0d7de"/>')
        previous = task.cluster
        href = "task?" + urlencode({"dag_id": run.dag_id, "run_id": run.run_id, "task_id": task.task_id,
                                    "map_index": task.map_index})
        label = task.label if len(task.label) <= 24 else task.label[:23] + "…"
        parts.append(f'<g class="task-row" data-task="{escape(task.label)}" data-cluster="{escape(task.cluster)}" '
                     f'data-status="{task.status}">'
                     f'<rect x="8" y="{y0 + row_h / 2 - 5:.1f}" width="10" height="10" fill="{colour}"/>'
                     f'<a href="{escape(href)}"><text x="24" y="{y0 + row_h / 2 + 4:.1f}" fill="#0969da">'
                     f"<title>{escape(task.label)}: {escape(task.status)} on {escape(task.cluster)}</title>"
                     f"{escape(label)}</text></a>")
        if task.deadline is not None:
            dx = frame.x(task.deadline.timestamp())
            parts.append(f'<line class="deadline" x1="{dx:.1f}" x2="{dx:.1f}" y1="{y0 + 2:.1f}" y2="{y0 + row_h - 2:.1f}" '
                         f'stroke="{DEADLINE_COLOUR}" stroke-width="2"><title>deadline {_hm(task.deadline)} UTC'
                         "</title></line>")
        parts.append(_lane_svg(frame, task, colours, y0 + 1, row_h - 2, marker_tip=y0 + 6) + "</g>")
    parts.append(frame.caption("UTC; g CO2eq/kWh; dashed: forecast at decision time, solid: realised; "
                               "red tick: deadline"))
    parts.append(frame.legend(legend))
    parts.append("</svg>")
    more = len(run.tasks) - len(tasks)
    if more > 0:
        parts.append(f'<p class="muted small">and {more} more task{"s" if more != 1 else ""} not drawn.</p>')
    return "".join(parts)


# -- pages ---------------------------------------------------------------------------------
