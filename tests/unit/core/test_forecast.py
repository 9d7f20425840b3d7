"""Forecast models: perfect, noisy (calibrated, consistent, seeded) and real archives."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.forecast import (
    ArchiveForecast,
    ForecastError,
    NoisyForecast,
    PerfectForecast,
    RealisticForecast,
    parse_forecast_spec,
    realised_mape,
)
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from tests.conftest import utc

TRACE = read_trace(bundled_trace_path())
ISSUES = [utc(2023, 3, 1) + timedelta(hours=h) for h in range(0, 700, 3)]
DAY = timedelta(hours=24)


def test_perfect_forecast_is_the_actuals_from_issue_time():
    fc = PerfectForecast(TRACE).forecast("DE", utc(2023, 3, 2, 10, 30), DAY)
    assert fc.start == utc(2023, 3, 2, 10, 30) and fc.end == utc(2023, 3, 3, 10, 30)
    assert fc.values[1] == TRACE["DE"].value_at(utc(2023, 3, 2, 11))


def test_noisy_forecast_realises_the_requested_mape():
    """Averaged over four zones and three seeds the MAPE over 0-24 h leads is within 10 % of 10."""
    mapes = [realised_mape(NoisyForecast(TRACE, 10, seed), TRACE, zone, ISSUES, DAY)
             for zone in TRACE for seed in (1, 2, 3)]
    assert sum(mapes) / len(mapes) == pytest.approx(10, rel=0.1)
    assert realised_mape(NoisyForecast(TRACE, 0, 1), TRACE, "DE", ISSUES, DAY) == 0


def test_noise_grows_with_lead_time():
    model = NoisyForecast(TRACE, 10, 1)
    near = realised_mape(model, TRACE, "DE", ISSUES, timedelta(hours=3))
    far = realised_mape(model, TRACE, "DE", ISSUES, timedelta(hours=48))
    assert near < far / 2


def test_the_current_interval_is_exact():
    model = NoisyForecast(TRACE, 30, 1)
    for issued in ISSUES[:20]:
        assert model.forecast("GB", issued, DAY).values[0] == TRACE["GB"].value_at(issued)


def test_refreshes_are_consistent_not_fresh_noise():
    """A later issue sees the same error for the same hour, scaled down by the shorter lead."""
    model = NoisyForecast(TRACE, 20, 4)
    target = utc(2023, 3, 10, 12)
    actual = TRACE["DE"].value_at(target)
    errors = []
    for lead_h in (24, 12, 6, 1):
        fc = model.forecast("DE", target - timedelta(hours=lead_h), DAY + timedelta(hours=1))
        errors.append(fc.value_at(target) / actual - 1)
    assert all(e != 0 for e in errors)
    assert len({e > 0 for e in errors}) == 1  # same sign: the same latent error
    assert [abs(e) for e in errors] == sorted((abs(e) for e in errors), reverse=True)


def test_same_seed_same_forecast_other_seed_other_forecast():
    a = NoisyForecast(TRACE, 10, 7).forecast("DE", ISSUES[5], DAY)
    assert a == NoisyForecast(TRACE, 10, 7).forecast("DE", ISSUES[5], DAY)
    assert a.values != NoisyForecast(TRACE, 10, 8).forecast("DE", ISSUES[5], DAY).values


def test_archive_replays_real_forecasts_and_fills_the_gap_before_the_first_point(data_dir):
    actuals = read_trace(data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv")
    model = parse_forecast_spec(f"archive:{data_dir / 'traces/uk_gb_forecasts_2023-03-14_16.csv'}", actuals)
    assert isinstance(model, ArchiveForecast)
    fc = model.forecast("GB", utc(2023, 3, 15, 2, 10), timedelta(hours=6))
    # newest issue by then: 01:01Z; its first half-hour (01:00) still covers part of 01:00-01:30
    assert fc.start == utc(2023, 3, 15, 2, 10) and fc.end == utc(2023, 3, 15, 8, 10)
    assert fc.issued_at == utc(2023, 3, 15, 2, 10)
    with pytest.raises(ForecastError, match="has no forecasts for zone"):
        model.forecast("DE", utc(2023, 3, 15), DAY)


@pytest.mark.parametrize("spec", ["psychic", "noisy:", "noisy:ten", "noisy:10:x", "noisy:1:2:3", "archive:", "noisy:150",
                                  "realistic:x", "realistic:1:2"])
def test_bad_specs_are_refused(spec):
    with pytest.raises(ForecastError):
        parse_forecast_spec(spec, TRACE)


def test_realistic_error_is_large_at_short_leads_and_grows_to_the_neso_level():
    """Calibrated on NESO's archive: about 11 % within 3 h, about 20 % over 24 h (0 at lead 0)."""
    model = RealisticForecast(TRACE, 1)
    near = sum(realised_mape(model, TRACE, z, ISSUES, timedelta(hours=3)) for z in TRACE) / len(TRACE)
    far = sum(realised_mape(model, TRACE, z, ISSUES, DAY) for z in TRACE) / len(TRACE)
    assert 5 < near < 12 and 15 < far < 24
    assert far > near * 1.5


def test_realistic_error_is_shared_within_an_issue_cycle_and_revised_after():
    model = RealisticForecast(TRACE, 2)
    target = utc(2023, 3, 10, 20)
    early = model.forecast("DE", utc(2023, 3, 10, 0), DAY).value_at(target)
    again = model.forecast("DE", utc(2023, 3, 10, 0), DAY).value_at(target)
    later = model.forecast("DE", utc(2023, 3, 10, 12), DAY).value_at(target)
    assert early == again and later != early
    assert model.forecast("DE", utc(2023, 3, 10, 1), DAY).values[0] == TRACE["DE"].value_at(utc(2023, 3, 10, 1))
    assert parse_forecast_spec("realistic:2", TRACE).name == "realistic:2"
