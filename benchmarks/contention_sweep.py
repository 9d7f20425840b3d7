"""Sweep the planner's ``contention_pct`` under capacities (how its default was chosen).

Run: ``python benchmarks/contention_sweep.py [--pct 0,30,50,100] [--data ../shared/data] [--workers 2]``

The row that decides it is ``benchmarks/capacity_matrix.py``'s hardest with a perfect forecast:
every zone but home capped at 20 jobs, 20 identical 4 h jobs every hour with 24 h of slack.
It runs on the bundled trace (March 2023, where the default was chosen) and, with ``--data``,
on September 2023 of the same Electricity Maps hourly datasets (a check on another month; not a
clean hold-out: 50 rather than 30 or 100 was settled with September's 0/30/50 figures in view). Prints ``carbon-aware``'s fraction of the capacity-respecting oracle's reduction
per value; ``0`` is the planner without the contention price. scipy is needed for the oracle.
"""

from __future__ import annotations

import argparse
import functools
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import airflow_carbon_provider.core.backtest as backtest
from airflow_carbon_provider.core import planner
from airflow_carbon_provider.core.forecast import PerfectForecast
from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace

H = timedelta(hours=1)
UTC = timezone.utc
ZONES = ("DE", "GB", "US-CAL-CISO", "CA-ON")
FILES = {"DE": "DE-LU", "GB": "GB", "US-CAL-CISO": "US-CAL-CISO", "CA-ON": "CA-ON"}
CAPS = {"CA-ON": 20, "US-CAL-CISO": 20, "GB": 20}
SEPTEMBER = (datetime(2023, 9, 1, tzinfo=UTC), datetime(2023, 10, 1, tzinfo=UTC))


def _trace(data: Path | None) -> dict[str, IntensitySeries]:
    if data is None:
        return read_trace(bundled_trace_path())
    out: dict[str, IntensitySeries] = {}
    for zone, folder in FILES.items():
        path = data / "traces/electricitymaps-hourly" / folder / f"{folder}_2023_hourly.normalized.csv"
        out.update({z: s for z, s in read_trace(path).items() if z == zone})
    return out


def one(task: tuple[float, str | None]) -> tuple[float, str, float]:
    pct, data = task
    trace = _trace(Path(data) if data else None)
    start, end = SEPTEMBER if data else (None, None)
    backtest.plan = functools.partial(planner.plan, contention_pct=pct)  # type: ignore[assignment]
    result = backtest.run_backtest(trace, zones=ZONES, home_zone="DE", job_duration=4 * H, max_delay=24 * H,
                                   arrival_every=H, forecast=PerfectForecast(trace), capacities=CAPS,
                                   jobs_per_arrival=20, policies=["run-now", "oracle", "carbon-aware"],
                                   start=start, end=end)
    s = result.summaries
    base = s["run-now"].mean_intensity
    oracle, ours = base - s["oracle"].mean_intensity, base - s["carbon-aware"].mean_intensity
    return pct, "September 2023" if data else "March 2023 (bundled)", ours / oracle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pct", default="0,30,50,100")
    parser.add_argument("--data", type=Path, help="the shared data folder, for September 2023")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    tasks: list[tuple[float, str | None]] = [(float(p), None) for p in args.pct.split(",")]
    if args.data is not None:
        tasks += [(float(p), str(args.data)) for p in args.pct.split(",")]
    with ProcessPoolExecutor(args.workers) as pool:
        for pct, month, frac in pool.map(one, tasks):
            print(f"{month:>22}  contention_pct {pct:>5g}  carbon-aware of oracle {100 * frac:.2f} %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
