"""Benchmark one plan under capacities: cost against the number of bookings it sees.

Run: ``python benchmarks/bench_capacity.py [--repeat 30] [--bookings 0,50,200,1000]``

Four candidates, each with 72 h of 5-minute forecasts and a capacity in pods, a 4 h job with
24 h of slack, and B bookings of 1 to 4 hours spread over the candidates and the window. The
capacity grows with B (about the mean concurrency per candidate), so it binds at many starts
and the planner must search between the blocked spans rather than take the unconstrained
best. Prints the median and 90th-percentile wall time of one ``plan(policy="carbon-aware")``,
the ratio to the run without bookings, and the time per booking above that run. The planner
sweeps each candidate's bookings once (O(B log B)) and bisects, so the time per booking stays
about flat as B grows; counting overlaps for every start would grow with B times the number
of starts. All numbers come from one run on one machine: compare them with each other.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.core.planner import Candidate, plan
from airflow_carbon_provider.core.resources import Booking
from airflow_carbon_provider.core.signals import IntensitySeries

UTC = timezone.utc
NOW = datetime(2024, 1, 1, 0, 2, tzinfo=UTC)
STEP = 300.0
INTERVALS = 72 * 12
ZONES = 4


def forecasts(seed: int) -> dict[str, IntensitySeries]:
    rng = random.Random(seed)
    grid = datetime(2024, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    bounds = [NOW.timestamp()] + [grid + STEP * k for k in range(INTERVALS)]
    return {f"Z{i}": IntensitySeries.from_arrays(f"Z{i}", "average", bounds,
                                                 [rng.uniform(20, 700) for _ in range(INTERVALS)], is_forecast=True)
            for i in range(ZONES)}


def bookings(count: int, seed: int) -> list[Booking]:
    rng = random.Random(seed)
    t0 = NOW.timestamp()
    out = []
    for _ in range(count):
        start = t0 + rng.uniform(-3, 28) * 3600.0
        out.append(Booking(f"k8s_{rng.randrange(ZONES)}", start, start + rng.uniform(1, 4) * 3600.0))
    return out


def one_plan(cands: list[Candidate], fc: dict[str, IntensitySeries], busy: list[Booking]) -> float:
    started = time.perf_counter()
    plan(cands, fc, now=NOW, duration=timedelta(hours=4), latest_start=NOW + timedelta(hours=24), busy=busy)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--bookings", default="0,50,200,1000")
    args = parser.parse_args(argv)
    counts = [int(b) for b in args.bookings.split(",")]
    fc = forecasts(1)
    print(f"python {sys.version.split()[0]}; {ZONES} candidates x 72 h of 5-min forecasts; 4 h job; 24 h slack; "
          f"{args.repeat} repeats")
    print(f"{'bookings':>8} {'capacity':>8} {'limited':>8} {'median ms':>10} {'p90 ms':>8} {'x no bookings':>14} "
          f"{'us/booking':>11}")
    base = None
    for count in counts:
        cap = max(1, round(count / ZONES * 2.5 / 31))  # about the mean concurrency per candidate
        cands = [Candidate(f"k8s_{i}", f"Z{i}", capacity=cap) for i in range(ZONES)]
        busy = bookings(count, seed=count)
        one_plan(cands, fc, busy)  # memoise prefix sums
        limited = len(plan(cands, fc, now=NOW, duration=timedelta(hours=4), latest_start=NOW + timedelta(hours=24),
                           busy=busy).capacity_limited)
        times = sorted(one_plan(cands, fc, busy) for _ in range(args.repeat))
        median = statistics.median(times)
        base = median if base is None else base
        per = f"{1e6 * (median - base) / count:>11.2f}" if count else f"{'-':>11}"
        print(f"{count:>8} {cap:>8} {limited:>8} {1e3 * median:>10.2f} {1e3 * times[int(0.9 * len(times))]:>8.2f} "
              f"{median / base:>14.1f} {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
