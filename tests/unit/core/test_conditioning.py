"""Conditioning forecasts on measured history: profile, history forecast, correction, shrinkage, extension."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from airflow_carbon_provider.core.backtest import run_backtest
from airflow_carbon_provider.core.conditioning import Profile, condition, forecast_from_history
from airflow_carbon_provider.core.forecast import HistoryForecast, PerfectForecast, RealisticForecast
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from tests.unit.core.helpers import T0, at, hourly

H = timedelta(hours=1)
DAYS = 10
# A clean diurnal shape: lowest at 13:00, highest at 01:00, the same every day.
SHAPE = [300 + 100 * math.cos(2 * math.pi * (h - 1) / 24) for h in range(24)]
HISTORY = hourly("Z", SHAPE * DAYS)
NOW = at(24 * 8 + 2)  # day 8, 02:00
TRACE = read_trace(bundled_trace_path())


def test_profile_is_the_daily_shape_and_reads_nothing_after_now():
    prof = Profile(HISTORY, NOW.timestamp())
    assert prof((NOW + 11 * H).timestamp()) == pytest.approx(SHAPE[13])
    assert prof.variance == pytest.approx(0.0, abs=1e-9)
    altered = hourly("Z", SHAPE * 8 + [p + 500 for p in SHAPE] * 2)  # the future changes...
    later = Profile(altered, NOW.timestamp())
    # ...except the interval in force at now, which is measured: the profile is unchanged.
    assert later((NOW + 30 * H).timestamp()) == prof((NOW + 30 * H).timestamp())


def test_forecast_from_history_starts_at_the_latest_value_and_relaxes_to_the_profile():
    values = SHAPE * 8 + [SHAPE[0] + 200, SHAPE[1] + 200, SHAPE[2] + 200] + SHAPE[3:] + SHAPE
    fc = forecast_from_history(hourly("Z", values), NOW, NOW + 48 * H)
    assert fc.start == NOW and fc.end == NOW + 48 * H
    assert fc.values[0] == SHAPE[2] + 200
    assert fc.values[1] == pytest.approx(SHAPE[3] + 200 * math.exp(-1 / 6))
    assert fc.values[40] == pytest.approx(SHAPE[(2 + 40) % 24], abs=1.0)
    assert min(range(24, 48), key=lambda k: fc.values[k]) == 35  # 13:00 the next day, the daily low


def test_a_perfect_forecast_is_left_alone_within_its_horizon():
    fc = PerfectForecast({"Z": HISTORY}).forecast("Z", NOW, 24 * H)
    out = condition(fc, HISTORY, NOW, NOW + 20 * H, sigma=lambda lead: 0.0)
    assert list(out.values) == list(fc.values) and list(out.bounds) == list(fc.bounds)


def test_near_term_correction_adds_the_error_against_the_latest_value_fading_with_lead():
    fc = hourly("Z", [v * 1.2 for v in SHAPE[2:] + SHAPE[:2]], start=NOW)
    out = condition(fc, HISTORY, NOW, NOW + 20 * H)
    error = SHAPE[2] - 1.2 * SHAPE[2]
    assert out.values[0] == pytest.approx(SHAPE[2])
    assert out.values[3] == pytest.approx(1.2 * SHAPE[5] + error * math.exp(-3 / 4))  # fades over 4 h


def test_shrinkage_pulls_noisy_values_toward_the_profile_more_at_longer_leads():
    rng = random.Random(3)
    noisy = hourly("Z", [v + rng.gauss(0, 30) for v in SHAPE * 10])
    fc = hourly("Z", [SHAPE[(2 + k) % 24] - 80 for k in range(24)], start=NOW)
    fc = hourly("Z", [noisy.value_at(NOW)] + list(fc.values[1:]), start=NOW)
    out = condition(fc, noisy, NOW, NOW + 20 * H, sigma=lambda lead: 0.05 + 0.2 * lead / 86400)
    prof = Profile(noisy, NOW.timestamp())
    moved = [(out.values[k] - fc.values[k]) / (prof(fc.bounds[k]) - fc.values[k]) for k in (2, 20)]
    assert 0 < moved[0] < moved[1] < 1


def test_a_short_forecast_is_extended_by_the_profile():
    fc = hourly("Z", [SHAPE[2], SHAPE[3]], start=NOW)  # two hours, like WattTime's 65 minutes
    out = condition(fc, HISTORY, NOW, NOW + 18 * H)
    assert out.end == NOW + 18 * H
    assert min(range(len(out)), key=lambda k: out.values[k]) == 11  # it sees the 13:00 low


def test_history_forecast_in_the_backtest_never_does_worse_than_greenest_now_across_zones():
    result = run_backtest(TRACE, zones=["DE", "GB", "CA-ON"], home_zone="DE", job_duration=4 * H, max_delay=12 * H,
                          arrival_every=6 * H, forecast=HistoryForecast(TRACE), robust=True,
                          policies=["carbon-aware", "greenest-now"])
    s = result.summaries
    assert s["carbon-aware"].mean_intensity <= s["greenest-now"].mean_intensity
    assert all(s[p].deadline_misses == 0 for p in s)


def test_robust_planning_on_perfect_forecasts_still_equals_the_oracle():
    result = run_backtest(TRACE, zones=["DE", "GB"], home_zone="DE", job_duration=4 * H, max_delay=24 * H,
                          arrival_every=6 * H, forecast=PerfectForecast(TRACE), robust=True,
                          policies=["carbon-aware"])
    assert result.summaries["carbon-aware"].mean_intensity == pytest.approx(result.summaries["oracle"].mean_intensity)


def test_robust_planning_under_realistic_error_is_at_least_as_good_as_raw():
    kw = {"zones": ["GB", "DE"], "home_zone": "GB", "job_duration": 4 * H, "max_delay": 12 * H,
          "arrival_every": 6 * H, "forecast": RealisticForecast(TRACE, 1), "policies": ["carbon-aware"]}
    raw = run_backtest(TRACE, **kw).summaries["carbon-aware"].mean_intensity
    robust = run_backtest(TRACE, robust=True, **kw).summaries["carbon-aware"].mean_intensity
    assert robust <= raw * 1.01


def test_t0_is_the_history_start():
    assert HISTORY.start == T0


def test_worth_waiting_asks_for_a_gain_beyond_the_forecast_error_at_that_lead():
    from airflow_carbon_provider.core.conditioning import worth_waiting

    def sigma(lead_s):
        return 0.1 if lead_s < 3600 else 0.3

    assert worth_waiting(100.0, 85.0, 1800, sigma)  # 15 % against a 10 % error
    assert not worth_waiting(100.0, 85.0, 7200, sigma)  # 15 % against a 30 % error
    assert not worth_waiting(100.0, 100.0, 60, lambda lead: 0.0)  # no gain, even when certain
