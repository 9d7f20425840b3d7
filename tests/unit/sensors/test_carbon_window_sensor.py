"""CarbonWindowSensor: validation, templated parameters, poke mode on the bundled trace."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import airflow_carbon_provider.scheduling.schedule as scheduling
from airflow_carbon_provider.scheduling import ScheduleConfigError
from airflow_carbon_provider.sensors.carbon_window import CarbonWindowSensor

UTC = timezone.utc
T0 = datetime(2024, 1, 6, 9, 0, tzinfo=UTC)  # the bundled trace's 2023-03-06 09:00Z (see the trigger tests)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "give zone='DE' or zones"), ({"zone": "DE", "zones": ["GB"]}, "not both or neither"),
     ({"zone": "D E"}, "is not a zone key"), ({"zone": "DE", "expected_duration": "0m"}, "longer than zero")],
)
def test_parse_time_errors(kwargs, message):
    args = {"task_id": "gate", "expected_duration": "2h", "max_delay": "6h"}
    args.update(kwargs)
    with pytest.raises(ScheduleConfigError, match=message):
        CarbonWindowSensor(**args)


def test_templated_durations_are_checked_when_rendered():
    sensor = CarbonWindowSensor(task_id="gate", zone="DE", expected_duration="{{ params.d }}", max_delay="6h")
    sensor.expected_duration = "zero"  # what a bad template would render to
    with pytest.raises(ScheduleConfigError, match="'gate': expected_duration 'zero' is not a duration"):
        sensor.carbon_schedule  # noqa: B018


def test_poke_mode_waits_then_opens(monkeypatch):
    """Poke at 09:00 replayed: the plan waits; poke again at the planned start: done."""
    sensor = CarbonWindowSensor(task_id="gate", zones=["DE", "GB"], expected_duration="3h", max_delay="12h",
                                deferrable=False)
    clock = {"now": T0}
    monkeypatch.setattr(scheduling, "utcnow", lambda: clock["now"])
    monkeypatch.setattr("airflow_carbon_provider.sensors.carbon_window.utcnow", lambda: clock["now"])
    pushed = {}
    context = {"ti": SimpleNamespace(start_date=T0, xcom_push=lambda key, value: pushed.update({key: value}))}
    first = sensor.poke(context)
    assert not first.is_done and not pushed
    planned = sensor.carbon_schedule.plan(T0, T0).planned_start
    assert T0 < planned <= T0 + timedelta(hours=12)
    clock["now"] = planned
    second = sensor.poke(context)
    assert second.is_done
    decision = second.xcom_value
    assert decision["zone"] in ("DE", "GB") and decision["phase"] == "open"
    assert decision["actual_start"] == planned.isoformat().replace("+00:00", "Z")
    assert pushed["carbon_decision"] == decision


def test_deferrable_sensor_returns_at_once_when_the_window_is_open(monkeypatch):
    """With no slack the window is now: execute returns the stamped decision without deferring."""
    sensor = CarbonWindowSensor(task_id="gate", zone="DE", expected_duration="1h", max_delay="0h")
    monkeypatch.setattr(scheduling, "utcnow", lambda: T0)
    monkeypatch.setattr("airflow_carbon_provider.sensors.carbon_window.utcnow", lambda: T0)
    pushed = {}
    context = {"ti": SimpleNamespace(start_date=T0, xcom_push=lambda key, value: pushed.update({key: value}))}
    decision = sensor.execute(context)
    assert decision["actual_start"] == "2024-01-06T09:00:00Z" and decision["waited"] is False
    assert pushed["carbon_decision"] == decision
