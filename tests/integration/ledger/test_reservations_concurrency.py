"""Reservations under real concurrency: several processes reserve one cluster at once, never over it.

Each process reserves, moves and releases for two holders of its own on one cluster of
capacity 5 (2 on SQLite, with two processes), over overlapping 2-hour windows, all starting at the same instant. Meanwhile this
process reads the table again and again: in no snapshot may the unexpired reservations hold
more pods than that at any instant. Each refusal must be honest (others hold the peak it names,
and one more pod would not fit); the process then retries with another window. At the end
each holder's row is what its own last successful call left.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from airflow_carbon_provider.ledger import reservations as res
from airflow_carbon_provider.ledger.models import ReservationRecord
from airflow_carbon_provider.ledger.store import Ledger

pytestmark = pytest.mark.integration
UTC = timezone.utc
CLUSTER = "k8s@ctx[pool=a]"

def _worker(url: str, out: str, n: int, t0: datetime, go: float, calls: int, capacity: int) -> None:
    """Reserve ``calls`` times for two holders of this process, releasing now and then; log every answer."""
    from airflow_carbon_provider import metrics
    from airflow_carbon_provider.ledger import store

    for engine in store._engines.values():  # forked: never touch the parent's pooled connections
        engine.dispose(close=False)
    store._engines.clear()
    metrics.stats = lambda: None  # type: ignore[assignment]  # this test is about the database
    ledger = Ledger(url, spool_path=out + ".spool")
    rng = random.Random(n)
    holders = [f"p{n}h{k}" for k in range(2)]
    while time.time() < go:  # every process starts at the same instant
        time.sleep(0.001)
    log, reserves = [], 0
    while reserves < calls:
        holder = rng.choice(holders)
        if rng.random() < 0.25:
            log.append({"op": "release", "holder": holder, "n": res.release(holder, ledger=ledger)})
            continue
        while reserves < calls:  # a refusal is retried at once with another window
            h = rng.randrange(4)
            result = res.reserve(holder, CLUSTER, t0 + timedelta(hours=h), t0 + timedelta(hours=h + 2),
                                 capacity={"pods": float(capacity)}, ledger=ledger)
            reserves += 1
            log.append({"op": "reserve", **result.as_dict()})
            if result.status != "refused":
                break
    Path(out).write_text(json.dumps(log))


def _peak(rows: list[tuple[datetime, datetime, dict]]) -> float:
    return res.peak_load([(s.timestamp(), e.timestamp(), amounts) for s, e, amounts in rows],
                         float("-inf"), float("inf"), "pods")[0]


def _race(url: str, tmp_path: Path, processes: int, calls: int, capacity: int) -> tuple[list[list[dict]], dict]:
    Ledger(url, spool_path=tmp_path / "spool.jsonl").migrate()
    t0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    go = time.time() + 0.5
    # forked, not spawned: 8 fresh interpreters importing SQLAlchemy take a minute on 2 busy cores
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_worker, args=(url, str(tmp_path / f"log{n}.json"), n, t0, go, calls, capacity))
             for n in range(processes)]
    for p in procs:
        p.start()
    # watch the table while they race: every snapshot is one statement, so one consistent state
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    watched = {"snapshots": 0, "max_peak": 0.0, "over": []}
    stop = threading.Event()

    def watch() -> None:
        table = ReservationRecord.__table__
        with engine.connect() as conn:
            while not stop.is_set():
                query = select(table.c.holder, table.c.start, table.c.end, table.c.resources).where(
                    table.c.expires_at > datetime.now(UTC))
                rows = conn.execute(query).all()
                conn.commit()
                peak = _peak([(r.start, r.end, r.resources) for r in rows])
                watched["snapshots"] += 1
                watched["max_peak"] = max(watched["max_peak"], peak)
                if peak > capacity:
                    watched["over"].append(sorted((r.holder, str(r.start), str(r.end)) for r in rows))
                stop.wait(0.005)

    def guarded() -> None:
        try:
            watch()
        except BaseException as exc:  # a watcher that died saw nothing: fail the test, not just a warning
            watched["error"] = exc

    watcher = threading.Thread(target=guarded)
    watcher.start()
    try:
        for p in procs:
            p.join(timeout=120)
    finally:
        stop.set()
        watcher.join()
        engine.dispose()
    assert "error" not in watched, watched.get("error")
    assert [p.exitcode for p in procs] == [0] * processes
    watched["final"] = Ledger(url, spool_path=tmp_path / "spool.jsonl")
    return [json.loads((tmp_path / f"log{n}.json").read_text()) for n in range(processes)], watched


def _check(logs: list[list[dict]], watched: dict, calls: int, capacity: int) -> dict:
    assert not watched["over"], f"over capacity in {len(watched['over'])} snapshot(s): {watched['over'][0]}"
    assert watched["max_peak"] <= capacity
    reserves = [entry for log in logs for entry in log if entry["op"] == "reserve"]
    assert len(reserves) == calls * len(logs)
    statuses = {s: sum(1 for e in reserves if e["status"] == s) for s in ("reserved", "refused", "unavailable")}
    assert statuses["unavailable"] == 0, [e["message"] for e in reserves if e["status"] == "unavailable"][:3]
    assert statuses["reserved"] > 0 and statuses["refused"] > 0, statuses  # there was a race to lose
    for entry in reserves:
        if entry["status"] == "refused":  # honest: others hold the peak it names, and one more does not fit
            assert entry["resource"] == "pods" and entry["peak"] + 1 > capacity >= entry["peak"], entry
            assert entry["holder"] not in entry["held_by"] and len(entry["held_by"]) >= entry["peak"], entry
            assert entry["message"].startswith(f"{CLUSTER}: pods {capacity:g} of {capacity:g} reserved at "), entry
    # each holder's row is what its own last successful call left (moves are upserts, refusals change nothing)
    expected: dict[str, tuple[str, str]] = {}
    for log in logs:
        for entry in log:
            if entry["op"] == "release":
                expected.pop(entry["holder"], None)
            elif entry["status"] == "reserved":
                expected[entry["holder"]] = (entry["start"], entry["end"])
    ledger: Ledger = watched["final"]
    now = datetime.now(UTC)
    far = now + timedelta(days=3)
    with ledger.engine.connect() as conn:
        holders = dict(conn.execute(text("SELECT holder, cluster FROM carbon_reservations")).all())
    bookings = res.active(CLUSTER, now, far, now=now, ledger=ledger)
    assert len(bookings) == len(holders) == len(expected)
    stored = sorted((datetime.fromtimestamp(b.start, UTC), datetime.fromtimestamp(b.end, UTC)) for b in bookings)
    assert stored == sorted((datetime.fromisoformat(s.replace("Z", "+00:00")),
                             datetime.fromisoformat(e.replace("Z", "+00:00"))) for s, e in expected.values())
    assert set(holders) == set(expected)
    assert res.peak_load([(b.start, b.end, b.demand) for b in bookings], now.timestamp(), far.timestamp(),
                         "pods")[0] <= capacity
    return statuses


def test_eight_processes_on_postgres_never_over_reserve(postgres, tmp_path):
    began = time.monotonic()
    logs, watched = _race(postgres.url, tmp_path, processes=8, calls=10, capacity=5)
    try:
        statuses = _check(logs, watched, calls=10, capacity=5)
    finally:  # the server lives for the module: leave no reservations for the next test
        with watched["final"].engine.begin() as conn:
            conn.execute(text("DELETE FROM carbon_reservations"))
        watched["final"].dispose()
    print(f"postgres: {statuses}, {watched['snapshots']} snapshots, max peak {watched['max_peak']:g}, "
          f"{time.monotonic() - began:.1f} s")
    assert watched["snapshots"] > 20


def test_two_processes_on_sqlite_never_over_reserve(tmp_path):
    began = time.monotonic()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    logs, watched = _race(url, tmp_path, processes=2, calls=10, capacity=2)  # 4 holders for 2 pods
    statuses = _check(logs, watched, calls=10, capacity=2)
    print(f"sqlite: {statuses}, {watched['snapshots']} snapshots, {time.monotonic() - began:.1f} s")


def test_a_held_cluster_lock_answers_unavailable_within_the_budget_and_other_clusters_go_on(postgres, tmp_path):
    """A reserver stuck inside its transaction (or a slow one) delays others by the budget at most."""
    from airflow_carbon_provider.ledger.transactions import _PG_LOCK_SPACE

    ledger = Ledger(postgres.url, spool_path=tmp_path / "spool.jsonl")
    ledger.migrate()
    t0 = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    holder = ledger.engine.connect()
    try:
        with holder.begin():
            holder.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:cluster))"),
                           {"space": _PG_LOCK_SPACE, "cluster": CLUSTER})
            began = time.monotonic()
            stuck = res.reserve("late", CLUSTER, t0, t0 + timedelta(hours=1), capacity={"pods": 1}, ledger=ledger,
                                budget=1.0)
            took = time.monotonic() - began
            assert stuck.status == "unavailable" and took < 2.0, (took, stuck.message)
            assert "timeout" in stuck.message, stuck.message  # lock_timeout or statement_timeout: both the budget
            other = res.reserve("other", "k8s_de", t0, t0 + timedelta(hours=1), capacity={"pods": 1}, ledger=ledger,
                                budget=1.0)
            assert other.reserved, other.message
        assert res.reserve("late", CLUSTER, t0, t0 + timedelta(hours=1), capacity={"pods": 1}, ledger=ledger).reserved
    finally:
        holder.close()
        with ledger.engine.begin() as conn:
            conn.execute(text("DELETE FROM carbon_reservations"))
        ledger.dispose()
