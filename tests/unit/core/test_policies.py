"""Policies as objects (issue 10 item 3): one registry read by the planner, the backtest and the CLI."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from airflow_carbon_provider.cli import main
from airflow_carbon_provider.core import policies
from airflow_carbon_provider.core.backtest import backtest_policies, run_backtest
from airflow_carbon_provider.core.forecast import PerfectForecast
from airflow_carbon_provider.core.planner import POLICIES, Candidate, PlanningError, plan
from airflow_carbon_provider.core.policies import Choice, PlanContext, Policy, get_policy, policy_names
from airflow_carbon_provider.scheduling import CarbonSchedule, ScheduleConfigError
from tests.unit.core.helpers import at, hourly


class LatestStart(Policy):
    """A toy policy: always wait for the latest start, at home (what a user might add)."""

    name = "latest-start"
    summary = "start at the latest start on the home cluster"
    spatial = False

    def choose(self, ctx: PlanContext) -> Choice:
        from airflow_carbon_provider.core.windows import Option

        start = ctx.now + timedelta(seconds=ctx.t_latest - ctx.t_now)
        zone = ctx.zones[ctx.home.zone]
        return Choice(Option(ctx.home, start, ctx.mean(zone, ctx.t_latest)), (), "policy latest-start: wait")


@pytest.fixture
def toy_policy():
    policies.register(LatestStart)
    yield get_policy("latest-start")
    del policies._REGISTRY["latest-start"]


def test_the_registry_holds_the_planners_policies_in_their_order():
    assert POLICIES == policy_names() == (
        "carbon-aware", "rolling-window", "next-hour-window", "greenest-now", "threshold", "run-now")
    assert backtest_policies() == (
        "run-now", "oracle", "carbon-aware", "carbon-aware-uncoordinated", "rolling-window", "next-hour-window",
        "greenest-now", "threshold")
    assert [get_policy(n).spatial for n in ("carbon-aware", "rolling-window", "greenest-now", "run-now")] == [
        True, False, True, False]
    assert get_policy("carbon-aware").replans and get_policy("oracle").offline


def test_an_unknown_policy_names_the_known_ones():
    with pytest.raises(PlanningError, match="policy 'fastest' is unknown; use one of: carbon-aware, rolling-window"):
        get_policy("fastest")


def test_a_policy_name_is_registered_once():
    with pytest.raises(ValueError, match="'carbon-aware' is registered already"):
        policies.register(type("Again", (policies.CarbonAware,), {}))


def test_a_task_cannot_use_the_offline_oracle():
    with pytest.raises(ScheduleConfigError, match="policy 'oracle' plans on what really happened and exists only in "
                                                  "the backtest"):
        CarbonSchedule(["k8s_de"], expected_duration="1h", max_delay="2h", policy="oracle")
    with pytest.raises(ScheduleConfigError, match="policy 'carbon-aware-uncoordinated' is a comparison for the "
                                                  "backtest \\(a task plans alone with coordinate=False instead\\)"):
        CarbonSchedule(["k8s_de"], expected_duration="1h", max_delay="2h", policy="carbon-aware-uncoordinated")


def test_a_new_policy_is_one_class_the_planner_backtest_and_cli_all_read(toy_policy):
    # the planner
    cands = [Candidate("a", "A"), Candidate("b", "B")]
    forecasts = {"A": hourly("A", [100, 300, 300, 100]), "B": hourly("B", [10, 10, 10, 10])}
    result = plan(cands, forecasts, now=at(0), duration=timedelta(hours=1), latest_start=at(3),
                  policy="latest-start")
    assert (result.chosen.candidate.cluster_id, result.chosen.start, result.chosen.mean_intensity) == ("a", at(3), 100)
    assert result.reason == "policy latest-start: wait"
    # the backtest
    series = {"A": hourly("A", [100, 300, 300, 100] * 6), "B": hourly("B", [10] * 24)}
    bt = run_backtest(series, zones=["A", "B"], home_zone="A", job_duration=timedelta(hours=1),
                      max_delay=timedelta(hours=3), arrival_every=timedelta(hours=4),
                      forecast=PerfectForecast(series), policies=["latest-start"])
    assert "latest-start" in bt.summaries and "latest-start" in backtest_policies()
    # the CLI: accepted, run and reported, on the bundled trace
    out = io.StringIO()
    assert main(["backtest", "--policy", "latest-start", "--zones", "DE,GB", "--job-duration", "1h",
                 "--max-delay", "3h", "--start", "2023-03-10T00:00:00Z", "--end", "2023-03-11T00:00:00Z",
                 "--format", "json"], out) == 0
    assert '"latest-start"' in out.getvalue()
