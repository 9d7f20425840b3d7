"""Backtest on the bundled real trace: the claims of the foundation issue, measured."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.backtest import BacktestError, backtest_policies, run_backtest
from airflow_carbon_provider.core.forecast import NoisyForecast, PerfectForecast
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from tests.conftest import utc

TRACE = read_trace(bundled_trace_path())
H = timedelta(hours=1)


def _run(zones, home, forecast, **kw):
    args = {"job_duration": 4 * H, "max_delay": 24 * H, "arrival_every": 6 * H}
    args.update(kw)
    return run_backtest(TRACE, zones=zones, home_zone=home, forecast=forecast, **args)


@pytest.mark.parametrize(("zones", "home"), [(["DE", "GB"], "DE"), (["GB", "DE"], "GB"),
                                             (["US-CAL-CISO", "CA-ON", "DE", "GB"], "US-CAL-CISO")])
@pytest.mark.parametrize("duration", [1, 4, 12])
def test_perfect_forecast_carbon_aware_matches_oracle_and_nobody_misses(zones, home, duration):
    result = _run(zones, home, PerfectForecast(TRACE), job_duration=duration * H)
    s = result.summaries
    assert s["carbon-aware"].mean_intensity <= s["oracle"].mean_intensity * 1.005
    assert s["oracle"].mean_intensity <= s["run-now"].mean_intensity
    for policy in backtest_policies(capacities=False):
        assert s[policy].deadline_misses == 0, policy
        assert s[policy].max_delay_h <= 24
    # Every outcome really is charged the actuals over its run.
    job = result.outcomes["carbon-aware"][3]
    assert job.intensity == pytest.approx(TRACE[job.zone].mean(job.start, job.start + duration * H))


@pytest.mark.parametrize("seed", [1, 2])
def test_noisy_forecast_carbon_aware_beats_every_other_non_oracle_policy(seed):
    for zones, home in ((["DE", "GB"], "DE"), (["DE", "GB", "US-CAL-CISO", "CA-ON"], "DE")):
        s = _run(zones, home, NoisyForecast(TRACE, 10, seed)).summaries
        ours = s["carbon-aware"].mean_intensity
        for policy in ("run-now", "rolling-window", "next-hour-window", "greenest-now", "threshold"):
            assert ours <= s[policy].mean_intensity, (zones, policy)
        assert 0 < s["carbon-aware"].fraction_of_oracle <= 1


def test_replanning_happens_and_helps_under_noise():
    """Re-planning every hour is never worse on average than deciding once at arrival."""
    model = NoisyForecast(TRACE, 20, 3)
    often = _run(["DE", "GB"], "DE", model, refresh=H)
    never = _run(["DE", "GB"], "DE", model, refresh=48 * H, last_look=False)
    assert sum(o.replans for o in often.outcomes["carbon-aware"]) > 0
    assert sum(o.replans for o in never.outcomes["carbon-aware"]) == 0
    assert often.summaries["carbon-aware"].mean_intensity <= never.summaries["carbon-aware"].mean_intensity


def test_a_waiting_job_takes_a_last_look_at_its_planned_start():
    """Without refreshes on the way, each job that waits re-plans once more at its planned start."""
    model = NoisyForecast(TRACE, 20, 3)
    looked = _run(["DE", "GB"], "DE", model, refresh=48 * H)
    waited = sum(1 for o in looked.outcomes["carbon-aware"] if o.start > o.arrival)
    assert waited and sum(o.replans for o in looked.outcomes["carbon-aware"]) >= waited
    assert looked.summaries["carbon-aware"].deadline_misses == 0


def test_arrivals_stop_where_the_last_deadline_fits():
    result = _run(["DE"], "DE", PerfectForecast(TRACE))
    last = result.arrivals[-1]
    assert last + 28 * H <= utc(2023, 4, 1) < last + 6 * H + 28 * H
    assert result.arrivals[0] == utc(2023, 3, 1)
    data = result.to_dict()
    assert data["jobs"] == len(result.arrivals) and data["policies"]["run-now"]["reduction_pct"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zones": ["DE", "XX"]}, "unknown zone"),
        ({"home": "GB", "zones": ["DE"]}, "--home-zone GB is not one of --zones"),
        ({"job_duration": timedelta(0)}, "--job-duration must be longer than zero"),
        ({"max_delay": -H}, "--max-delay must be zero or more"),
        ({"policies": ["greedy"]}, "unknown policy 'greedy'"),
        ({"forecast_horizon": H}, "shorter than --job-duration"),
        ({"start": utc(2023, 3, 31)}, "no job fits"),
        ({"start": utc(2022, 1, 1)}, "before the traces' common period"),
    ],
)
def test_bad_inputs(kwargs, message):
    zones = kwargs.pop("zones", ["DE", "GB"])
    home = kwargs.pop("home", zones[0])
    with pytest.raises(BacktestError, match=message):
        _run(zones, home, PerfectForecast(TRACE), **kwargs)


def test_traces_that_do_not_overlap(data_dir):
    """A German March 2023 slice and the UK's 14-18 March 2023 share no hour."""
    actuals = {"DE": TRACE["DE"].window(utc(2023, 3, 20), utc(2023, 3, 21)),
               "GB": read_trace(data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv")["GB"]}
    with pytest.raises(BacktestError, match="do not overlap"):
        run_backtest(actuals, zones=["DE", "GB"], home_zone="DE", job_duration=H, max_delay=H,
                     arrival_every=H, forecast=PerfectForecast(actuals))


class _Revising(PerfectForecast):
    """Perfect values, but claims to revise: forces per-window forecasts and real re-plans."""

    revises = True


@pytest.mark.parametrize("policy", ["carbon-aware", "rolling-window", "greenest-now"])
def test_the_whole_trace_fast_path_chooses_as_per_window_forecasts_and_replans_do(policy):
    fast = _run(["DE", "GB", "CA-ON"], "DE", PerfectForecast(TRACE), arrival_every=5 * H, policies=[policy])
    slow = _run(["DE", "GB", "CA-ON"], "DE", _Revising(TRACE), arrival_every=5 * H, policies=[policy])
    for name in ("oracle", policy):
        assert [(o.zone, o.start) for o in fast.outcomes[name]] == [(o.zone, o.start) for o in slow.outcomes[name]]
    assert [o.replans for o in fast.outcomes[policy]] == [o.replans for o in slow.outcomes[policy]]
