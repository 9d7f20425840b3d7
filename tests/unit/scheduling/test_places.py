"""Candidates named by cloud region or coordinates: resolved per carbon source, recorded as written and as resolved."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_carbon_provider.scheduling import CarbonSchedule, Decision, ScheduleConfigError, parse_candidates
from tests.unit.sources.conftest import sample_bytes

UTC = timezone.utc
ARGS = {"expected_duration": "1h", "max_delay": "6h", "coordinate": False}


def test_a_region_or_coordinates_is_kept_as_written_until_run_time():
    de, nl = parse_candidates({"k8s_de": "aws:eu-central-1", "k8s_nl": {"zone": {"lat": 52.37, "lon": 4.9}}})
    assert (de.zone, de.where) == (None, "aws:eu-central-1")
    assert (nl.zone, nl.where) == (None, "52.37,4.9")
    assert type(nl).from_dict(nl.to_dict()) == nl


def test_an_unknown_region_is_refused_at_parse_time_with_the_nearest_names():
    with pytest.raises(ScheduleConfigError, match=r"^cluster_conn_ids\['k8s_de'\]: cloud region 'aws:eu-centrl-1' "
                                                  r"is not in the bundled table; did you mean 'aws:eu-central-1'"):
        CarbonSchedule({"k8s_de": "aws:eu-centrl-1"}, **ARGS)


def test_regions_plan_on_the_sources_keys_and_the_decision_shows_both():
    schedule = CarbonSchedule({"k8s_de": "aws:eu-central-1", "k8s_gb": "gcp:europe-west2"}, **ARGS)
    now = datetime.now(UTC)
    decision = schedule.plan(now, now)
    assert not decision.fail_open
    assert [(c.zone, c.where) for c in decision.candidates] == [("DE", "aws:eu-central-1"),
                                                                ("GB", "gcp:europe-west2")]
    data = decision.to_xcom()
    assert data["home_zone"] == "DE" and data["home_where"] == "aws:eu-central-1"
    assert data["where"] == decision.chosen.where and data["zone"] == decision.chosen.zone
    assert "(aws:eu-central-1 \u2192 DE)" in decision.reason
    again = Decision.from_xcom(json.loads(json.dumps(data)))
    assert again.home.where == "aws:eu-central-1" and again.home.zone == "DE"


def test_the_kubernetes_connections_carbon_zone_may_name_a_region(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_K8S_WEST", json.dumps({"conn_type": "kubernetes",
                                                            "extra": {"carbon_zone": "aws:us-west-1"}}))
    (cand,) = CarbonSchedule(["k8s_west"], **ARGS).resolve()
    assert (cand.zone, cand.where, cand.carbon_conn_id) == ("US-CAL-CISO", "aws:us-west-1", "carbontrace_default")


def test_a_region_outside_the_sources_coverage_is_a_config_error_with_the_fix(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_UK", '{"conn_type": "ukcarbonintensity"}')
    schedule = CarbonSchedule({"k8s_de": "aws:eu-central-1"}, carbon_conn_id="uk", **ARGS)
    with pytest.raises(ScheduleConfigError, match=r"outside Great Britain.*use an electricitymaps or watttime"):
        schedule.resolve()


def test_coordinates_on_a_trace_replay_are_a_config_error_naming_the_fix():
    schedule = CarbonSchedule({"k8s_de": "50.11,8.68"}, **ARGS)
    with pytest.raises(ScheduleConfigError, match=r"has no location lookup; give a trace zone"):
        schedule.resolve()


def em_connection(monkeypatch, httpserver, conn_id):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "electricitymaps", "host": httpserver.url_for("").rstrip("/"), "password": "em-key-places",
        "extra": {"max_retries": 0, "timeout": 2}}))


def test_coordinates_resolve_through_the_sources_location_lookup(monkeypatch, httpserver):
    em_connection(monkeypatch, httpserver, "em_places")
    httpserver.expect_request("/v3/carbon-intensity/latest", query_string={
        "lat": "35.23", "lon": "-80.84", "disableCallerLookup": "true"}).respond_with_data(
        sample_bytes("electricitymaps", "carbon-intensity_latest.real-compact.US-CAR-DUK.2025-03-29.json"),
        content_type="application/json")
    schedule = CarbonSchedule({"k8s_nc": "35.23,-80.84"}, carbon_conn_id="em_places", **ARGS)
    (cand,) = schedule.resolve()
    assert (cand.zone, cand.where, cand.place) == ("US-CAR-DUK", "35.23,-80.84", "35.23,-80.84 \u2192 US-CAR-DUK")


def test_a_failed_lookup_leaves_the_candidate_out_and_home_falls_open_saying_why(monkeypatch, httpserver):
    em_connection(monkeypatch, httpserver, "em_down")  # no handler: the server answers 500
    schedule = CarbonSchedule({"k8s_nc": "35.23,-80.84"}, carbon_conn_id="em_down", **ARGS)
    now = datetime.now(UTC)
    decision = schedule.plan(now, now)
    assert decision.fail_open and not decision.waits
    assert "'35.23,-80.84' could not be resolved by em_down (looked up by location" in decision.reason
    assert decision.errors["k8s_nc"].startswith("'35.23,-80.84' could not be resolved")
