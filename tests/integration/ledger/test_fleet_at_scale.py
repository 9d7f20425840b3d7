"""Issue 13's targets: 200 tasks, 3 clusters of capacity 50, planned through the real fleet path.

Every task plans as the operator does (:meth:`CarbonSchedule.plan` with a holder): carbon data
from the bundled real trace replayed around 2023-03-15 23:00 UTC (Great Britain's grid turns
clean: alone, every task would choose k8s_gb at the same minute), each cluster's room read
from a Kubernetes API emulator's nodes and capped by its declared capacity, the other tasks'
reservations read from, and its own written to, the ledger's database. What is checked:

* no cluster ever holds more than its capacity (from the stored reservations);
* no task starts after its latest start;
* the total expected emissions are within 5 % of the offline optimum for the same inputs (the
  exact integer program of the backtest's oracle, on the same forecasts and starts);
* the same with two processes planning at once against PostgreSQL.

What this does not run: the pods. Planning and reserving are what coordination changes; the
operator's start, re-anchoring and release of a reservation are tested with real DAG runs in
``tests/integration/operator``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_carbon_provider.ledger.reservations import active, peak_load
from airflow_carbon_provider.ledger.store import Ledger
from airflow_carbon_provider.scheduling import CarbonSchedule, Decision, fleet
from airflow_carbon_provider.testing.kube_emulator import KubeletTiming, connections_env, start_clusters
from airflow_carbon_provider.testing.replay import replay_connection_env

pytestmark = pytest.mark.integration
UTC = timezone.utc
ZONES = {"k8s_de": "DE", "k8s_gb": "GB", "k8s_us": "US-CAL-CISO"}
CAPACITY = 50
TASKS = 200
DURATION = timedelta(hours=1)
MAX_DELAY = timedelta(hours=4)


@pytest.fixture(scope="module")
def clusters():
    with start_clusters(ZONES, timing=KubeletTiming(schedule_delay=0.05, start_delay=0.05, run_duration=0.5)) as c:
        yield c


def _environment(clusters, ledger_url: str, now: datetime, tmp: Path) -> dict[str, str]:
    return {**connections_env(clusters), **replay_connection_env(now=now, lead=timedelta(minutes=30)),
            "AIRFLOW_CARBON_LEDGER_URL": ledger_url, "AIRFLOW_CARBON_LEDGER_SPOOL": str(tmp / "spool.jsonl")}


def _schedule() -> CarbonSchedule:
    return CarbonSchedule({key: {"capacity": CAPACITY} for key in ZONES}, expected_duration=DURATION,
                          max_delay=MAX_DELAY, min_saving_pct=0.0, planning_timeout=20)


def _plan_many(now: datetime, first: int, count: int, threads: int = 8) -> list[Decision]:
    schedule = _schedule()
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: schedule.plan(now, now, holder=fleet.holder_for("fleet", "run", "train", i)),
                             range(first, first + count)))


def _peaks(ledger: Ledger, now: datetime) -> dict[str, float]:
    """Return each cluster's highest number of reserved pods at once, from the stored reservations."""
    lo, hi = now - timedelta(hours=1), now + MAX_DELAY + 2 * DURATION
    bookings = active(list(ZONES), lo, hi, now=now, ledger=ledger)
    return {key: peak_load([(b.start, b.end, b.demand) for b in bookings if b.cluster_id == key],
                           lo.timestamp(), hi.timestamp(), "pods")[0] for key in ZONES}


