"""CarbonWindowTrigger: serialization without secrets, firing, waiting, restarts and faults.

Carbon data comes from the real ``carbontrace`` hook replaying the bundled trace: its default
maps 2024-01-01T00:00Z onto the trace's first hour, so the test clock below sits five days
into March 2023 of real Electricity Maps data.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.scheduling import CarbonSchedule
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

UTC = timezone.utc
T0 = datetime(2024, 1, 6, 9, 0, tzinfo=UTC)  # replays 2023-03-06 09:00Z
CLUSTERS = {"k8s_de": "DE", "k8s_gb": "GB"}


class FakeTime:
    """A clock the trigger reads and a sleep that advances it instantly."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def _schedule(**kw) -> CarbonSchedule:
    args = {"expected_duration": "3h", "max_delay": "12h", "min_saving_pct": 5.0}
    args.update(kw)
    return CarbonSchedule(kw.pop("clusters", CLUSTERS), **args)


def _trigger(decision, schedule, fake: FakeTime, **overrides) -> CarbonWindowTrigger:
    trigger = CarbonWindowTrigger.from_decision(schedule, decision)
    if overrides:
        _, kwargs = trigger.serialize()
        kwargs.update(overrides)
        trigger = CarbonWindowTrigger(**kwargs)
    trigger.clock = fake.clock
    trigger.sleep = fake.sleep
    return trigger


async def _first_event(trigger: CarbonWindowTrigger):
    return await asyncio.wait_for(trigger.run().__anext__(), timeout=30)


@pytest.fixture
def plan():
    schedule = _schedule()
    return schedule, schedule.plan(T0, T0)


def test_the_plan_waits_and_moves_on_this_real_day(plan):
    schedule, decision = plan
    assert decision.waits, decision.reason
    assert decision.expected_intensity < decision.baseline_intensity


async def test_fires_at_the_planned_start_after_replanning_on_every_refresh(plan):
    schedule, decision = plan
    fake = FakeTime(T0)
    event = await _first_event(_trigger(decision, schedule, fake))
    assert event.payload["status"] == "start"
    assert event.payload["cluster"] == decision.chosen.key
    assert datetime.fromisoformat(event.payload["fired_at"]) == decision.planned_start
    # a refresh every quarter hour, at this trigger's fixed offset, strictly before the start
    trigger = _trigger(decision, schedule, FakeTime(T0))
    phase = timedelta(seconds=trigger._phase())
    assert timedelta(0) <= phase <= timedelta(minutes=1)
    refreshes = sum(1 for k in range(0, 200) if T0 < T0 + k * timedelta(minutes=15) + phase < decision.planned_start)
    assert refreshes in (7, 8)
    # perfect forecast: every re-plan keeps the plan, the last look at the start included
    assert event.payload["replans"] == refreshes + 1 and "moves" not in event.payload
    assert event.payload["api_errors"] == 0
    assert max(fake.sleeps) <= 60  # the wall clock is re-read at least every minute


@pytest.mark.parametrize(("later_intensity", "waits"), [(1.0, True), (None, False)])
async def test_a_last_look_at_the_start_waits_only_for_a_gain_beyond_the_forecast_error(
        plan, monkeypatch, later_intensity, waits):
    """At the planned start the newest forecast shows another start an hour later: the trigger
    waits for it if it is far cleaner (1 g/kWh), not if it is as clean as now (within the
    forecast's error at an hour's lead)."""
    schedule, decision = plan
    fake = FakeTime(decision.planned_start)
    trigger = _trigger(decision, schedule, fake)
    later = decision.planned_start + timedelta(hours=1)
    real_plan = trigger._plan
    looks = []

    async def plan_later(now, cands, current, fetched=None):
        errors, fresh = await real_plan(now, cands, current, fetched)
        looks.append(now)
        if len(looks) == 1:  # the newest issue, as if it had changed since the last refresh
            fresh = replace(fresh, plan=replace(fresh.plan, chosen=replace(fresh.plan.chosen, start=later)),
                            expected_intensity=later_intensity or fresh.expected_intensity)
        return errors, fresh

    monkeypatch.setattr(trigger, "_plan", plan_later)
    event = await _first_event(trigger)
    assert looks[0] == decision.planned_start  # the last look, at the planned start
    assert datetime.fromisoformat(event.payload["fired_at"]) == (later if waits else decision.planned_start)
    assert event.payload["status"] == "start"


