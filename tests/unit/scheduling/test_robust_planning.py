"""The task plans on forecasts conditioned on measured history, as the backtest's carbon-aware does.

Over real loopback HTTP (pytest-httpserver), an Electricity Maps connection serves a forecast
biased low in its near term: it says 150 for the next four hours while the latest measured
value is 400. Conditioned on that measurement (the error fades over hours), the plan waits for
the night's genuinely lower hours; on the raw forecast it would start now. The worker's plan
and the trigger's re-plan go through the same fetch step
(:func:`airflow_carbon_provider.scheduling.fetching.afetch_sources`), and when history is
unavailable the plan uses the raw forecast and says so.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.conditioning import MIN_SKILL_INTERVALS, sigma_from_skill
from airflow_carbon_provider.core.forecast import realistic_sigma
from airflow_carbon_provider.scheduling import CarbonSchedule, fetching
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

UTC = timezone.utc
NOW = datetime(2024, 3, 6, 20, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY = "em-robust-key-abcdef"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _forecast_body() -> dict:
    start = datetime(2024, 3, 6, 20, tzinfo=UTC)
    values = [150] * 4 + [300] * 3 + [200] * 3 + [300] * 14  # 20-23 h: 150, 03-05 h: 200
    return {"zone": "DE", "updatedAt": _iso(start),
            "forecast": [{"datetime": _iso(start + k * HOUR), "carbonIntensity": v} for k, v in enumerate(values)]}


def _history_body() -> dict:
    start = datetime(2024, 2, 27, 20, tzinfo=UTC)
    return {"zone": "DE", "data": [{"zone": "DE", "datetime": _iso(start + k * HOUR), "carbonIntensity": 300}
                                   for k in range(8 * 24)]}


@pytest.fixture(autouse=True)
def _no_recorded_skill(monkeypatch):
    """Planning reads no ledger here: the skill lookup answers "nothing recorded"."""
    monkeypatch.setattr(fetching, "_read_skill", lambda key: None)
    fetching._skill.clear()
    yield
    fetching._skill.clear()


@pytest.fixture
def em(monkeypatch, httpserver, request):
    """Return a connection id of an Electricity Maps connection served by ``httpserver``."""
    conn_id = f"em_robust_{abs(hash(request.node.name)) % 10**8}"  # a cache key of the test's own
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "electricitymaps", "host": httpserver.url_for("").rstrip("/"), "password": KEY}))
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(_forecast_body())
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"zone": "DE", "carbonIntensity": 400, "datetime": _iso(datetime(2024, 3, 6, 20, tzinfo=UTC))})
    return conn_id


def _schedule(conn_id: str) -> CarbonSchedule:
    return CarbonSchedule({"k8s_de": "DE"}, expected_duration="1h", max_delay="12h", carbon_conn_id=conn_id,
                          planning_timeout=10)


def test_a_forecast_biased_low_in_its_near_term_waits_for_the_night(em, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_json(_history_body())
    schedule = _schedule(em)
    raw, _ = fetching.fetch_sources([(em, "DE")], NOW, NOW + 13 * HOUR, budget=10, clock=lambda: NOW, robust=False)
    on_raw = schedule.decide(schedule.resolve(), raw, {}, now=NOW, arrival=NOW, latest=NOW + 12 * HOUR,
                             finish_by=None)
    assert on_raw.planned_start == NOW  # the raw forecast's 150 "now" looks best

    decision = schedule.plan(NOW, NOW)
    assert datetime(2024, 3, 7, 3, tzinfo=UTC) <= decision.planned_start <= datetime(2024, 3, 7, 5, tzinfo=UTC)
    assert "forecast conditioned on measured history" in decision.reason
    assert "calibrated default" in decision.reason  # where the error by lead came from
    # The history range is aligned to the hour: every plan within it shares one cache entry.
    ranges = [r.args.get("end") for r, _ in httpserver.log if r.path.endswith("past-range")]
    assert ranges == ["2024-03-06T20:00:00Z"]
    schedule.plan(NOW + timedelta(minutes=20), NOW)
    assert sum(r.path.endswith("past-range") for r, _ in httpserver.log) == 1


async def test_the_trigger_replans_on_the_conditioned_forecast(em, httpserver):
    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_json(_history_body())
    schedule = _schedule(em)
    decision = schedule.plan(NOW, NOW)
    # A plan in force at the latest start, as if made before the bias showed.
    trigger = CarbonWindowTrigger.from_decision(schedule, decision)
    _, kwargs = trigger.serialize()
    kwargs.update(planned_start=NOW + 12 * HOUR, planned_intensity=300.0)
    trigger = CarbonWindowTrigger(**kwargs)
    trigger.clock = lambda: NOW
    change = await trigger._replan(NOW)
    assert change is not None and "forecast conditioned on measured history" in change
    assert datetime(2024, 3, 7, 3, tzinfo=UTC) <= trigger.planned_start <= datetime(2024, 3, 7, 5, tzinfo=UTC)


def test_without_history_the_plan_uses_the_raw_forecast_and_says_why(em, httpserver):
    for path in ("past-range", "history"):
        httpserver.expect_request(f"/v3/carbon-intensity/{path}").respond_with_json(
            {"error": "Your plan does not include this", "status": 403}, status=403)
    decision = _schedule(em).plan(NOW, NOW)
    assert decision.planned_start == NOW and not decision.fail_open
    assert "planned on the raw forecast: measured history unavailable (CarbonNoAccessError" in decision.reason


def test_recorded_skill_is_the_error_by_lead_where_measured(em, httpserver, monkeypatch):
    httpserver.expect_request("/v3/carbon-intensity/past-range").respond_with_json(_history_body())
    monkeypatch.setattr(fetching, "_read_skill", lambda key: {(1.0, 3.0): (30.0, 40), (3.0, 6.0): (9.0, 5)})
    decision = _schedule(em).plan(NOW, NOW)
    assert f"the forecast skill recorded for {em} in DE (45 intervals)" in decision.reason


def test_sigma_from_skill_uses_buckets_with_enough_intervals():
    sigma = sigma_from_skill({(1.0, 3.0): (30.0, MIN_SKILL_INTERVALS), (3.0, 6.0): (90.0, 1)}, realistic_sigma)
    assert sigma(0) == 0.0
    assert sigma(2 * 3600) == pytest.approx(0.30 / (2 / 3.141592653589793) ** 0.5)
    assert sigma(4 * 3600) == realistic_sigma(4 * 3600)  # too few intervals: the default
