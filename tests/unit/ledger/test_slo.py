"""Objectives evaluated on hand-computed cases."""

from __future__ import annotations

import pytest

from airflow_carbon_provider.ledger.errors import ReportError
from airflow_carbon_provider.ledger.slo import Objectives, evaluate

AR = {"signal_kind": "average", "basis": "realised"}
ROWS = [
    {"started_by_latest_start": True, "emissions_g": 40.0, "baseline_emissions_g": 160.0,
     "realised_intensity": 100.0, "duration_s": 7200, **AR},
    {"started_by_latest_start": True, "emissions_g": 90.0, "baseline_emissions_g": 100.0,
     "realised_intensity": 300.0, "duration_s": 3600, **AR},
    {"started_by_latest_start": False, "emissions_g": 50.0, "baseline_emissions_g": 40.0,
     "realised_intensity": 150.0, "duration_s": 1800, **AR},
    {"started_by_latest_start": None, "emissions_g": None, "baseline_emissions_g": None},  # still waiting
]  # fmt: skip


def verdicts(**objectives):
    return {v["name"]: v for v in evaluate(ROWS, Objectives(**objectives))}


def test_on_time_share():
    v = verdicts()["on_time"]  # default: 100 %
    assert (v["actual"], v["runs"], v["met"]) == (66.67, 3, False)
    assert verdicts(on_time_pct=60)["on_time"]["met"] is True


def test_reduction_against_the_baseline():
    # baseline 160 + 100 + 40 = 300 g, actual 40 + 90 + 50 = 180 g: 40 % less
    assert verdicts(reduction_pct=30)["reduction"] == {
        "name": "reduction", "description": "emissions at least 30 % below the baseline (average, realised runs only)",
        "target": 30, "actual": 40.0, "runs": 3, "met": True, "signal_kind": "average", "basis": "realised"}
    assert verdicts(reduction_pct=50)["reduction"]["met"] is False


def test_low_carbon_compute_hours():
    # below 200 g/kWh: 2 h (100) + 0.5 h (150) of 3.5 h = 71.43 %
    v = verdicts(low_carbon_pct=70, low_carbon_below=200)["low_carbon"]
    assert (v["actual"], v["met"]) == (71.43, True)
    assert verdicts(low_carbon_pct=75, low_carbon_below=200)["low_carbon"]["met"] is False
    assert verdicts(low_carbon_pct=50, low_carbon_below=100)["low_carbon"]["actual"] == 0.0  # strictly below


def test_no_data_is_neither_met_nor_missed():
    out = evaluate([ROWS[3]], Objectives(reduction_pct=10))
    assert [v["met"] for v in out] == [None, None]


def test_objectives_come_from_config_and_flags_win():
    config = {"slo_on_time_pct": "95", "slo_reduction_pct": "20", "slo_low_carbon_pct": "off"}
    objectives = Objectives.from_config(config.get, reduction_pct=35.0)
    assert objectives == Objectives(on_time_pct=95.0, reduction_pct=35.0)
    assert Objectives.from_config({"slo_on_time_pct": "off"}.get).on_time_pct is None


@pytest.mark.parametrize("kwargs, match", [
    ({"reduction_pct": 120}, "between 0 and 100"),
    ({"low_carbon_pct": 50}, "both a share"),
    ({"low_carbon_pct": 50, "low_carbon_below": -1}, ">= 0"),
])  # fmt: skip
def test_bad_objectives(kwargs, match):
    with pytest.raises(ReportError, match=match):
        Objectives(**kwargs)
    with pytest.raises(ReportError, match="number"):
        Objectives.from_config({"slo_reduction_pct": "lots"}.get)