async def test_still_waiting_before_the_start():
    """With the clock standing still, the trigger keeps sleeping and yields nothing."""
    schedule = _schedule()
    decision = schedule.plan(T0, T0)
    trigger = CarbonWindowTrigger.from_decision(schedule, decision)
    trigger.clock = lambda: T0

    async def short_sleep(seconds: float) -> None:
        await asyncio.sleep(0.01)

    trigger.sleep = short_sleep
    task = asyncio.create_task(trigger.run().__anext__())
    await asyncio.sleep(0.3)
    assert not task.done()
    task.cancel()


async def test_a_replan_moves_a_poor_plan_when_the_gain_beats_hysteresis(plan):
    """Start the trigger on a deliberately poor plan (home, at the latest start); the first
    refresh moves it to what the planner computes from the same data."""
    schedule, decision = plan
    fake = FakeTime(T0)
    trigger = _trigger(decision, schedule, fake, planned_cluster="k8s_de",
                       planned_start=decision.latest_start, planned_intensity=999.0)
    event = await _first_event(trigger)
    assert event.payload["cluster"] == decision.chosen.key
    assert datetime.fromisoformat(event.payload["planned_start"]) == decision.planned_start
    # the move is reported (the UI's timeline marks it); the re-plans that kept the plan are only counted
    [move] = event.payload["moves"]
    assert (move["cluster"], move["start"]) == (decision.chosen.key, decision.planned_start.isoformat())
    assert T0 < datetime.fromisoformat(move["at"]) < decision.planned_start
    assert decision.after_trigger(event.payload).to_xcom()["trigger"]["moves"] == [move]


async def test_after_a_restart_past_the_planned_start_it_fires_at_once_and_says_it_is_late(plan):
    schedule, decision = plan
    fake = FakeTime(decision.planned_start + timedelta(minutes=7))
    event = await _first_event(_trigger(decision, schedule, fake))
    assert event.payload["status"] == "late_start" and fake.sleeps == []


async def test_after_a_restart_past_the_latest_start_it_fires_at_once_late(plan):
    schedule, decision = plan
    fake = FakeTime(decision.latest_start + timedelta(hours=1))
    event = await _first_event(_trigger(decision, schedule, fake))
    assert event.payload["status"] == "late_start" and fake.sleeps == []


@pytest.mark.parametrize("overslept", [timedelta(0), timedelta(seconds=1), timedelta(seconds=30)])
async def test_a_plan_at_the_latest_start_that_comes_true_is_a_start_not_a_deadline(plan, overslept):
    """Planned start == latest start, and the trigger wakes at (or just after) it: status start."""
    schedule, decision = plan
    fake = FakeTime(decision.latest_start + overslept)
    trigger = _trigger(decision, schedule, fake, planned_start=decision.latest_start)
    event = await _first_event(trigger)
    assert event.payload["status"] == "start"


async def test_only_a_plan_past_the_latest_start_reports_the_deadline(plan):
    """A trigger serialized by an older release with a start past its latest start is cut short."""
    schedule, decision = plan
    fake = FakeTime(decision.latest_start)
    trigger = _trigger(decision, schedule, fake, planned_start=decision.latest_start + timedelta(hours=1))
    event = await _first_event(trigger)
    assert event.payload["status"] == "deadline_reached" and fake.sleeps == []


