"""Issue 8 items 9 and 11: the sensor opens when its trigger fails, anchors reschedules, refuses zones='DE'."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

import airflow_carbon_provider.scheduling.schedule as scheduling
from airflow_carbon_provider.scheduling import ScheduleConfigError
from airflow_carbon_provider.sensors.carbon_window import CarbonWindowSensor

UTC = timezone.utc
T0 = datetime(2024, 1, 6, 9, 0, tzinfo=UTC)


def _ti(pushed, waiting=None, **kw):
    return SimpleNamespace(map_index=-1, xcom_push=lambda key, value: pushed.update({key: value}),
                           xcom_pull=lambda **_: dict(waiting) if waiting else None, **kw)


def test_zones_given_as_one_string_is_refused_with_the_fix():
    with pytest.raises(ScheduleConfigError, match=r"zones='DE' is one string; give a list, zones=\['DE'\]") as info:
        CarbonWindowSensor(task_id="gate", zones="DE", expected_duration="1h", max_delay="2h")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("error", ["Trigger timeout", "Trigger failure: RuntimeError"])
def test_a_failed_or_timed_out_trigger_opens_the_window_and_says_why(error):
    sensor = CarbonWindowSensor(task_id="gate", zones=["DE", "GB"], expected_duration="1h", max_delay="6h")
    pushed: dict = {}
    waiting = {"phase": "waiting", "chosen_cluster": "GB", "zone": "GB", "home_cluster": "DE", "home_zone": "DE",
               "planned_start": "2024-01-06T12:00:00Z", "decided_at": "2024-01-06T09:00:00Z",
               "reason": "wait for GB"}
    result = sensor.resume_execution("__fail__", {"error": error}, {"ti": _ti(pushed, waiting)})
    assert result["phase"] == "open" and result["trigger"] == {"status": "trigger_failed", "error": error}
    assert error in result["reason"] and pushed["carbon_decision"]["phase"] == "open"


def test_reschedule_mode_anchors_max_delay_on_the_first_poke(monkeypatch):
    """Each reschedule is a new start_date; the latest start stays first poke + max_delay."""
    sensor = CarbonWindowSensor(task_id="gate", zones=["DE", "GB"], expected_duration="1h", max_delay="6h",
                                deferrable=False, mode="reschedule")
    later = T0 + timedelta(hours=4)
    monkeypatch.setattr(scheduling, "utcnow", lambda: later)
    monkeypatch.setattr("airflow_carbon_provider.sensors.carbon_window.utcnow", lambda: later)
    ti = _ti({}, start_date=later, get_first_reschedule_date=lambda context: T0)
    decision = sensor._decide({"ti": ti}, sensor.carbon_schedule)
    assert decision.latest_start == T0 + timedelta(hours=6)
    assert decision.arrival == T0
