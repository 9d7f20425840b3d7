"""The Carbon pages in real headless Chromium (Debian's), against the running API server.

The browser carries the JWT in the ``_token`` cookie, as Airflow's UI does after a login. It
opens the Carbon page and the task page on their own, then Airflow's own UI with the Carbon
view in it, and keeps a screenshot of each under ``test-artifacts/ui/``; then the timelines of the
task tab and of a DAG run picked on the Carbon page (``ui-task-timeline.png`` and
``ui-dagrun-timeline.png`` there are the pictures in ``docs/_static/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.ui.cdp import Browser, chromium_path
from tests.integration.ui.conftest import RUN_INFERENCE, RUN_TRAINING, CarbonUI

pytestmark = pytest.mark.integration

CHROMIUM = chromium_path()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not __import__("os").environ.get("CI"),
    reason="Debian's chromium is not installed (.ci/run installs it; apt-get install -y chromium)",
)

TEXT = "document.body ? document.body.innerText : ''"


@needs_chromium
async def test_carbon_pages_in_chromium(carbon_ui: CarbonUI, artifacts: Path) -> None:
    assert CHROMIUM is not None, "chromium must be installed on CI (.ci/run installs it)"
    async with Browser(CHROMIUM) as browser:
        # Without the cookie the page is refused.
        assert await browser.open(f"{carbon_ui.url}/carbon/ui/") == 401
        assert "Log in to Airflow" in await browser.evaluate(TEXT)

        await browser.set_cookie(carbon_ui.url, "_token", carbon_ui.token())
        assert await browser.open(f"{carbon_ui.url}/carbon/ui/") == 200
        text = await browser.evaluate(TEXT)
        for expected in ("Savings per DAG", "nightly_training", "batch_inference", "saved g", "600.0", "60.0 %",
                         "Totals per signal kind and basis", "average\trealised",
                         "75.0 %", "k8s_gb", "k8s_de", "k8s_broken", "no-such-trace.csv"):
            assert expected in text, f"{expected!r} not on the Carbon page:\n{text}"
        marks = await browser.evaluate(
            "Array.from(document.querySelectorAll('#carbon-dags tr[data-dag]')).map("
            "r => [r.dataset.dag, r.querySelector('[data-slo]').dataset.slo])")
        assert sorted(marks) == [["batch_inference", "missed"], ["nightly_training", "met"],
                                 ["nightly_training", "nodata"]]  # the waiting run: average/unknown, its own row
        chart = await browser.evaluate(
            "(() => { const s = document.querySelector('svg#carbon-intensity-chart'); if (!s) return null;"
            " const b = s.getBoundingClientRect(); return {lines: Array.from(s.querySelectorAll('polyline.forecast'))"
            ".map(p => p.dataset.cluster), dots: s.querySelectorAll('circle.current').length,"
            " width: b.width, height: b.height}; })()")
        assert chart is not None, "the intensity chart is missing"
        assert sorted(chart["lines"]) == ["k8s_de", "k8s_gb"] and chart["dots"] == 2
        assert chart["width"] > 300 and chart["height"] > 150
        reserved = await browser.evaluate(
            "Array.from(document.querySelectorAll('svg#carbon-reserved-chart polyline.reserved'))"
            ".map(p => p.dataset.cluster)")
        assert sorted(reserved) == ["k8s_broken", "k8s_de", "k8s_gb"], reserved
        held = await browser.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#carbon-clusters tr[data-cluster]'))"
            ".map(r => [r.dataset.cluster, r.querySelectorAll('td')[5].innerText]))")
        assert held == {"k8s_broken": "0 pods", "k8s_de": "10 pods", "k8s_gb": "30 pods"}, held
        skill = await browser.evaluate(
            "Array.from(document.querySelectorAll('#carbon-forecast-skill tr[data-lead]')).map("
            "r => [r.dataset.zone, r.dataset.lead, r.querySelectorAll('td')[5].innerText])")
        assert ["DE", "0-1h", "10.0 %"] in skill, skill
        await browser.screenshot(artifacts / "carbon-page.png")

        query = urlencode({"dag_id": "nightly_training", "run_id": RUN_TRAINING, "task_id": "fine_tune",
                           "map_index": "{MAP_INDEX}"})
        assert await browser.open(f"{carbon_ui.url}/carbon/ui/task?{query}") == 200
        text = await browser.evaluate(TEXT)
        for expected in ("Carbon decision: nightly_training · fine_tune", "k8s_gb", "GB is cleanest",
                         "600.0 g", "75.0 %", "MET"):
            assert expected in text, f"{expected!r} not on the task page:\n{text}"
        fields = await browser.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#carbon-outcome dd'))"
            ".map(d => [d.dataset.field, d.innerText]))")
        assert fields["emissions_g"] == "200.000" and fields["saving_g"] == "600.000"
        assert fields["deadline_met"] == "yes" and fields["intensity_source"] == "history"
        await browser.screenshot(artifacts / "task-page.png")

        # Airflow's own UI: the Carbon entry of the navigation shows the page in an iframe.
        await browser.open(f"{carbon_ui.url}/plugin/carbon")
        frame_text = await browser.wait_for(
            "(() => { const f = document.querySelector('iframe[title=\"Carbon\"]');"
            " const d = f && f.contentDocument; const t = d && d.body ? d.body.innerText : '';"
            " return t.includes('Savings per DAG') ? t : ''; })()")
        assert "nightly_training" in frame_text
        await browser.screenshot(artifacts / "airflow-ui-carbon.png", full_page=False)
        in_nav = await browser.evaluate(
            "Array.from(document.querySelectorAll('a, button')).some(e => (e.innerText || '').trim() === 'Carbon'"
            " || e.getAttribute('aria-label') === 'Carbon' || e.getAttribute('title') === 'Carbon')")
        assert in_nav, "no 'Carbon' entry in Airflow's navigation"


TIMELINE = """(() => {{
  const s = document.querySelector({svg}); if (!s) return null;
  const b = s.getBoundingClientRect(), style = getComputedStyle(s);
  const pick = (sel, f) => Array.from(s.querySelectorAll(sel)).map(f);
  return {{visible: b.width > 300 && b.height > 150 && style.visibility !== 'hidden' && style.display !== 'none',
          top: b.top + window.scrollY, title: s.querySelector('title').textContent,
          windows: pick('rect.planned-window', e => e.dataset.cluster),
          runs: pick('rect.run', e => [e.dataset.cluster, e.getBoundingClientRect().width]),
          labels: pick('.run-label', e => e.textContent),
          curves: pick('polyline.curve', e => [e.dataset.zone, e.classList.contains('forecast') ? 'forecast' : 'realised',
                                               e.getAttribute('stroke-dasharray') || '']),
          markers: pick('path.marker', e => e.dataset.kind),
          rows: pick('g.task-row', e => [e.dataset.task, e.dataset.cluster, e.dataset.status,
                                         e.querySelectorAll('rect.run').length]),
          legend: pick('g.legend text', e => e.textContent)}};
}})()"""


@needs_chromium
async def test_timelines_in_chromium(carbon_ui: CarbonUI, artifacts: Path) -> None:
    """The task tab draws the task's timeline above its table; the Carbon page a picked DAG run's."""
    assert CHROMIUM is not None, "chromium must be installed on CI (.ci/run installs it)"
    async with Browser(CHROMIUM, width=1000) as browser:
        await browser.set_cookie(carbon_ui.url, "_token", carbon_ui.token())
        query = urlencode({"dag_id": "nightly_training", "run_id": RUN_TRAINING, "task_id": "fine_tune",
                           "map_index": "{MAP_INDEX}"})
        assert await browser.open(f"{carbon_ui.url}/carbon/ui/task?{query}") == 200
        task = await browser.evaluate(TIMELINE.format(svg=json.dumps("svg#carbon-task-timeline")))
        assert task is not None and task["visible"], task
        assert task["windows"] == ["k8s_gb"] and [r[0] for r in task["runs"]] == ["k8s_gb"], task
        assert task["runs"][0][1] > 50 and task["labels"] == ["k8s_gb (GB)"], task
        assert sorted(set(map(tuple, task["curves"]))) == [("DE", "forecast", "5 3"), ("DE", "realised", ""),
                                                           ("GB", "forecast", "5 3"), ("GB", "realised", "")]
        assert task["markers"] == ["decided", "replan", "wait_end", "recheck"] and "fine_tune" in task["title"]
        assert task["legend"][:3] == ["k8s_de (DE)", "k8s_gb (GB)", "forecast at decision"], task["legend"]
        table_top = await browser.evaluate("document.querySelector('#carbon-decision').getBoundingClientRect().top"
                                           " + window.scrollY")
        assert task["top"] < table_top  # above the table
        await browser.screenshot(artifacts / "task-timeline.png")
        await browser.screenshot(artifacts / "ui-task-timeline.png", element="#carbon-task-timeline-section",
                                 from_top=True)
        # In a narrow tab (Airflow's task panel) the chart shrinks instead of overflowing.
        await browser.send("Emulation.setDeviceMetricsOverride", width=560, height=900, deviceScaleFactor=1,
                           mobile=False)
        narrow = await browser.evaluate("[document.querySelector('svg#carbon-task-timeline').getBoundingClientRect()"
                                        ".width, document.documentElement.clientWidth]")
        assert 300 < narrow[0] <= narrow[1] <= 560, narrow
        await browser.send("Emulation.setDeviceMetricsOverride", width=1000, height=900, deviceScaleFactor=1,
                           mobile=False)

        # The Carbon page: the newest DAG run is drawn; picking another in the form draws that one.
        assert await browser.open(f"{carbon_ui.url}/carbon/ui/") == 200
        options = await browser.evaluate(
            "Array.from(document.querySelectorAll('#carbon-dagrun-form option')).map(o => [o.value, o.selected])")
        assert options == [[f"batch_inference/{RUN_INFERENCE}", True], [f"nightly_training/{RUN_TRAINING}", False]]
        newest = await browser.evaluate(TIMELINE.format(svg=json.dumps("svg#carbon-dagrun-timeline")))
        assert newest["visible"] and newest["rows"] == [["score", "k8s_de", "finished", 1]], newest
        await browser.evaluate(
            "(() => { const f = document.querySelector('#carbon-dagrun-form');"
            f" f.querySelector('select').value = {json.dumps(f'nightly_training/{RUN_TRAINING}')};"
            " f.submit(); })()")
        await browser.wait_for("location.search.includes('dag_run=') && document.readyState === 'complete'"
                               " && !!document.querySelector('svg#carbon-dagrun-timeline')")
        run = await browser.evaluate(TIMELINE.format(svg=json.dumps("svg#carbon-dagrun-timeline")))
        assert run is not None and run["visible"], run
        assert run["rows"] == [["fine_tune", "k8s_gb", "finished", 1], ["evaluate[2]", "k8s_gb", "unknown", 0]], run
        assert [r[0] for r in run["runs"]] == ["k8s_gb"] and run["labels"] == ["k8s_gb (GB)"], run
        notes = await browser.evaluate("document.querySelector('#carbon-dagrun-timeline-notes').innerText")
        assert "no outcome recorded, though the deadline passed at 10 Mar 08:00 UTC" in notes
        await browser.screenshot(artifacts / "carbon-page-dagrun.png")
        await browser.screenshot(artifacts / "ui-dagrun-timeline.png", element="#carbon-dagrun-section")
