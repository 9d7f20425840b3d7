"""Issue 8 item 11: inputs that used to pass parse time or raise raw errors give one clear line."""

from __future__ import annotations

import pytest

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.scheduling import CarbonSchedule, ScheduleConfigError


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"expected_duration": "99999999d"}, "expected_duration '99999999d' is longer than 366 days"),
    ({"expected_duration": 1e20}, "expected_duration 1e\\+20 is longer than 366 days"),
    ({"max_delay": "99999999999999999999d"}, "max_delay .* is longer than 366 days"),
    ({"max_delay": 10**30}, "max_delay .* is longer than 366 days"),
])
def test_huge_durations_are_one_clear_line(kwargs, message):
    args = {"expected_duration": "1h", "max_delay": "2h", **kwargs}
    with pytest.raises(ScheduleConfigError, match=message) as info:
        CarbonSchedule(["k8s_de"], **args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("zones", [{"k8s_de": "de"}, {"k8s_se": {"zone": "se-se1"}}])
def test_a_lower_case_zone_is_refused_at_parse_time_with_the_upper_case_key(zones):
    expected = next(iter(zones.values()))
    expected = (expected if isinstance(expected, str) else expected["zone"]).upper()
    with pytest.raises(ScheduleConfigError, match=f"lower case.*use '{expected}'"):
        CarbonAwareKubernetesPodOperator(task_id="t", image="busybox", cluster_conn_ids=zones,
                                         expected_duration="1h", max_delay="2h")


def test_per_candidate_cluster_fields_are_type_checked():
    with pytest.raises(ScheduleConfigError, match="in_cluster must be true or false"):
        CarbonSchedule({"k8s_de": {"zone": "DE", "in_cluster": "yes"}}, expected_duration="1h", max_delay="1h")
