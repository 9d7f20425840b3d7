"""The Carbon plugin's endpoints on a real API server: authentication, ledger figures, clusters."""

from __future__ import annotations

import pytest

from tests.integration.ui.conftest import RUN_INFERENCE, RUN_TRAINING, CarbonUI

pytestmark = pytest.mark.integration

PROTECTED = (
    "/carbon/api/summary",
    "/carbon/api/runs",
    f"/carbon/api/task?dag_id=nightly_training&run_id={RUN_TRAINING}&task_id=fine_tune",
    "/carbon/api/clusters",
    "/carbon/ui/",
    f"/carbon/ui/task?dag_id=nightly_training&run_id={RUN_TRAINING}&task_id=fine_tune",
)


@pytest.mark.parametrize("path", PROTECTED)
def test_anonymous_request_is_refused(carbon_ui: CarbonUI, path: str) -> None:
    response = carbon_ui.get(path)
    assert response.status_code == 401, response.text
    assert "fine_tune" not in response.text and "nightly_training" not in response.text


def test_every_route_of_the_app_refuses_anonymous_requests(carbon_ui: CarbonUI) -> None:
    """List the app's own routes (documentation included, if any) and ask each as nobody."""
    from airflow_carbon_provider.plugins import URL_PREFIX
    from airflow_carbon_provider.plugins.app import create_app

    paths = sorted({route.path for route in create_app().routes} | {"/docs", "/redoc", "/openapi.json"})
    answered = {path: carbon_ui.get(URL_PREFIX + path, follow_redirects=False).status_code for path in paths}
    assert all(status in (401, 403, 404) for status in answered.values()), answered
    assert answered["/api/summary"] == 401


def test_forged_token_is_refused(carbon_ui: CarbonUI) -> None:
    response = carbon_ui.get("/carbon/api/summary", token="eyJhbGciOiJIUzUxMiJ9.e30.forged")
    assert response.status_code in (401, 403), response.text


def test_refused_page_is_html_for_browsers(carbon_ui: CarbonUI) -> None:
    response = carbon_ui.get("/carbon/ui/")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "Log in to Airflow" in response.text


def test_plugin_is_registered_with_its_views(carbon_ui: CarbonUI) -> None:
    plugins = carbon_ui.get("/api/v2/plugins", token=carbon_ui.token()).json()["plugins"]
    carbon = next(p for p in plugins if p["name"] == "carbon")
    views = {v["destination"]: v for v in carbon["external_views"]}
    assert views["nav"]["href"] == "carbon/ui/"
    assert views["task_instance"]["href"].startswith("carbon/ui/task?dag_id={DAG_ID}&run_id={RUN_ID}")
    assert [a["url_prefix"] for a in carbon["fastapi_apps"]] == ["/carbon"]
    errors = carbon_ui.get("/api/v2/plugins/importErrors", token=carbon_ui.token()).json()
    assert errors["total_entries"] == 0, errors


def test_summary_has_savings_per_dag_and_slo_attainment(carbon_ui: CarbonUI) -> None:
    response = carbon_ui.get("/carbon/api/summary", token=carbon_ui.token())
    assert response.status_code == 200, response.text
    summary = response.json()
    dags = {(d["dag_id"], d["signal_kind"], d["basis"]): d for d in summary["dags"]}
    assert set(dags) == {("nightly_training", "average", "realised"), ("nightly_training", "average", "unknown"),
                         ("batch_inference", "average", "realised")}  # the waiting run has no basis yet
    training, inference = dags[("nightly_training", "average", "realised")], dags[("batch_inference", "average", "realised")]
    assert (training["emissions_g"], training["baseline_emissions_g"], training["saving_g"]) == (200.0, 800.0, 600.0)
    assert training["saving_pct"] == 75.0
    assert training["runs"] == 1 and training["objectives_met"] is True
    assert dags[("nightly_training", "average", "unknown")]["emissions_g"] is None
    assert (inference["emissions_g"], inference["baseline_emissions_g"], inference["saving_g"]) == (200.0, 200.0, 0.0)
    assert inference["objectives_met"] is False
    assert summary["runs"] == 3
    realised, waiting = summary["totals"]
    assert (realised["signal_kind"], realised["basis"], realised["runs"]) == ("average", "realised", 2)
    assert (realised["saving_g"], realised["saving_pct"]) == (600.0, 60.0)
    assert (waiting["basis"], waiting["runs"], waiting["saving_g"]) == ("unknown", 1, None)
    verdicts = {v["name"]: v for v in summary["objectives"]}
    assert verdicts["on_time"]["actual"] == 50.0 and verdicts["on_time"]["met"] is False
    assert verdicts["reduction"]["target"] == 50.0 and verdicts["reduction"]["met"] is True
    assert summary["objectives_met"] is False
    assert summary["ledger"].startswith("sqlite:///")


