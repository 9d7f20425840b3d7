"""The library API: parse-time validation and run-time decisions, including failing open."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.signals import splice_current
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.scheduling import (
    CarbonSchedule,
    ClusterCandidate,
    ScheduleConfigError,
    parse_candidates,
)
from tests.unit.core.helpers import at, hourly

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("clusters", "kwargs", "message"),
    [
        ([], {}, "cluster_conn_ids is empty"),
        ({"k8s_de": "Germany!"}, {}, "zone 'Germany!' is not a zone key"),
        ({"k8s_de": {"zone": "DE", "colour": "green"}}, {}, r"unknown key\(s\) \['colour'\]"),
        ({"k8s_de": {"zone": "DE", "capacity": 0}}, {}, "capacity must be a positive integer"),
        ({"a": {"zone": "DE", "signal": "average"}, "b": {"zone": "CAISO_NORTH", "signal": "marginal"}}, {},
         "mixes average and marginal"),
        (["k8s_de", "k8s_de"], {}, "more than once"),
        ([3], {}, "give Kubernetes connection ids as strings"),
        (["k8s_de"], {"expected_duration": "0h"}, "expected_duration must be longer than zero"),
        (["k8s_de"], {"expected_duration": "four"}, "is not a duration"),
        (["k8s_de"], {"max_delay": None}, "give max_delay"),
        (["k8s_de"], {"deadline": "2026-11-28T08:00:00Z"}, "not both"),
        (["k8s_de"], {"max_delay": "-1h"}, "is negative"),
        (["k8s_de"], {"policy": "greedy"}, "policy 'greedy' is unknown"),
        (["k8s_de"], {"min_saving_pct": -5}, "min_saving_pct must be a number >= 0"),
        (["k8s_de"], {"replan_interval": "10s"}, "under a minute"),
        (["k8s_de"], {"beyond_horizon": "guess"}, "beyond_horizon 'guess' is unknown"),
    ],
)
def test_parse_time_errors_are_one_clear_line(clusters, kwargs, message):
    args = {"expected_duration": "4h", "max_delay": "12h"}
    args.update(kwargs)
    with pytest.raises(ScheduleConfigError, match=message) as info:
        CarbonSchedule(clusters, **args)
    assert "\n" not in str(info.value)


def test_candidates_from_a_mapping_with_node_pools_of_one_cluster():
    cands = parse_candidates({
        "eu-north": {"conn_id": "k8s_multi", "zone": "SE-SE1", "node_selector": {"region": "eu-north"}},
        "eu-central": {"conn_id": "k8s_multi", "zone": "DE", "node_selector": {"region": "eu-central"},
                       "namespace": "batch"},
    })
    assert [c.key for c in cands] == ["k8s_multi[region=eu-north]", "k8s_multi[region=eu-central]"]
    assert ClusterCandidate.from_dict(cands[1].to_dict()) == cands[1]


def test_deadline_means_finish_by():
    s = CarbonSchedule(["k8s"], expected_duration="4h", deadline="2026-11-28T08:00:00Z")
    latest, finish = s.latest_start(at(0))
    assert finish.isoformat() == "2026-11-28T08:00:00+00:00"
    assert latest.isoformat() == "2026-11-28T04:00:00+00:00"
    with pytest.raises(ScheduleConfigError, match="has no timezone"):
        s.latest_start(at(0), deadline="2026-11-28T08:00:00")


def _schedule(**kw):
    args = {"expected_duration": "2h", "max_delay": "2h", "carbon_conn_id": "c"}
    args.update(kw)
    return CarbonSchedule({"k8s_a": "A", "k8s_b": "B"}, **args)


def _decide(schedule, series, errors=None, **kw):
    cands = schedule.resolve()
    return schedule.decide(cands, series, errors or {}, now=at(0), arrival=at(0), latest=at(2), finish_by=None, **kw)


def test_decision_is_the_planners_joint_choice():
    """A: 100 300 300 100, B: 200 200 50 50; 2 h job, latest 02:00 -> B at 02:00 (50 vs 200)."""
    s = _schedule()
    series = {("c", "A"): hourly("A", [100, 300, 300, 100]), ("c", "B"): hourly("B", [200, 200, 50, 50])}
    d = _decide(s, series)
    assert (d.chosen.conn_id, d.planned_start, d.waits) == ("k8s_b", at(2), True)
    record = d.to_xcom()
    assert record["chosen_cluster"] == "k8s_b" and record["home_cluster"] == "k8s_a"
    assert record["expected_saving_pct"] == 75.0 and record["zone"] == "B"
    assert {r["cluster"]: r["forecast_mean"] for r in record["candidates"]} == {"k8s_a": 200.0, "k8s_b": 50.0}
    assert "start at 2024-01-01T02:00:00Z (in 2 h) on k8s_b (B)" in d.reason


def test_other_candidate_without_data_is_left_out():
    s = _schedule()
    d = _decide(s, {("c", "A"): hourly("A", [100, 300, 300, 100])}, {("c", "B"): "CarbonServerError: 503"})
    assert d.chosen.conn_id == "k8s_a" and not d.fail_open
    assert d.errors == {"k8s_b": "CarbonServerError: 503"}
    assert "left out for lack of data: k8s_b" in d.reason


def test_home_without_data_fails_open_to_home_now():
    s = _schedule()
    d = _decide(s, {("c", "B"): hourly("B", [1, 1, 1, 1])}, {("c", "A"): "CarbonTimeoutError: timed out"})
    assert (d.chosen.conn_id, d.planned_start, d.fail_open, d.waits) == ("k8s_a", at(0), True, False)
    assert "running now on the home cluster k8s_a (fail_open)" in d.reason
    with pytest.raises(CarbonDataError, match="carbon data for the home zone A is unavailable"):
        _decide(_schedule(fail_open=False), {}, {("c", "A"): "x", ("c", "B"): "y"})


def test_a_forecast_that_starts_after_now_is_spliced_with_the_current_value():
    fc = hourly("A", [50, 60], start=at(1))
    current = hourly("A", [300])
    spliced = splice_current(current, fc, at(0.25))
    assert spliced.start == at(0.25) and spliced.values[:2] == [300, 50]


def test_splice_current_keeps_a_forecast_with_gaps_and_never_stretches_now_over_unknown_hours():
    """The current hour is known, the forecast's first two hours are null: they stay unknown."""
    import math

    from airflow_carbon_provider.core.signals import IntensitySeries

    current = IntensitySeries.from_arrays("DE", "average", [at(0).timestamp(), at(1).timestamp()], [500.0])
    bounds = [at(h).timestamp() for h in (3, 4, 5, 6, 7)]
    forecast = IntensitySeries.from_arrays("DE", "average", bounds, [20.0, math.nan, 20.0, 300.0], allow_gaps=True,
                                           is_forecast=True)
    spliced = splice_current(current, forecast, at(0.25))
    assert spliced.value_at(at(0.5)) == 500.0
    assert spliced.has_gaps and math.isnan(spliced.values[1])  # 01:00-03:00 unknown, not 500
    assert spliced.value_at(at(3.5)) == 20.0
