"""Every planning parameter of CarbonSchedule is a parameter of the operator and the sensor (issue 10).

The sensor had drifted: it lacked beyond_horizon, allow_mixed_signals and planning_timeout.
A new schedule parameter now fails here until every task that plans accepts it, with the same
default.
"""

from __future__ import annotations

import inspect

import pytest

from airflow_carbon_provider.operators.carbon_aware_pod import CarbonAwareKubernetesPodOperator
from airflow_carbon_provider.scheduling import CarbonSchedule
from airflow_carbon_provider.sensors.carbon_window import CarbonWindowSensor

SCHEDULE = {name: p.default for name, p in inspect.signature(CarbonSchedule).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("task", [CarbonAwareKubernetesPodOperator, CarbonWindowSensor])
def test_every_schedule_parameter_is_a_task_parameter_with_the_same_default(task):
    params = inspect.signature(task).parameters
    missing = sorted(set(SCHEDULE) - set(params))
    assert not missing, f"{task.__name__} lacks {missing}"
    differing = {n: (params[n].default, d) for n, d in SCHEDULE.items() if params[n].default != d}
    assert not differing, f"{task.__name__} defaults differ from CarbonSchedule's: {differing}"
    documented = inspect.getdoc(task) or ""
    undocumented = [n for n in SCHEDULE if f":param {n}:" not in documented]
    assert not undocumented, f"{task.__name__}'s docstring does not describe {undocumented}"


def test_the_sensor_passes_planning_timeout_on():
    sensor = CarbonWindowSensor(task_id="gate", zone="DE", expected_duration="1h", max_delay="2h",
                                planning_timeout=2.5, beyond_horizon="persist")
    schedule = sensor.carbon_schedule
    assert (schedule.planning_timeout, schedule.beyond_horizon) == (2.5, "persist")