async def test_carbon_api_down_keeps_the_plan_and_still_fires_on_time(monkeypatch, plan):
    """The carbon connection points at a closed port: every re-plan fails, the start does not."""
    schedule, decision = plan
    monkeypatch.setenv("AIRFLOW_CONN_EM_DOWN", json.dumps({
        "conn_type": "electricitymaps", "host": "http://127.0.0.1:9", "password": "k",
        "extra": {"timeout": 0.5, "max_retries": 0}}))
    fake = FakeTime(T0)
    trigger = _trigger(decision, schedule, fake, carbon_conn_id="em_down",
                       candidates=[{**c, "carbon_conn_id": "em_down"} for c in CarbonWindowTrigger.from_decision(schedule, decision).candidates])
    event = await _first_event(trigger)
    assert event.payload["status"] == "start"
    assert datetime.fromisoformat(event.payload["fired_at"]) == decision.planned_start
    assert event.payload["api_errors"] >= 1


async def test_a_hanging_replan_cannot_delay_the_start(plan, monkeypatch):
    schedule, decision = plan
    fake = FakeTime(decision.planned_start - timedelta(minutes=20))
    trigger = _trigger(decision, schedule, fake)

    async def hang(now):
        await asyncio.Event().wait()

    monkeypatch.setattr(trigger, "_replan", hang)
    real_wait_for = asyncio.wait_for

    async def quick_wait_for(awaitable, timeout):
        # the budget is the time left to the start; spend it instantly on the fake clock
        fake.now += timedelta(seconds=timeout)
        return await real_wait_for(awaitable, timeout=0.05)

    monkeypatch.setattr(asyncio, "wait_for", quick_wait_for)
    event = await real_wait_for(trigger.run().__anext__(), timeout=30)
    assert event.payload["status"] == "start" and trigger.api_errors >= 1


def test_serialize_round_trip_through_airflow_and_no_secret_in_kwargs(monkeypatch):
    """Connections whose secrets are known: the trigger's kwargs hold none of them.

    Here the carbon key's connection is not reachable, so the plan falls back to the
    Kubernetes connections' own carbon source; ``tests/integration/operator/test_secrets.py``
    plans from a secret-bearing connection for real and checks XCom, ledger and logs too.
    """
    secret = "sk-live-THIS-MUST-NOT-LEAK-4242"
    kube_token = "kube-bearer-ALSO-SECRET-777"
    monkeypatch.setenv("AIRFLOW_CONN_CARBON_EM", json.dumps({
        "conn_type": "electricitymaps", "password": secret, "extra": {"api_key": secret}}))
    for conn_id, zone in (("k8s_de", "DE"), ("k8s_gb", "GB")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
            "conn_type": "kubernetes", "extra": {"carbon_zone": zone, "carbon_conn_id": "carbontrace_default",
                                                 "kube_config": {"users": [{"user": {"token": kube_token}}]}}}))
    schedule = CarbonSchedule(["k8s_de", "k8s_gb"], expected_duration="3h", max_delay="12h",
                              carbon_conn_id="carbon_em")
    decision = schedule.plan(T0, T0)
    trigger = CarbonWindowTrigger.from_decision(schedule, decision)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_carbon_provider.triggers.carbon_window.CarbonWindowTrigger"
    from airflow.serialization.serialized_objects import BaseSerialization

    wire = BaseSerialization.serialize(kwargs)
    text = json.dumps(wire, default=str)
    assert secret not in text and kube_token not in text
    assert "k8s_de" in text and "carbontrace_default" in text
    restored = CarbonWindowTrigger(**BaseSerialization.deserialize(wire))
    assert restored.serialize() == (classpath, kwargs)
    assert isinstance(kwargs["planned_start"], datetime) and kwargs["planned_start"].tzinfo is not None


