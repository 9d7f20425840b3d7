"""Every number from an API is bounded at the edge: finite, representable and a plausible intensity.

A parser may only raise the typed errors of :mod:`airflow_carbon_provider.exceptions`; a
400-digit integer must not escape as ``OverflowError``, and ``1e308`` must not reach the
planner, where it integrates to ``inf``.
"""

from __future__ import annotations

import copy

import pytest

from airflow_carbon_provider.core.signals import MAX_INTENSITY
from airflow_carbon_provider.exceptions import CarbonParseError
from airflow_carbon_provider.sources import electricitymaps as em
from airflow_carbon_provider.sources import ukcarbonintensity as uk
from airflow_carbon_provider.sources import watttime as wt
from airflow_carbon_provider.sources._http import MAX_RETRY_AFTER, parse_retry_after
from tests.unit.sources.conftest import sample

HUGE_INT = 10**400
HUGE = pytest.param(HUGE_INT, id="10**400")
MINUS_HUGE = pytest.param(-HUGE_INT, id="-10**400")
LBS_PER_G_KWH = 1 / 0.45359237


def _em_forecast(value):
    body = sample("electricitymaps", "carbon-intensity_forecast.reconstructed-24h.DE.json")
    body["forecast"][3]["carbonIntensity"] = value
    return body


@pytest.mark.parametrize("value", [HUGE, MINUS_HUGE, 1e308, 5000.5, 10**6])
def test_an_impossible_electricity_maps_intensity_is_a_parse_error_naming_the_field(value):
    with pytest.raises(CarbonParseError) as info:
        em.parse_forecast(_em_forecast(value), "DE")
    assert info.value.field.startswith("forecast[3]")
    assert len(str(info.value)) < 300  # the 400 digits are not echoed


def test_the_plausible_maximum_itself_is_accepted():
    series = em.parse_forecast(_em_forecast(MAX_INTENSITY), "DE")
    assert series.values[3] == MAX_INTENSITY


def _wt_historical(value, **meta):
    body = copy.deepcopy(sample("watttime", "historical.docs-example.json"))
    body["data"][0]["value"] = value
    body["meta"].update(meta)
    return body


def test_the_bound_applies_after_converting_lbs_per_mwh():
    below = MAX_INTENSITY * LBS_PER_G_KWH - 1  # about 11,022 lbs/MWh
    assert wt.parse_historical(_wt_historical(below), "CAISO_NORTH").values[0] <= MAX_INTENSITY
    with pytest.raises(CarbonParseError) as info:
        wt.parse_historical(_wt_historical(below + 2), "CAISO_NORTH")
    assert info.value.field == "data[0]" and "5000" in str(info.value)


@pytest.mark.parametrize("value", [HUGE, 1e308])
def test_a_huge_watttime_value_is_a_parse_error(value):
    with pytest.raises(CarbonParseError):
        wt.parse_historical(_wt_historical(value), "CAISO_NORTH")


def test_a_huge_data_point_period_is_a_parse_error():
    with pytest.raises(CarbonParseError) as info:
        wt.parse_historical(_wt_historical(400, data_point_period_seconds=HUGE_INT), "CAISO_NORTH")
    assert info.value.field == "meta.data_point_period_seconds" and len(str(info.value)) < 300


def test_a_huge_uk_intensity_is_a_parse_error():
    body = copy.deepcopy(sample("ukcarbonintensity", "intensity_fw48h_2023-03-14T1201Z.json"))
    body["data"][0]["intensity"]["forecast"] = HUGE_INT
    with pytest.raises(CarbonParseError) as info:
        uk.parse_national(body, "GB", field="forecast")
    assert info.value.field == "data[0].intensity.forecast"


@pytest.mark.parametrize("header", [pytest.param("1" + "0" * 400, id="400-digits"), "1e300", "99999999999"])
def test_a_huge_retry_after_is_capped(header):
    assert parse_retry_after(header) == MAX_RETRY_AFTER
