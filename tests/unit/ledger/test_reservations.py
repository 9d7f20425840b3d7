"""Reservations in the ledger (issue 13): what a planner holds on a cluster, checked and written atomically."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from airflow_carbon_provider.core.resources import Booking
from airflow_carbon_provider.ledger import reservations as res
from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
from airflow_carbon_provider.ledger.store import Ledger, RunKey

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 22, tzinfo=UTC)
NOW = T0 - timedelta(hours=1)
PODS_2 = {"pods": 2}


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def book(ledger: Ledger, holder, start: float, end: float, demand=None, capacity=PODS_2, cluster="k8s_gb", **kw):
    return res.reserve(holder, cluster, at(start), at(end), demand or {"pods": 1}, capacity=capacity, now=NOW,
                       ledger=ledger, **kw)


def test_peak_not_count_two_bookings_that_do_not_overlap_each_other_leave_room(ledger):
    assert book(ledger, "a", 0, 1).reserved
    assert book(ledger, "b", 2, 3).reserved
    # both overlap [0, 3) but never each other: at most 1 pod at once, so a second pod fits
    result = book(ledger, "c", 0, 3)
    assert result.reserved, result.message
    # now 2 at once during [0, 1) and [2, 3): a third is refused, naming the resource and where
    refused = book(ledger, "d", 0.5, 2.5)
    assert refused.status == "refused" and refused.resource == "pods"
    assert (refused.peak, refused.capacity) == (2.0, 2.0)
    assert refused.message == "k8s_gb: pods 2 of 2 reserved at 2026-12-01 22:30-23:00 UTC; 1 more does not fit"
    assert set(refused.held_by) == {"a", "c"}
    assert refused.peak_start == at(0.5) and refused.peak_end == at(1)
    assert {b.start for b in res.active("k8s_gb", at(0), at(3), now=NOW, ledger=ledger)} == {
        at(0).timestamp(), at(2).timestamp()}


def test_refusal_names_the_limiting_resource_in_its_units(ledger):
    capacity = {"pods": 10, "memory": 4 * 2**30, "nvidia.com/gpu": 1}
    assert book(ledger, "a", 0, 2, {"pods": 1, "memory": 3 * 2**30}, capacity).reserved
    refused = book(ledger, "b", 1, 3, {"pods": 1, "memory": 2 * 2**30}, capacity)
    assert refused.resource == "memory"
    assert refused.message == "k8s_gb: memory 3Gi of 4Gi reserved at 2026-12-01 23:00-00:00 UTC; 2Gi more does not fit"
    alone = book(ledger, "c", 5, 6, {"pods": 1, "nvidia.com/gpu": 2}, capacity)
    assert alone.status == "refused" and "nvidia.com/gpu 2 asked for is more than its capacity 1" in alone.message
    # a resource the capacity leaves out is unlimited; one the demand leaves out is not asked for
    assert book(ledger, "d", 1, 3, {"pods": 1, "cpu": 500}, capacity).reserved


def test_upsert_moves_the_holders_reservation_and_never_counts_itself(ledger):
    key = RunKey("train", "manual__2026-12-01T00:00:00+00:00", "fine_tune", 3, 2)
    assert book(ledger, key, 0, 2, capacity={"pods": 1}).reserved
    # moving within its own window: only itself is there, which does not count
    moved = book(ledger, key, 1, 3, capacity={"pods": 1})
    assert moved.reserved, moved.message
    assert moved.holder == "task:train/manual__2026-12-01T00%3A00%3A00%2B00%3A00/fine_tune/3/2"
    assert [(b.start, b.end) for b in res.active("k8s_gb", at(0), at(9), now=NOW, ledger=ledger)] == [
        (at(1).timestamp(), at(3).timestamp())]
    # moving to another cluster leaves the first one empty
    assert book(ledger, key, 1, 3, cluster="k8s_de", capacity={"pods": 1}).reserved
    assert res.active("k8s_gb", at(0), at(9), now=NOW, ledger=ledger) == []
    with ledger.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT holder, dag_id, run_id, map_index, try_number, cluster "
                                    "FROM carbon_reservations")).all()
    assert [tuple(r)[1:] for r in rows] == [("train", key.run_id, 3, 2, "k8s_de")]
    # the planner leaves its own reservation out of others' load
    assert res.active(["k8s_de"], at(0), at(9), now=NOW, ledger=ledger, exclude_holder=key) == []


def test_a_refused_move_keeps_the_reservation_it_had(ledger):
    assert book(ledger, "a", 0, 2, capacity={"pods": 1}).reserved
    assert book(ledger, "b", 3, 5, capacity={"pods": 1}).reserved
    assert book(ledger, "b", 1, 2, capacity={"pods": 1}).status == "refused"
    assert [b.start for b in res.active("k8s_gb", at(0), at(9), now=NOW, ledger=ledger)] == [
        at(0).timestamp(), at(3).timestamp()]


def test_expired_reservations_count_for_nobody_and_are_deleted(ledger):
    # default rule: the planned end plus an hour
    first = book(ledger, "crashed", 0, 1, capacity={"pods": 1})
    assert first.expires_at == at(1) + res.DEFAULT_GRACE
    assert book(ledger, "short", 5, 6, capacity={"pods": 1}, expires=timedelta(0)).expires_at == at(6)
    assert book(ledger, "explicit", 8, 9, capacity={"pods": 1}, expires=at(8.5)).expires_at == at(8.5)
    # "crashed" ends at 23:00 and expires at 00:00: until then it still counts
    later = at(2) - timedelta(seconds=1)
    assert res.reserve("x", "k8s_gb", at(0), at(1), capacity={"pods": 1}, now=later, ledger=ledger).reserved is False
    after = at(2)
    assert [b.start for b in res.active("k8s_gb", at(0), at(9), now=after, ledger=ledger)] == [
        at(5).timestamp(), at(8).timestamp()]
    # the next reservation on the cluster deletes the expired row; expire() deletes the others
    assert res.reserve("x", "k8s_gb", at(0), at(1), capacity={"pods": 1}, now=after, ledger=ledger,
                       expires=at(20)).reserved
    with ledger.engine.connect() as conn:
        assert "crashed" not in conn.execute(sa.text("SELECT holder FROM carbon_reservations")).scalars().all()
    assert res.expire(at(9), ledger=ledger) == 2  # "short" (06:00) and "explicit" (08:30)
    assert res.expire(at(9), ledger=ledger) == 0
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT holder FROM carbon_reservations")).scalars().all() == ["x"]


def test_release_is_idempotent(ledger):
    assert res.release("nobody", ledger=ledger) == 0
    assert book(ledger, "a", 0, 2, capacity={"pods": 1}).reserved
    assert res.release("a", ledger=ledger) == 1
    assert res.release("a", ledger=ledger) == 0
    assert book(ledger, "b", 0, 2, capacity={"pods": 1}).reserved


def test_reserved_load_is_the_peak_within_each_step(ledger):
    book(ledger, "a", 0, 1.5, {"pods": 1, "cpu": 2}, capacity=None)
    book(ledger, "b", 1.25, 1.5, {"pods": 1}, capacity=None)
    book(ledger, "c", 0, 1, capacity=None, cluster="k8s_de")
    series = res.reserved_load(["k8s_gb", "k8s_de"], at(0), at(3), timedelta(hours=1), now=NOW, ledger=ledger)
    assert series["k8s_gb"] == [(at(0), {"pods": 1.0, "cpu": 2.0}), (at(1), {"pods": 2.0, "cpu": 2.0}), (at(2), {})]
    assert series["k8s_de"] == [(at(0), {"pods": 1.0}), (at(1), {}), (at(2), {})]
    with pytest.raises(ValueError, match="longer step"):
        res.reserved_load("k8s_gb", at(0), at(48), timedelta(seconds=1), ledger=ledger)


def test_arguments_no_database_could_help_with_raise(ledger):
    with pytest.raises(ValueError, match="aware"):
        res.reserve("a", "c", datetime(2026, 12, 1), at(1), capacity=None, ledger=ledger)
    with pytest.raises(ValueError, match="end after"):
        res.reserve("a", "c", at(1), at(1), capacity=None, ledger=ledger)
    with pytest.raises(ValueError, match=">= 0"):
        res.reserve("a", "c", at(0), at(1), {"pods": -1}, capacity=None, ledger=ledger)
    with pytest.raises(ValueError, match="non-empty"):
        res.reserve(" ", "c", at(0), at(1), capacity=None, ledger=ledger)


def test_database_down_answers_unavailable_quickly_and_masks_the_password(down_ledger, caplog):
    began = time.monotonic()
    result = res.reserve("a", "k8s_gb", at(0), at(1), capacity=PODS_2, now=NOW, ledger=down_ledger, budget=3)
    took = time.monotonic() - began
    assert result.status == "unavailable" and not result.reserved
    assert took < 2.5 and result.attempts == res.CONNECT_ATTEMPTS, (took, result.attempts)
    assert "planning without coordination" in result.message and "OperationalError" in result.message
    assert "hunter2pw" not in result.message and "***" in result.message
    assert "hunter2pw" not in caplog.text
    assert res.release("a", ledger=down_ledger, budget=1) is None
    with pytest.raises(LedgerUnavailableError) as err:
        res.active("k8s_gb", at(0), at(1), ledger=down_ledger, budget=1)
    assert "hunter2pw" not in str(err.value)


def test_a_locked_sqlite_answers_unavailable_within_the_budget(ledger):
    ledger.migrate()
    blocker = sqlite3.connect(str(ledger.sqlite_file()), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock and does not let go
        began = time.monotonic()
        result = book(ledger, "a", 0, 1, budget=0.5)
        assert result.status == "unavailable" and "database is locked" in result.message
        assert time.monotonic() - began < 1.5
        blocker.execute("ROLLBACK")
        assert book(ledger, "a", 0, 1, budget=0.5).reserved
    finally:
        blocker.close()


def test_metrics_held_per_cluster_and_refused_per_resource(ledger, monkeypatch):
    from airflow_carbon_provider import metrics

    calls = []

    class Recorder:
        def gauge(self, name, value, tags=None):
            calls.append(("gauge", name, value, tags))

        def incr(self, name, *args, tags=None):
            calls.append(("incr", name, args, tags))

    monkeypatch.setattr(metrics, "stats", lambda: Recorder())
    book(ledger, "a", 0, 2, capacity={"pods": 1})
    book(ledger, "b", 0, 2, {"pods": 1, "nvidia.com/gpu": 1}, capacity={"pods": 5, "nvidia.com/gpu": 0})
    book(ledger, "a", 0, 2, cluster="k8s_de")
    res.release("a", ledger=ledger)
    assert calls == [
        ("gauge", "carbon.reservations.held.k8s_gb", 1, {"cluster": "k8s_gb"}),
        ("incr", "carbon.reservations.refused.k8s_gb.nvidia_com_gpu", (),
         {"cluster": "k8s_gb", "resource": "nvidia.com/gpu"}),
        ("gauge", "carbon.reservations.held.k8s_de", 1, {"cluster": "k8s_de"}),  # "a" moved: from k8s_gb
        ("gauge", "carbon.reservations.held.k8s_gb", 0, {"cluster": "k8s_gb"}),
        ("gauge", "carbon.reservations.held.k8s_de", 0, {"cluster": "k8s_de"}),  # released
    ]

    class Broken:
        def gauge(self, *a, **k):
            raise RuntimeError("statsd down")

        incr = gauge

    monkeypatch.setattr(metrics, "stats", lambda: Broken())
    assert book(ledger, "c", 4, 5).reserved  # a metric failure never fails a reservation


def test_migration_0004_up_and_down(tmp_path):
    from alembic import command
    from alembic.config import Config

    from airflow_carbon_provider.ledger.store import MIGRATIONS

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
            assert "carbon_reservations" not in sa.inspect(conn).get_table_names()
            command.upgrade(cfg, "head")
            inspector = sa.inspect(conn)
            assert "carbon_reservations" in inspector.get_table_names()
            assert {i["name"] for i in inspector.get_indexes("carbon_reservations")} >= {
                "ix_carbon_reservations_cluster_end", "ix_carbon_reservations_expires_at"}
            command.downgrade(cfg, "0003")
            assert "carbon_reservations" not in sa.inspect(conn).get_table_names()
            assert "carbon_forecasts" in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_peak_load_is_a_sweep_over_half_open_intervals():
    one = {"pods": 1.0}
    assert res.peak_load([], 0, 10, "pods") == (0.0, 0, 10)
    assert res.peak_load([(0, 5, one), (5, 10, one)], 0, 10, "pods")[0] == 1.0  # back to back: never 2
    assert res.peak_load([(0, 6, one), (5, 10, one), (-5, 20, {"cpu": 4})], 0, 10, "pods") == (2.0, 5, 6)
    assert res.peak_load([(-5, 20, {"cpu": 4})], 0, 10, "cpu") == (4.0, 0, 10)  # clipped to the window
    assert isinstance(Booking("c", 0, 1), tuple)
