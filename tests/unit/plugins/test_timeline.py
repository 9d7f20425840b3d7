"""Task and DAG-run timelines: the model from records written with the ledger's own API, and their SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.ledger import RunKey, record_decision, record_outcome
from airflow_carbon_provider.ledger.forecasts import forecast_row, store_forecasts
from airflow_carbon_provider.ledger.store import Ledger
from airflow_carbon_provider.plugins import charts, data, timeline, views

UTC = timezone.utc
SVG = "{http://www.w3.org/2000/svg}"
DAG, RUN = "nightly", "scheduled__2026-03-10T00:00:00+00:00"
T0 = datetime(2026, 3, 10, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>'
#: Hourly intensity per zone from 00:00: DE falls slowly, GB dips from 02:00 to 05:00.
PROFILE = {"DE": [400, 390, 380, 370, 360, 350, 340, 330, 320, 310],
           "GB": [220, 180, 110, 90, 95, 140, 200, 230, 240, 250]}


def at(hour: float) -> datetime:
    return T0 + timedelta(hours=hour)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class History:
    """A carbon source whose realised history is :data:`PROFILE`."""

    def get_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        first = start.replace(minute=0, second=0, microsecond=0)
        hours = int((end - first).total_seconds() // 3600) + 1
        base = int((first - T0).total_seconds() // 3600)
        points = [(first + timedelta(hours=i), float(PROFILE[zone][min(base + i, 9)])) for i in range(hours)]
        return IntensitySeries.from_points(zone, "average", points, resolution=timedelta(hours=1), source="stub")


def decision(**fields: Any) -> dict[str, Any]:
    base = {"policy": "carbon-aware", "signal": "average", "home_cluster": "k8s_de", "home_zone": "DE",
            "carbon_conn_id": "carbontrace_default", "chosen_cluster": "k8s_gb", "zone": "GB",
            "arrival": iso(at(0)), "decided_at": iso(at(0)), "planned_start": iso(at(2)),
            "latest_start": iso(at(6)), "deadline": iso(at(8)), "expected_intensity": 100.0,
            "baseline_intensity": 395.0, "power_watts": 1000.0, "expected_duration_s": 7200.0,
            "reason": "GB is cleanest from 02:00",
            "candidates": [{"cluster": "k8s_de", "zone": "DE", "forecast_mean": 395.0},
                           {"cluster": "k8s_gb", "zone": "GB", "forecast_mean": 100.0}]}
    return {**base, **fields}


def record_forecasts(ledger: Ledger, hours: range) -> None:
    """Record one forecast per zone at each hour in ``hours``: the profile, 15 % too high after the first hour."""
    rows = []
    for zone, values in PROFILE.items():
        for h in hours:
            ahead = [float(v) * (1.0 if k == h else 1.15) for k, v in enumerate(values) if k >= h]
            bounds = [at(k).timestamp() for k in range(h, h + len(ahead) + 1)]
            series = IntensitySeries.from_arrays(zone, "average", bounds, ahead, issued_at=at(h) + timedelta(minutes=1),
                                                 is_forecast=True)
            rows.append(forecast_row(series, source="carbontrace_default", fetched_at=datetime.now(UTC)))
    assert store_forecasts(ledger, rows) == len(rows)


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    spool = tmp_path / "spool.jsonl"
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(spool))
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_path=spool)
    yield led
    led.dispose()


def fill(ledger: Ledger) -> None:
    """Record a DAG run: ``fine_tune`` waited and ran on GB, ``embed`` ran at once at home, ``score[1]`` waits."""
    ran = decision(phase="running", cluster="k8s_gb", actual_start=iso(at(2)),
                   trigger={"status": "start", "fired_at": iso(at(2)), "replans": 7,
                            "moves": [{"at": iso(at(0.75)), "cluster": "k8s_gb", "start": iso(at(2))}]},
                   recheck={"at": iso(at(2)), "chosen_key": "k8s_gb", "chosen_cluster": "k8s_gb",
                            "expected_intensity": 101.0})
    key = RunKey(DAG, RUN, "fine_tune")
    assert record_decision(ran, key, ledger=ledger, emit_metrics=False)
    assert record_outcome(ran, key, actual_end=at(4), ledger=ledger, hook_for=lambda _c: History(),
                          emit_metrics=False)
    now = decision(chosen_cluster="k8s_de", zone="DE", planned_start=iso(at(0)), phase="running", cluster="k8s_de",
                   actual_start=iso(at(0)), expected_intensity=400.0, expected_duration_s=3600.0,
                   reason="no cleaner window worth waiting for")
    key = RunKey(DAG, RUN, "embed")
    assert record_decision(now, key, ledger=ledger, emit_metrics=False)
    assert record_outcome(now, key, actual_end=at(1), ledger=ledger, hook_for=lambda _c: History(),
                          emit_metrics=False)
    waiting = decision(phase="waiting", planned_start=iso(at(3)), expected_duration_s=3600.0)
    assert record_decision(waiting, RunKey(DAG, RUN, "score", map_index=1), ledger=ledger, emit_metrics=False)


def drawn(ledger: Ledger, record: dict[str, Any], now: datetime) -> timeline.TaskTimeline:
    """Return the task's timeline, read from ``ledger`` as the task tab reads it."""
    tl = data.task_timeline(record, ledger_url=ledger.url, now=now)
    assert tl is not None
    return tl