@pytest.mark.parametrize(
    ("override", "message"),
    [({"candidates": []}, "candidates is empty"), ({"duration_seconds": 0}, "duration_seconds must be positive"),
     ({"planned_start": datetime(2024, 1, 1)}, "timezone-aware"),
     ({"candidates": [{"conn_id": "k8s_de"}]}, "needs a conn_id and a zone")],
)
def test_bad_kwargs(override, message, plan):
    schedule, decision = plan
    _, kwargs = CarbonWindowTrigger.from_decision(schedule, decision).serialize()
    kwargs.update(override)
    with pytest.raises(ValueError, match=message):
        CarbonWindowTrigger(**kwargs)


async def test_a_trigger_serialized_by_the_previous_release_still_runs(plan):
    """0.1.0 wrote no planning_timeout_seconds: a trigger waiting in the database through an upgrade."""
    schedule, decision = plan
    _, kwargs = CarbonWindowTrigger.from_decision(schedule, decision).serialize()
    old_kwargs = {k: v for k, v in kwargs.items() if k != "planning_timeout_seconds"}
    fake = FakeTime(decision.planned_start)
    trigger = CarbonWindowTrigger(**old_kwargs)
    trigger.clock, trigger.sleep = fake.clock, fake.sleep
    event = await _first_event(trigger)
    assert event.payload["status"] == "start" and trigger.planning_timeout_seconds > 0


# -- one re-plan per refresh for triggers with the same inputs (issue 11 item 6) ---------------------------------


@pytest.fixture
def counted_plans(monkeypatch):
    """Count the fetch-and-plan runs (the shared part of a re-plan)."""
    calls = []
    original = CarbonWindowTrigger._plan

    async def counting(self, now, cands, current):
        calls.append(now)
        await asyncio.sleep(0.01)  # a fetch takes a while: the others join it meanwhile
        return await original(self, now, cands, current)

    monkeypatch.setattr(CarbonWindowTrigger, "_plan", counting)
    return calls


async def test_triggers_with_the_same_inputs_share_one_replan_per_refresh(plan, counted_plans):
    schedule, decision = plan
    fake = FakeTime(decision.planned_start - timedelta(hours=1))
    triggers = [_trigger(decision, schedule, fake) for _ in range(20)]
    now = fake.now
    changes = await asyncio.gather(*(t._replan(now) for t in triggers))
    assert len(counted_plans) == 1
    assert all(t.replans == 1 and t.api_errors == 0 for t in triggers)
    assert len({(t.planned_cluster, t.planned_start, t.planned_intensity) for t in triggers}) == 1
    assert len(set(changes)) == 1
    # the next refresh instant is another plan
    later = now + timedelta(seconds=triggers[0].replan_interval_seconds)
    await asyncio.gather(*(t._replan(later) for t in triggers))
    assert len(counted_plans) == 2


async def test_sharing_changes_no_trigger_state(plan, counted_plans, monkeypatch):
    schedule, decision = plan
    poor = {"planned_cluster": "k8s_de", "planned_start": decision.latest_start, "planned_intensity": 999.0}
    now = T0 + timedelta(minutes=20)
    results = []
    for share in (False, True):
        monkeypatch.setattr("airflow_carbon_provider.triggers.carbon_window.SHARE_PLANS", share)
        fake = FakeTime(now)  # one clock: triggers reading different clocks never share
        triggers = [_trigger(decision, schedule, fake, **poor) for _ in range(5)]
        changes = await asyncio.gather(*(t._replan(now) for t in triggers))
        results.append([(t.serialize()[1], t.api_errors, c) for t, c in zip(triggers, changes)])
    assert results[0] == results[1]
    assert results[0][0][2] is not None  # the poor plan moved, in both
    assert len(counted_plans) == 5 + 1


async def test_different_inputs_do_not_share(plan, counted_plans):
    schedule, decision = plan
    fake = FakeTime(decision.planned_start - timedelta(hours=1))
    same = _trigger(decision, schedule, fake)
    later_deadline = _trigger(decision, schedule, fake, latest_start=decision.latest_start + timedelta(hours=1))
    longer = _trigger(decision, schedule, fake, duration_seconds=7200.0)
    now = fake.now
    await asyncio.gather(*(t._replan(now) for t in (same, later_deadline, longer)))
    assert len(counted_plans) == 3


