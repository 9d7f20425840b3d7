"""CarbonWindowSensor: validation, templated parameters, poke mode on the bundled trace."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import airflow_carbon_provider.scheduling as scheduling
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
    context = {"ti": SimpleNamespace(start_date=T0)}
    first = sensor.poke(context)
    assert not first.is_done
    planned = datetime.fromisoformat(first.xcom_value["planned_start"].replace("Z", "+00:00"))
    assert planned > T0 and first.xcom_value["zone"] in ("DE", "GB")
    clock["now"] = planned
    second = sensor.poke(context)
    assert second.is_done
    assert second.xcom_value["planned_start"] <= first.xcom_value["latest_start"]
    assert planned - T0 <= timedelta(hours=12)