def svg_of(markup: str, element_id: str) -> ET.Element:
    """Parse the ``<svg id=element_id>`` out of a page (it must be well-formed XML on its own)."""
    start = markup.index(f'<svg id="{element_id}"')
    end = markup.index("</svg>", start) + len("</svg>")
    return ET.fromstring(markup[start:end])


def title_of(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    return "" if title is None else "".join(title.itertext())


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in (e.get("class") or "").split()]


def test_a_finished_task_has_its_curves_plan_wait_markers_and_run(ledger):
    fill(ledger)
    record_forecasts(ledger, range(0, 10))
    record = data.task_record(DAG, RUN, "fine_tune", ledger_url=ledger.url)
    tl = drawn(ledger, record, at(12))
    assert (tl.start, tl.end, tl.status, tl.mode) == (at(0), at(8), "finished", "planned")
    assert (tl.planned_start, tl.planned_end, tl.wait_until) == (at(2), at(4), at(2))
    assert tl.run == timeline.Run(at(2), at(4), "k8s_gb", "GB", "success")
    forecast = {c.zone: c for c in tl.curves if c.kind == "forecast"}
    realised = {c.zone: c for c in tl.curves if c.kind == "realised"}
    # the forecast in force at 00:00 is the one issued at 00:01 (within the slack), 15 % high after its first hour
    assert forecast["GB"].issued_at == at(0) + timedelta(minutes=1)
    assert [p[2] for p in forecast["GB"].points[:3]] == pytest.approx([220, 207, 126.5])
    assert [p[2] for p in realised["GB"].points] == [float(v) for v in PROFILE["GB"][:8]]
    assert realised["DE"].points[0][:2] == (at(0), at(1)) and realised["DE"].points[-1][1] == at(8)
    assert [(m.kind, m.at) for m in tl.markers] == [("decided", at(0)), ("replan", at(0.75)), ("wait_end", at(2)),
                                                    ("recheck", at(2))]
    assert tl.markers[1].label == "re-plan moved the start to k8s_gb at 10 Mar 02:00 UTC"
    assert "after 7 re-plans" in tl.markers[2].label and "kept k8s_gb" in tl.markers[3].label
    assert tl.notes == ()


def test_no_realised_values_yet_and_a_waiting_task_are_said(ledger):
    fill(ledger)
    record_forecasts(ledger, range(0, 1))  # only the forecasts fetched when deciding
    record = data.task_record(DAG, RUN, "score", 1, ledger_url=ledger.url)
    tl = drawn(ledger, record, at(1.5))
    assert tl.status == "waiting" and tl.run is None and tl.wait_until == at(1.5)
    assert "still waiting: drawn up to now" in tl.notes
    # the lead-0 values of the 00:01 forecasts are the only realised intervals: 00:00-01:00
    assert {c.points[-1][1] for c in tl.curves if c.kind == "realised"} == {at(1)}
    tl_none = timeline.task_timeline(record["decision"], None, [], now=at(1.5))
    assert timeline.REALISED_NOT_KNOWN in tl_none.notes and tl_none.curves == ()
    assert "no forecast recorded in the ledger at decision time" in tl_none.notes
    svg = svg_of(views.task_timeline_section(tl_none, {}), "carbon-task-timeline")
    assert by_class(svg, "no-curves") and by_class(svg, "now") and not by_class(svg, "run")
    page = views.task_timeline_section(tl_none, {})
    assert "realised not yet known" in page


def test_a_task_past_its_deadline_is_drawn_up_to_now_and_a_stopped_record_up_to_the_deadline():
    late = decision(phase="waiting", planned_start=iso(at(5)))
    tl = timeline.task_timeline(late, None, [], now=at(9))
    assert (tl.status, tl.end, tl.wait_until) == ("waiting", at(9), at(9))
    stale = timeline.task_timeline(late, None, [], now=at(24 * 30))
    assert (stale.status, stale.end, stale.wait_until, stale.drawn_until) == ("unknown", at(8), at(8), at(8))
    assert any(n.startswith("no outcome recorded, though the deadline passed at 10 Mar 08:00 UTC") for n in stale.notes)
    svg = svg_of(charts.task_timeline_svg(stale, {}), "carbon-task-timeline")
    assert not by_class(svg, "now") and "no start recorded" in title_of(by_class(svg, "wait")[0])


