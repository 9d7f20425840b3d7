"""Realised intensity after a run, from the carbontrace hook replaying the bundled trace."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.hooks.carbontrace import CarbonTraceHook
from airflow_carbon_provider.ledger.realised import realised_outcome
from tests.unit.hooks.conftest import FixedClock
from tests.unit.ledger.conftest import sample_decision

UTC = timezone.utc
ARRIVAL = datetime(2026, 11, 27, 0, tzinfo=UTC)
START = ARRIVAL + timedelta(hours=2)
END = START + timedelta(hours=2)
NOW = datetime(2026, 11, 27, 9, 53, tzinfo=UTC)
TRACE = read_trace(bundled_trace_path())


@pytest.fixture
def hook(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", raising=False)
    return CarbonTraceHook(cache=IntensityCache(), clock=FixedClock(NOW))


def trace_mean(hook, zone, start, end):
    replayed = hook.get_config().options["replay"].clock.replayed
    return TRACE[zone].mean(replayed(start), replayed(end))


def test_realised_emissions_and_baseline_from_history(hook):
    out = realised_outcome(sample_decision(), END, hook_for=lambda _: hook)
    gb = trace_mean(hook, "GB", START, END)
    de = trace_mean(hook, "DE", ARRIVAL, ARRIVAL + timedelta(hours=2))  # home, at the original arrival
    assert out["intensity_source"] == "history"
    assert out["realised_intensity"] == pytest.approx(gb, abs=1e-3)
    assert out["baseline_intensity"] == pytest.approx(de, abs=1e-3)
    assert out["energy_kwh"] == pytest.approx(0.4)  # 200 W x 2 h
    assert out["emissions_g"] == pytest.approx(0.4 * gb, abs=1e-3)
    assert out["baseline_emissions_g"] == pytest.approx(0.4 * de, abs=1e-3)
    assert out["saving_g"] == pytest.approx(0.4 * (de - gb), abs=2e-3)
    assert out["delay_s"] == 7200 and out["duration_s"] == 7200
    assert out["started_by_latest_start"] is True and out["deadline_met"] is True
    assert out["cluster"] == "k8s_gb" and out["zone"] == "GB" and out["home_zone"] == "DE"


def test_missing_home_history_uses_forecasts_for_both_sides_and_says_so(hook):
    decision = sample_decision(home_zone="FR", candidates=[{"cluster": "k8s_de", "zone": "FR"},
                                                           {"cluster": "k8s_gb", "zone": "GB"}])
    out = realised_outcome(decision, END, hook_for=lambda _: hook)
    assert out["intensity_source"] == "forecast"
    assert (out["realised_intensity"], out["baseline_intensity"]) == (100.0, 400.0)  # never GB history vs FR forecast
    assert out["emissions_g"] == pytest.approx(40.0) and out["saving_g"] == pytest.approx(120.0)
    assert any("FR" in note for note in out["notes"])


def test_no_history_and_no_forecast_claims_no_saving(hook):
    decision = sample_decision(zone="XX", candidates=[], expected_intensity=None, baseline_intensity=None,
                               fail_open=True)
    out = realised_outcome(decision, END, hook_for=lambda _: hook)
    assert out["intensity_source"] == "none"
    assert out["emissions_g"] is None and out["baseline_emissions_g"] is None and out["saving_g"] is None
    assert out["energy_kwh"] == pytest.approx(0.4) and out["fail_open"] is True


def test_a_fallback_cluster_is_charged_in_its_own_zone(hook):
    decision = sample_decision(cluster="k8s_de", chosen_cluster="k8s_de",
                               fallbacks=[{"cluster": "k8s_gb", "error": "ApiException 403 Forbidden"}])
    out = realised_outcome(decision, END, hook_for=lambda _: hook)
    assert out["zone"] == "DE" and out["fallback_used"] is True
    assert out["realised_intensity"] == pytest.approx(trace_mean(hook, "DE", START, END), abs=1e-3)


def test_a_late_start_misses_the_deadline():
    decision = sample_decision(actual_start="2026-11-27T08:05:00Z")
    out = realised_outcome(decision, datetime(2026, 11, 27, 10, tzinfo=UTC), hook_for=lambda _: None)
    assert out["started_by_latest_start"] is False and out["deadline_met"] is False
    assert out["intensity_source"] == "forecast"  # the hook failed: forecasts


def test_two_node_pools_on_one_connection_are_charged_the_pool_the_run_used(hook):
    """Issue 9 item 2: a run in the SE pool of k8s_multi was looked up by connection id and charged DE."""
    decision = sample_decision(cluster="k8s_multi", chosen_cluster="k8s_multi", chosen_key="k8s_multi[pool=gb]",
                               zone="GB", home_cluster="k8s_multi", home_key="k8s_multi[pool=de]",
                               home_zone="DE", candidates=[
                                   {"cluster": "k8s_multi", "key": "k8s_multi[pool=de]", "zone": "DE",
                                    "node_selector": {"pool": "de"}},
                                   {"cluster": "k8s_multi", "key": "k8s_multi[pool=gb]", "zone": "GB",
                                    "node_selector": {"pool": "gb"}}])
    out = realised_outcome(decision, END, hook_for=lambda _: hook)
    assert out["zone"] == "GB" and out["home_zone"] == "DE"
    assert out["realised_intensity"] == pytest.approx(trace_mean(hook, "GB", START, END), abs=1e-3)