def _optimum(now: datetime) -> float:
    """Return the offline optimum's total intensity for TASKS jobs on the same forecasts and starts."""
    from airflow_carbon_provider.backtest_solver import solve_oracle
    from airflow_carbon_provider.core.backtest import OracleInstance

    schedule = _schedule()
    candidates = schedule.resolve()
    latest = now + MAX_DELAY
    series, errors = schedule.fetch_forecasts(candidates, now, latest + DURATION)
    assert not errors, errors
    forecasts = [series[schedule.source_of(c)] for c in candidates]
    dur = DURATION.total_seconds()
    t_now, t_latest = now.timestamp(), latest.timestamp()
    # The planner's exact starts (now, and wherever a run's start or end meets an interval
    # boundary), and those shifted by whole runs, where back-to-back runs on a full cluster start.
    base = {t_now, *(t for f in forecasts for b in f.bounds for t in (b, b - dur))}
    span = int((t_latest - t_now) // dur) + 2
    starts = sorted({round(t + k * dur, 3) for t in base for k in range(-span, span + 1)
                     if t_now <= t + k * dur <= t_latest} | {t_latest})
    cost = [[f.integral_ts(s, s + dur) / dur for s in starts] for f in forecasts]
    instance = OracleInstance([c.key for c in candidates], TASKS, dur, [starts], [cost],
                              {c.key: CAPACITY for c in candidates})
    (placed,) = solve_oracle(instance, time_limit=120)
    index = {c.key: i for i, c in enumerate(candidates)}
    return sum(cost[index[zone]][starts.index(start)] for zone, start in placed)


def _check(decisions: list[Decision], ledger: Ledger, now: datetime) -> dict[str, float]:
    assert len(decisions) == TASKS
    assert all(d.fleet and d.fleet["reservation"] == "reserved" for d in decisions), \
        {d.fleet.get("reservation_note") for d in decisions if d.fleet}
    assert all(d.planned_start <= d.latest_start for d in decisions)  # zero deadline misses
    peaks = _peaks(ledger, now)
    assert all(peak <= CAPACITY for peak in peaks.values()), peaks
    alone = _schedule().plan(now, now)  # what every task would have done alone
    assert peaks[alone.chosen_key] == CAPACITY  # the greenest cluster was filled, then the load spread
    return peaks


def test_two_hundred_tasks_on_three_clusters_of_fifty(clusters, tmp_path, monkeypatch):
    now = datetime.now(UTC).replace(microsecond=0)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    for name, value in _environment(clusters, url, now, tmp_path).items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    decisions = _plan_many(now, 0, TASKS)
    took = time.monotonic() - started
    peaks = _check(decisions, Ledger(url), now)
    ours = sum(float(d.expected_intensity or 0.0) for d in decisions)
    best = _optimum(now)
    assert ours <= 1.05 * best, f"coordinated total {ours:.0f} vs optimum {best:.0f} ({ours / best - 1:+.1%})"
    print(f"\n200 plans in {took:.1f} s on 8 threads; peaks {peaks}; total expected intensity {ours:.0f} vs "
          f"offline optimum {best:.0f} ({ours / best - 1:+.2%})")
    sources = decisions[-1].fleet["sources"]
    assert set(sources.values()) == {"cluster+declared"}, sources  # the emulators' nodes were read


def _plan_in_process(env: dict[str, str], now: str, first: int, count: int, out: str) -> None:
    """Plan ``count`` tasks in a process of its own (a second scheduler/worker) and write their decisions."""
    os.environ.update(env)
    decisions = _plan_many(datetime.fromisoformat(now), first, count, threads=4)
    Path(out).write_text(json.dumps([d.to_xcom() for d in decisions]))


def test_two_processes_planning_at_once_never_over_reserve_on_postgresql(clusters, postgres, tmp_path):
    now = datetime.now(UTC).replace(microsecond=0)
    env = _environment(clusters, postgres.url, now, tmp_path)
    # Spawned, not forked: this process runs emulator threads, and a fork taken while one of
    # them holds a lock can leave the child waiting on it for ever.
    ctx = multiprocessing.get_context("spawn")
    outs = [str(tmp_path / f"p{i}.json") for i in range(2)]
    procs = [ctx.Process(target=_plan_in_process, args=(env, now.isoformat(), i * TASKS // 2, TASKS // 2, out))
             for i, out in enumerate(outs)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=600)
        if proc.is_alive():
            proc.terminate()
        assert proc.exitcode == 0, f"a planning process ended with {proc.exitcode}"
    decisions = [Decision.from_xcom(d) for out in outs for d in json.loads(Path(out).read_text())]
    for name, value in env.items():
        os.environ[name] = value
    try:
        _check(decisions, Ledger(postgres.url), now)
    finally:
        for name in env:
            os.environ.pop(name, None)