def test_fail_open_and_run_now_decisions_say_so():
    fail_open = decision(fail_open=True, chosen_cluster="k8s_de", zone="DE", planned_start=iso(at(0)),
                         expected_intensity=None, baseline_intensity=None, signal=None, reason="no carbon data")
    tl = timeline.task_timeline(fail_open, {"actual_start": iso(at(0)), "actual_end": iso(at(1)), "cluster": "k8s_de",
                                            "state": "failed"}, [], now=at(3))
    assert tl.mode == "fail_open" and any("fail-open" in n for n in tl.notes)
    assert tl.run is not None and tl.run.state == "failed"
    svg = svg_of(charts.task_timeline_svg(tl, {"k8s_de": "#123456"}), "carbon-task-timeline")
    [bar] = by_class(svg, "run")
    assert bar.get("fill") == "#123456" and "failed" in title_of(bar)
    now = decision(chosen_cluster="k8s_de", zone="DE", planned_start=iso(at(0)))
    assert timeline.task_timeline(now, None, [], now=at(0.5)).mode == "now"


def test_a_refused_cluster_is_a_marker():
    moved = decision(actual_start=iso(at(2)), fallbacks=[{"key": "k8s_x", "cluster": "k8s_x", "error": "403"}])
    tl = timeline.task_timeline(moved, None, [], now=at(3))
    assert tl.status == "running" and [m for m in tl.markers if m.kind == "fallback"][0].at == at(2)


def test_the_task_svg_is_well_formed_with_every_part(ledger):
    fill(ledger)
    record_forecasts(ledger, range(0, 10))
    record = data.task_record(DAG, RUN, "fine_tune", ledger_url=ledger.url)
    tl = drawn(ledger, record, at(12))
    colours = charts.colours_for([{"conn_id": "k8s_gb"}, {"conn_id": "k8s_de"}])
    page = views.task_page(record, timeline=tl, colours=colours)
    svg = svg_of(page, "carbon-task-timeline")
    assert svg.get("role") == "img" and "fine_tune" in title_of(svg)
    forecast, realised = by_class(svg, "forecast"), by_class(svg, "realised")
    assert {e.get("data-zone") for e in forecast} == {"DE", "GB"} == {e.get("data-zone") for e in realised}
    assert all(e.get("stroke-dasharray") for e in forecast) and not any(e.get("stroke-dasharray") for e in realised)
    [window] = by_class(svg, "planned-window")
    assert window.get("fill") == colours["k8s_gb"] == charts.PALETTE[0]
    [bar] = by_class(svg, "run")
    assert bar.get("data-cluster") == "k8s_gb"
    assert [t.text for t in by_class(svg, "run-label")] == ["k8s_gb (GB)"]
    assert by_class(svg, "wait") and by_class(svg, "deadline") and len(by_class(svg, "marker")) == 4
    assert [t.text for t in by_class(svg, "marker-label")] == ["7 re-plans"]
    assert not by_class(svg, "now")  # finished: no "now" line
    assert page.index('id="carbon-task-timeline"') < page.index('id="carbon-decision"')  # above the table
    legend = [t for g in by_class(svg, "legend") for t in g.iter(f"{SVG}text")]
    ys = [float(t.get("y") or 0) for t in legend]
    assert ys == sorted(ys) and min(b - a for a, b in zip(ys, ys[1:])) >= 18  # no two entries overlap
    assert max(ys) < float(svg.get("height") or 0)
    assert "".join(legend[0].itertext()).startswith("k8s_")


def test_the_dag_run_timeline_has_a_row_per_task_grouped_by_cluster(ledger):
    fill(ledger)
    record_forecasts(ledger, range(0, 10))
    run = data.dag_run_timeline(DAG, RUN, ledger_url=ledger.url, now=at(3.5))
    assert [(t.label, t.cluster, t.status) for t in run.tasks] == [
        ("embed", "k8s_de", "finished"), ("fine_tune", "k8s_gb", "finished"), ("score[1]", "k8s_gb", "waiting")]
    assert {(c.zone, c.kind) for c in run.curves} == {("DE", "forecast"), ("GB", "forecast"), ("DE", "realised"),
                                                     ("GB", "realised")}
    assert "1 task still waiting: drawn up to now" in run.notes
    page = views.dag_run_section({"choices": data.dag_run_choices(lambda _d: True, ledger_url=ledger.url),
                                  "selected": (DAG, RUN), "timeline": run}, [{"conn_id": "k8s_gb"}])
    svg = svg_of(page, "carbon-dagrun-timeline")
    rows = by_class(svg, "task-row")
    assert [r.get("data-task") for r in rows] == ["embed", "fine_tune", "score[1]"]
    assert [len(by_class(r, "run")) for r in rows] == [1, 1, 0] and all(by_class(r, "planned") for r in rows)
    links = [a.get("href") for a in svg.iter(f"{SVG}a")]
    assert links[2] == f"task?dag_id={DAG}&run_id=scheduled__2026-03-10T00%3A00%3A00%2B00%3A00&task_id=score&map_index=1"
    assert by_class(svg, "now") and 'selected>nightly · scheduled__2026-03-10T00:00:00+00:00 (3 tasks)' in page


