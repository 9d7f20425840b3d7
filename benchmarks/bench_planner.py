"""Benchmark one plan: zones x 72 h of 5-minute forecasts, a 4 h job, 24 h of slack.

Run: ``python benchmarks/bench_planner.py [--repeat 50] [--zones 10,50,200]``

Prints, for each zone count, the median and 90th-percentile wall time of one
``plan(policy="carbon-aware")`` call, twice: *warm* (the forecasts were planned on before, so
their prefix sums are memoised, as when many triggers share one cached forecast) and *cold*
(fresh forecast objects, prefix sums computed inside the call). The last columns divide by
the number of zone-intervals to show the cost is linear in zones x intervals. All numbers
come from the same run on the same machine; compare them with each other, not with another
machine's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.core.planner import Candidate, plan
from airflow_carbon_provider.core.signals import IntensitySeries

UTC = timezone.utc
NOW = datetime(2024, 1, 1, 0, 2, tzinfo=UTC)  # two minutes into an interval, as in real life
STEP = 300.0
INTERVALS = 72 * 12


def forecasts(zones: int, seed: int) -> dict[str, IntensitySeries]:
    """Return ``zones`` random 72 h forecasts of 5-minute intervals, starting now."""
    rng = random.Random(seed)
    grid = datetime(2024, 1, 1, 0, 5, tzinfo=UTC).timestamp()
    bounds = [NOW.timestamp()] + [grid + STEP * k for k in range(INTERVALS)]
    return {
        f"Z{i}": IntensitySeries.from_arrays(
            f"Z{i}", "average", bounds, [rng.uniform(20, 700) for _ in range(INTERVALS)], is_forecast=True
        )
        for i in range(zones)
    }


def one_plan(cands: list[Candidate], fc: dict[str, IntensitySeries]) -> float:
    started = time.perf_counter()
    plan(cands, fc, now=NOW, duration=timedelta(hours=4), latest_start=NOW + timedelta(hours=24))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--zones", default="10,50,200")
    args = parser.parse_args(argv)
    counts = [int(z) for z in args.zones.split(",")]
    print(
        f"python {sys.version.split()[0]}; 72 h of 5-min forecasts ({INTERVALS} intervals/zone); "
        f"4 h job; 24 h slack; {args.repeat} repeats"
    )
    print(
        f"{'zones':>6} {'warm median ms':>15} {'warm p90 ms':>12} {'cold median ms':>15} {'cold p90 ms':>12} "
        f"{'warm ns/zone-int':>17} {'cold ns/zone-int':>17}"
    )
    for zones in counts:
        cands = [Candidate(f"k8s_{i}", f"Z{i}") for i in range(zones)]
        fc = forecasts(zones, seed=zones)
        one_plan(cands, fc)  # memoise prefix sums
        warm = sorted(one_plan(cands, fc) for _ in range(args.repeat))
        cold = sorted(one_plan(cands, forecasts(zones, seed=r)) for r in range(max(5, args.repeat // 5)))
        per = zones * INTERVALS
        print(
            f"{zones:>6} {1e3 * statistics.median(warm):>15.2f} {1e3 * warm[int(0.9 * len(warm))]:>12.2f} "
            f"{1e3 * statistics.median(cold):>15.2f} {1e3 * cold[int(0.9 * len(cold))]:>12.2f} "
            f"{1e9 * statistics.median(warm) / per:>17.1f} {1e9 * statistics.median(cold) / per:>17.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
