"""The backtest's picture: detailed for short periods, weekly aggregates for long ones (issue 14 item 6)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.backtest import JobOutcome, run_backtest
from airflow_carbon_provider.core.backtest_plot import draw_backtest, weekly
from airflow_carbon_provider.core.forecast import parse_forecast_spec
from airflow_carbon_provider.core.signals import IntensitySeries
from tests.unit.core.helpers import hourly

pytest.importorskip("matplotlib")
UTC = timezone.utc
T0 = datetime(2023, 1, 2, tzinfo=UTC)


def _trace(zone: str, days: int, base: float, swing: float) -> IntensitySeries:
    return hourly(zone, [base + swing * ((h % 24) < 6) for h in range(24 * days)], start=T0)


def _result(days: int):
    actuals = {"DE": _trace("DE", days, 400, -200), "GB": _trace("GB", days, 200, 50)}
    return actuals, run_backtest(actuals, zones=["DE", "GB"], home_zone="DE", job_duration=timedelta(hours=2),
                                 max_delay=timedelta(hours=12), arrival_every=timedelta(hours=12),
                                 forecast=parse_forecast_spec("perfect", actuals), policies=["carbon-aware"])


def test_weekly_groups_jobs_by_the_week_of_their_arrival():
    jobs = [JobOutcome(T0 + timedelta(days=d), "GB" if d % 2 else "DE", T0 + timedelta(days=d), 100.0 + d)
            for d in range(10)]
    weeks = weekly(jobs, T0)
    assert list(weeks) == [T0, T0 + timedelta(days=7)]
    middle, mean, zones = weeks[T0]
    assert middle == T0 + timedelta(days=3) and mean == pytest.approx(103.0) and zones == {"DE": 4, "GB": 3}
    assert weeks[T0 + timedelta(days=7)][2] == {"GB": 2, "DE": 1}


def test_a_long_period_is_drawn_by_week_and_a_short_one_in_detail():
    import matplotlib.pyplot as plt

    actuals, long_run = _result(days=120)
    fig = draw_backtest(long_run, actuals)
    try:
        top, bottom = fig.axes
        assert "by week" in top.get_title()
        assert len(bottom.patches) == 2 * 18  # one bar per week and zone (120 days of arrivals: 18 weeks)
    finally:
        plt.close(fig)
    actuals, short_run = _result(days=10)
    fig = draw_backtest(short_run, actuals)
    try:
        assert len(fig.axes) == 1 and "starts (triangles" in fig.axes[0].get_title()
    finally:
        plt.close(fig)