def test_runs_lists_every_try_newest_first(carbon_ui: CarbonUI) -> None:
    body = carbon_ui.get("/carbon/api/runs", token=carbon_ui.token()).json()
    assert body["total_entries"] == 3
    first = body["rows"][0]
    assert (first["dag_id"], first["task_id"], first["cluster"], first["deadline_met"]) == (
        "batch_inference", "score", "k8s_de", False)
    only = carbon_ui.get("/carbon/api/runs", token=carbon_ui.token(), params={"dag_id": "nightly_training"}).json()
    assert {(r["task_id"], r["map_index"]) for r in only["rows"]} == {("fine_tune", -1), ("evaluate", 2)}


def test_task_decision_and_outcome(carbon_ui: CarbonUI) -> None:
    params = {"dag_id": "nightly_training", "run_id": RUN_TRAINING, "task_id": "fine_tune", "map_index": "-1"}
    record = carbon_ui.get("/carbon/api/task", token=carbon_ui.token(), params=params).json()
    assert record["found"] is True and record["tries"] == [1]
    assert record["decision"]["chosen_cluster"] == "k8s_gb"
    assert record["decision"]["reason"] == "GB is cleanest, and cleaner after 02:00"
    outcome = record["outcome"]
    assert (outcome["cluster"], outcome["zone"], outcome["realised_intensity"]) == ("k8s_gb", "GB", 100.0)
    assert (outcome["emissions_g"], outcome["saving_g"], outcome["saving_pct"]) == (200.0, 600.0, 75.0)
    assert outcome["deadline_met"] is True and outcome["intensity_source"] == "history"


def test_task_mapped_and_unknown(carbon_ui: CarbonUI) -> None:
    token = carbon_ui.token()
    mapped = carbon_ui.get("/carbon/api/task", token=token, params={
        "dag_id": "nightly_training", "run_id": RUN_TRAINING, "task_id": "evaluate", "map_index": "2"}).json()
    assert mapped["found"] is True and mapped["outcome"] is None
    assert mapped["decision"]["phase"] == "waiting"
    # Airflow's UI leaves the {MAP_INDEX} placeholder for an unmapped task: read as -1.
    unmapped = carbon_ui.get("/carbon/api/task", token=token, params={
        "dag_id": "batch_inference", "run_id": RUN_INFERENCE, "task_id": "score", "map_index": "{MAP_INDEX}"}).json()
    assert unmapped["found"] is True and unmapped["map_index"] == -1
    unknown = carbon_ui.get("/carbon/api/task", token=token, params={
        "dag_id": "batch_inference", "run_id": RUN_INFERENCE, "task_id": "no_such_task"})
    assert unknown.status_code == 200 and unknown.json()["found"] is False


def test_clusters_have_forecasts_and_a_broken_source_is_an_error_entry(carbon_ui: CarbonUI) -> None:
    response = carbon_ui.get("/carbon/api/clusters", token=carbon_ui.token())
    assert response.status_code == 200, response.text
    clusters = {c["conn_id"]: c for c in response.json()["clusters"]}
    assert set(clusters) == {"k8s_broken", "k8s_de", "k8s_gb"}
    for conn_id, zone in (("k8s_gb", "GB"), ("k8s_de", "DE")):
        cluster = clusters[conn_id]
        assert cluster["status"] == "ok", cluster
        assert cluster["zone"] == zone and cluster["carbon_conn_id"] == "carbontrace_default"
        assert cluster["kind"] == "average" and cluster["current"]["value"] > 0
        assert len(cluster["forecast"]) >= 24 and all(p["value"] > 0 for p in cluster["forecast"])
    broken = clusters["k8s_broken"]
    assert broken["status"] == "error" and "no-such-trace.csv" in broken["error"]
    # reserved load over the next 48 h, per connection (a node pool's reservations count for its connection)
    gb, de = clusters["k8s_gb"]["reserved"], clusters["k8s_de"]["reserved"]
    assert len(gb["points"]) == 48 and gb["peak_pods"] == 30 and de["peak_pods"] == 10
    assert [p["pods"] for p in gb["points"][:7]] == [0, 0, 30, 30, 30, 30, 0]
    assert gb["points"][3]["resources"] == {"pods": 30, "nvidia.com/gpu": 3}
    assert clusters["k8s_broken"]["reserved"]["peak_pods"] == 0
    assert "forecast" not in broken
