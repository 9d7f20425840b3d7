"""The typed decision record (issue 9 item 2): frozen, by key, figures derived from the final state."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.scheduling import CandidateRow, ClusterCandidate, Decision

UTC = timezone.utc
T0 = datetime(2026, 11, 27, tzinfo=UTC)
H = timedelta(hours=1)


def _pools() -> tuple[CandidateRow, ...]:
    """One connection, two node pools in two zones, and another cluster."""
    return (
        CandidateRow(ClusterCandidate("k8s_multi", "DE", node_selector={"pool": "de"}, carbon_conn_id="em"),
                     T0, 400.0),
        CandidateRow(ClusterCandidate("k8s_multi", "SE", node_selector={"pool": "se"}, carbon_conn_id="em"),
                     T0 + 2 * H, 40.0),
        CandidateRow(ClusterCandidate("k8s_gb", "GB", carbon_conn_id="uk"), T0 + H, 150.0),
    )


def _decision(**kw) -> Decision:
    rows = _pools()
    args = {"expected_intensity": 40.0, "baseline_intensity": 400.0, "reason": "SE pool in 2 h", "signal": "average",
            **kw}
    return Decision("carbon-aware", rows, rows[0].candidate.key, rows[1].candidate.key, T0 + 2 * H, None,
                    T0 + 12 * H, T0, T0, **args).with_power(500.0, "power_watts", 4 * H)


def test_the_record_is_frozen_and_names_candidates_by_key():
    decision = _decision()
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.expected_intensity = 1.0  # type: ignore[misc]
    assert decision.chosen_key == "k8s_multi[pool=se]" and decision.home_key == "k8s_multi[pool=de]"
    assert (decision.chosen.conn_id, decision.zone, decision.home.zone) == ("k8s_multi", "SE", "DE")
    with pytest.raises(ValueError, match="'k8s_multi' is not among the decision's candidates"):
        dataclasses.replace(decision, chosen_key="k8s_multi")


def test_json_round_trip_keeps_every_field_through_every_change():
    decision = (
        _decision()
        .after_trigger({"status": "start", "cluster": "k8s_gb", "planned_start": (T0 + 3 * H).isoformat(),
                        "expected_intensity": 120.0, "fired_at": (T0 + 3 * H).isoformat(), "replans": 4,
                        "api_errors": 1})
        .refused("k8s_gb", "ApiException 403 Forbidden")
        .moved_to("k8s_multi[pool=se]", 45.5)
        .starting(T0 + 3 * H)
    )
    data = json.loads(json.dumps(decision.to_xcom()))
    again = Decision.from_xcom(data)
    assert again == decision
    assert again.to_xcom() == data


def test_a_replan_then_a_recheck_that_change_the_intensity_change_every_figure():
    """Item 2: the saving fields used to keep the first plan's values after a re-plan or the re-check."""
    decision = _decision()
    first = decision.to_xcom()
    # 500 W x 4 h = 2 kWh: 80 g against 800 g at home
    assert (first["expected_saving_pct"], first["expected_emissions_g"], first["expected_saving_g"]) == (
        90.0, pytest.approx(80.0), pytest.approx(720.0))
    replanned = decision.after_trigger({"status": "start", "cluster": "k8s_gb", "expected_intensity": 150.0})
    fresh = dataclasses.replace(_decision(), chosen_key="k8s_multi[pool=se]", expected_intensity=60.0,
                                decided_at=T0 + 3 * H)
    final = replanned.after_recheck(fresh).to_xcom()
    assert final["chosen_key"] == "k8s_multi[pool=se]" and final["zone"] == "SE"
    assert final["expected_intensity"] == 60.0 and final["expected_saving_pct"] == 85.0
    assert final["expected_emissions_g"] == pytest.approx(120.0) and final["expected_saving_g"] == pytest.approx(680.0)
    assert final["recheck"]["chosen_key"] == "k8s_multi[pool=se]"
    assert "at start, fresh data moved it to k8s_multi" in final["reason"]