def test_every_recorded_string_is_escaped_in_the_timelines():
    hostile = decision(reason=HOSTILE, zone=HOSTILE, chosen_cluster=HOSTILE,
                       candidates=[{"cluster": "k8s_de", "zone": "DE"}, {"cluster": HOSTILE, "zone": HOSTILE}],
                       trigger={"status": HOSTILE, "fired_at": iso(at(1)), "replans": 1})
    tl = timeline.task_timeline(hostile, {"actual_start": iso(at(2)), "actual_end": iso(at(3)),
                                          "cluster": HOSTILE, "zone": HOSTILE}, [], now=at(4), task_id=HOSTILE)
    markup = charts.task_timeline_svg(tl, {})
    run = timeline.dag_run_timeline([{"task_id": HOSTILE, "decision": hostile}], [], now=at(4), dag_id=HOSTILE,
                                    run_id=HOSTILE)
    markup += views.dag_run_section({"choices": [{"dag_id": HOSTILE, "run_id": HOSTILE, "tasks": 1}],
                                     "selected": (HOSTILE, HOSTILE), "timeline": run}, [])
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert svg_of(markup, "carbon-task-timeline") is not None and svg_of(markup, "carbon-dagrun-timeline") is not None


def test_an_unreadable_decision_is_left_out_with_a_note():
    run = timeline.dag_run_timeline([{"task_id": "broken", "decision": {"policy": "x"}},
                                     {"task_id": "ok", "decision": decision()}], [], now=at(1), dag_id=DAG,
                                    run_id=RUN)
    assert [t.task_id for t in run.tasks] == ["ok"] and run.notes[0].startswith("broken: decision not readable")
    assert 'id="carbon-dagrun-none"' in views.dag_run_section({"choices": [], "selected": None, "timeline": None}, [])
    empty = timeline.dag_run_timeline([], [], now=at(1), dag_id=DAG, run_id=RUN)
    assert 'id="carbon-dagrun-timeline-empty"' in charts.dag_run_timeline_svg(empty, {})


def test_a_ledger_that_cannot_be_read_never_shows_its_secret(ledger):
    from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
    from tests.unit.ledger.conftest import closed_port

    fill(ledger)
    record = data.task_record(DAG, RUN, "fine_tune", ledger_url=ledger.url)
    down = f"postgresql://carbon@127.0.0.1:{closed_port()}/ledger?password=hunter2pw"
    for read in (lambda: data.task_timeline(record, ledger_url=down), lambda: data.dag_run_timeline(DAG, RUN, ledger_url=down)):
        with pytest.raises(LedgerUnavailableError) as error:
            read()
        assert "hunter2pw" not in str(error.value) and "password=***" in str(error.value)
    page = views.task_page(record, timeline_error="cannot read the ledger at postgresql://carbon@h/l?password=***")
    assert 'id="carbon-task-timeline-error"' in page and 'id="carbon-decision"' in page


def test_the_dag_run_section_never_draws_or_lists_a_dag_the_user_may_not_read(ledger, monkeypatch):
    from airflow_carbon_provider.plugins.app import _dag_run_section

    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", ledger.url)
    fill(ledger)
    assert record_decision(decision(reason="secret plan"), RunKey("secret_dag", "r1", "t"), ledger=ledger,
                           emit_metrics=False)
    allowed = lambda dag_id: dag_id != "secret_dag"  # noqa: E731
    section = _dag_run_section(allowed, None)
    assert [(c["dag_id"], c["tasks"]) for c in section["choices"]] == [(DAG, 3)]
    assert section["selected"] == (DAG, RUN) and len(section["timeline"].tasks) == 3
    refused = _dag_run_section(allowed, "secret_dag/r1")
    assert refused["timeline"] is None and refused["selected"] is None
    page = views.dag_run_section(refused, [])
    assert "secret" not in page.replace(f"{DAG}/{RUN}", "") and 'id="carbon-dagrun-error"' in page
    assert _dag_run_section(lambda _d: True, "secret_dag/r1")["timeline"].tasks[0].task_id == "t"