async def test_a_caller_giving_up_does_not_cancel_the_shared_plan(plan, counted_plans):
    schedule, decision = plan
    fake = FakeTime(decision.planned_start - timedelta(hours=1))
    impatient, patient = _trigger(decision, schedule, fake), _trigger(decision, schedule, fake)
    now = fake.now
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(impatient._replan(now), timeout=0.001)
    await patient._replan(now)
    assert len(counted_plans) == 1 and patient.replans == 1 and impatient.replans == 0


async def test_the_shared_plans_registry_holds_about_one_refresh_period(plan, counted_plans):
    from airflow_carbon_provider.triggers import carbon_window

    schedule, decision = plan
    fake = FakeTime(decision.planned_start - timedelta(hours=2))
    interval = 60.0
    triggers = [_trigger(decision, schedule, fake, replan_interval_seconds=interval,
                         latest_start=decision.latest_start + timedelta(minutes=k)) for k in range(5)]
    for step in range(20):  # 20 refreshes of 5 triggers with different inputs
        now = fake.now + timedelta(seconds=interval * step)
        await asyncio.gather(*(t._replan(now) for t in triggers))
    loop = asyncio.get_running_loop()
    mine = [k for k in carbon_window._shared if k[0] is loop]
    assert len(counted_plans) == 100 and len(mine) <= 3 * 5


@pytest.fixture
def coordinated(tmp_path, monkeypatch):
    """Return a plan made with the fleet: capacity 1 per cluster, reservations in a SQLite ledger."""
    from airflow_carbon_provider.scheduling import fleet

    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(tmp_path / "spool.jsonl"))
    schedule = CarbonSchedule({k: {"zone": z, "capacity": 1} for k, z in CLUSTERS.items()},
                              expected_duration="3h", max_delay="12h", min_saving_pct=5.0)
    holder = fleet.holder_for("d", "r", "t", 0)
    return schedule, schedule.plan(T0, T0, holder=holder, read_cluster=False), holder


async def test_a_coordinated_replan_moves_the_reservation_with_the_plan(coordinated):
    from airflow_carbon_provider.ledger.reservations import active

    schedule, decision, holder = coordinated
    assert decision.fleet["reservation"] == "reserved"
    trigger = _trigger(decision, schedule, FakeTime(T0), planned_cluster="k8s_de",
                       planned_start=decision.latest_start, planned_intensity=999.0)
    assert trigger.holder["task_id"] == "t" and trigger.demand == {"pods": 1.0}
    assert "token" not in json.dumps(trigger.serialize()[1], default=str)
    change = await trigger._replan(T0 + timedelta(minutes=1))
    assert change and trigger.planned_cluster == decision.chosen.key
    (mine,) = active(list(CLUSTERS), T0, T0 + timedelta(days=1), now=T0)
    assert (mine.cluster_id, mine.start) == (decision.chosen.key, trigger.planned_start.timestamp())


async def test_a_coordinated_replan_whose_window_was_taken_keeps_the_plan(coordinated, monkeypatch):
    schedule, decision, holder = coordinated
    trigger = _trigger(decision, schedule, FakeTime(T0), planned_cluster="k8s_de",
                       planned_start=decision.latest_start, planned_intensity=999.0)

    class Taken:
        status, message, reserved = "refused", "k8s_gb: pods 1 of 1 reserved", False

    monkeypatch.setattr("airflow_carbon_provider.triggers.carbon_window.hold", lambda *a, **kw: Taken())
    assert await trigger._replan(T0 + timedelta(minutes=1)) is None
    assert (trigger.planned_cluster, trigger.planned_start) == ("k8s_de", decision.latest_start)