def test_a_fallback_is_charged_on_the_candidate_it_runs_on():
    decision = _decision().refused("k8s_multi[pool=se]", "ApiException 403").moved_to("k8s_gb", 150.0).starting(T0)
    data = decision.to_xcom()
    assert (data["cluster"], data["zone"], data["carbon_conn_id"]) == ("k8s_gb", "GB", "uk")
    assert data["fallbacks"] == [{"key": "k8s_multi[pool=se]", "cluster": "k8s_multi", "error": "ApiException 403"}]
    assert data["expected_emissions_g"] == pytest.approx(300.0)


def test_a_record_from_0_2_0_is_read_and_its_stale_figures_are_derived_again():
    """0.2.0 pushed dicts with rounded, stored figures and no home_key; a waiting task may hold one."""
    old = {
        "chosen_cluster": "k8s_gb", "chosen_key": "k8s_gb", "zone": "GB", "home_cluster": "k8s_de", "home_zone": "DE",
        "planned_start": "2026-11-27T02:00:00Z", "deadline": None, "latest_start": "2026-11-27T08:00:00Z",
        "arrival": "2026-11-27T00:00:00Z", "decided_at": "2026-11-27T00:00:05Z", "waited": True,
        "expected_intensity": 100.0, "baseline_intensity": 400.0, "expected_saving_pct": 10.0,
        "policy": "carbon-aware", "reason": "GB later", "fail_open": False, "errors": {},
        "candidates": [{"cluster": "k8s_de", "key": "k8s_de", "conn_id": "k8s_de", "zone": "DE",
                        "carbon_conn_id": "em", "forecast_mean": 400.0},
                       {"cluster": "k8s_gb", "key": "k8s_gb", "conn_id": "k8s_gb", "zone": "GB",
                        "carbon_conn_id": "em", "forecast_mean": 100.0}],
        "signal": "average", "horizon_limited": False, "power_watts": 200.0, "power_source": "power_watts",
        "expected_duration_s": 7200.0, "expected_emissions_g": 1.0, "phase": "waiting",
    }  # fmt: skip
    record = Decision.from_xcom(old)
    assert (record.chosen.zone, record.home.zone, record.carbon_conn_id, record.phase) == ("GB", "DE", "em", "waiting")
    data = record.to_xcom()
    assert data["expected_saving_pct"] == 75.0 and data["expected_emissions_g"] == pytest.approx(40.0)


def test_an_old_record_without_keys_finds_a_pool_by_connection_only_when_that_is_unambiguous():
    rows = [{"cluster": "k8s_multi", "key": "k8s_multi[pool=de]", "zone": "DE", "node_selector": {"pool": "de"}},
            {"cluster": "k8s_multi", "key": "k8s_multi[pool=se]", "zone": "SE", "node_selector": {"pool": "se"}},
            {"cluster": "k8s_gb", "zone": "GB"}]
    base = {"planned_start": "2026-11-27T02:00:00Z", "candidates": rows, "home_key": "k8s_multi[pool=de]"}
    assert Decision.from_xcom({**base, "chosen_cluster": "k8s_gb"}).zone == "GB"
    ambiguous = Decision.from_xcom({**base, "chosen_cluster": "k8s_multi", "zone": "XX"})
    assert ambiguous.chosen_key == "k8s_multi" and ambiguous.zone == "XX"  # never a guessed pool


@pytest.mark.parametrize(("data", "message"), [
    ({"chosen_cluster": "a", "home_cluster": "a"}, "needs planned_start"),
    ({"chosen_cluster": "a", "home_cluster": "a", "planned_start": "soon"}, "planned_start 'soon' is not an ISO-8601"),
    ({"planned_start": "2026-11-27T02:00:00Z"}, "needs chosen_key"),
    (["not", "a", "dict"], "is a dict"),
])
def test_what_is_not_a_decision_is_refused_with_what_is_missing(data, message):
    with pytest.raises(ValueError, match=message):
        Decision.from_xcom(data)
