"""Fleet coordination through the real schedule: many tasks, capacities, reservations in a SQLite ledger.

The carbon data is the bundled real trace replayed around 2023-03-15 23:00 UTC, when Great
Britain's grid turns clean: alone, every task would choose k8s_gb at 23:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_carbon_provider.core.resources import POD
from airflow_carbon_provider.ledger.reservations import active, peak_load
from airflow_carbon_provider.ledger.store import Ledger
from airflow_carbon_provider.scheduling import CarbonSchedule, fleet
from airflow_carbon_provider.testing.replay import replay_connection_env

UTC = timezone.utc
NOW = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)  # replays 2023-03-15 22:30
CLUSTERS = {"k8s_de": {"zone": "DE", "capacity": 1}, "k8s_gb": {"zone": "GB", "capacity": 1},
            "k8s_us": {"zone": "US-CAL-CISO", "capacity": 1}}


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", url)
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(tmp_path / "spool.jsonl"))
    for name, value in replay_connection_env(now=NOW, lead=timedelta(minutes=30)).items():
        monkeypatch.setenv(name, value)
    return Ledger(url)


def _schedule(**kw):
    args = {"expected_duration": "1h", "max_delay": "3h", "min_saving_pct": 0.0}
    args.update(kw)
    return CarbonSchedule(CLUSTERS, **args)


def _peaks(ledger, keys):
    bookings = active(keys, NOW, NOW + timedelta(hours=8), now=NOW, ledger=ledger)
    return {k: peak_load([(b.start, b.end, b.demand) for b in bookings if b.cluster_id == k],
                         NOW.timestamp(), (NOW + timedelta(hours=8)).timestamp(), "pods")[0] for k in keys}


def test_tasks_spread_over_clusters_and_time_instead_of_herding(ledger):
    schedule = _schedule()
    alone = schedule.plan(NOW, NOW)  # no holder: plans alone, as before
    assert alone.chosen_key == "k8s_gb" and alone.fleet is None
    decisions = [schedule.plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", i)) for i in range(5)]
    assert (decisions[0].chosen_key, decisions[0].planned_start) == (alone.chosen_key, alone.planned_start)
    assert all(d.fleet["reservation"] == "reserved" for d in decisions)
    windows = [(d.chosen_key, d.planned_start) for d in decisions]
    for key in CLUSTERS:  # capacity 1: no two runs on one cluster overlap
        starts = sorted(s for k, s in windows if k == key)
        assert all(b - a >= timedelta(hours=1) for a, b in zip(starts, starts[1:])), windows
    assert max(_peaks(ledger, list(CLUSTERS)).values()) == 1
    assert all(d.planned_start <= d.latest_start for d in decisions)  # no deadline traded for room
    second = decisions[1]
    assert ["k8s_gb", "pods"] in second.fleet["limited_by"]
    assert "k8s_gb was full (pods" in second.reason
    record = second.to_xcom()["fleet"]
    assert record["capacities"]["k8s_gb"] == {"pods": 1.0} and record["demand"] == dict(POD)
    assert record["holder"]["task_id"] == "fit" and record["holder"]["map_index"] == 1


def test_a_retry_moves_its_own_reservation_rather_than_holding_two(ledger):
    schedule = _schedule()
    holder = fleet.holder_for("train", "r1", "fit", -1)
    first = schedule.plan(NOW, NOW, holder=holder)
    again = schedule.plan(NOW, NOW, holder=holder)  # its own reservation never counts against itself
    assert (again.chosen_key, again.planned_start) == (first.chosen_key, first.planned_start)
    assert len(active(list(CLUSTERS), NOW, NOW + timedelta(hours=8), now=NOW, ledger=ledger)) == 1


def test_losing_the_window_to_another_planner_plans_again_then_runs_now_at_home(ledger, monkeypatch):
    schedule = _schedule()
    real = fleet.hold
    refusals = []

    def contested(holder, key, start, duration, demand, capacity, **kw):
        if len(refusals) < 1:  # another task took the window between reading and reserving
            real("someone-else", key, start, duration, demand, capacity, **kw)
        result = real(holder, key, start, duration, demand, capacity, **kw)
        refusals.append(result.status)
        return result

    monkeypatch.setattr(fleet, "hold", contested)
    decision = schedule.plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", 0))
    assert refusals == ["refused", "reserved"] and decision.fleet["reservation"] == "reserved"
    alone = schedule.plan(NOW, NOW)
    assert (decision.chosen_key, decision.planned_start) != (alone.chosen_key, alone.planned_start)

    class Refused:
        status, message, reserved = "refused", "k8s_gb: pods 1 of 1 reserved at ...", False

    monkeypatch.setattr(fleet, "hold", lambda *a, **kw: Refused())
    decision = schedule.plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", 1))
    assert (decision.chosen_key, decision.planned_start, decision.waits) == ("k8s_de", NOW, False)
    assert "were taken by other tasks 3 times" in decision.reason and "running now on the home cluster" in decision.reason


def test_when_every_cluster_is_full_the_task_runs_now_at_home_and_says_which_resource(ledger):
    schedule = _schedule(max_delay="0h")
    for i, key in enumerate(CLUSTERS):
        fleet.hold(f"other-{i}", key, NOW - timedelta(minutes=5), timedelta(hours=2), POD, None, now=NOW, budget=5)
    decision = schedule.plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", 0))
    assert (decision.chosen_key, decision.planned_start) == ("k8s_de", NOW)
    assert "every candidate is at capacity for the whole window (k8s_de: pods 1 of 1 reserved" in decision.reason
    assert decision.fleet["reservation"] == "reserved"  # over capacity at home, deadline first


def test_a_ledger_that_is_down_plans_without_coordination_and_says_so(ledger, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", "postgresql://carbon:secret@127.0.0.1:1/ledger")
    decision = _schedule(planning_timeout=3).plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", 0))
    assert decision.chosen_key == "k8s_gb" and not decision.fail_open
    assert "reservations unavailable" in decision.reason and "planning without coordination" in decision.reason
    assert "secret" not in decision.reason
    assert decision.fleet["coordinated"] is False


def test_coordinate_off_plans_alone_on_declared_capacities(ledger):
    decision = _schedule(coordinate=False).plan(NOW, NOW, holder=fleet.holder_for("train", "r1", "fit", 0))
    assert decision.fleet is None
    assert active(list(CLUSTERS), NOW, NOW + timedelta(hours=8), now=NOW, ledger=ledger) == []
