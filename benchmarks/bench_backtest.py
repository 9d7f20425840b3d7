"""Benchmark the backtest against a plain numpy reference, in the same run.

Run: ``python benchmarks/bench_backtest.py [--data ../shared/data] [--repeat 3]``

The scenario of issue 11 item 6: a year (2023) of hourly arrivals over four zones (DE, GB,
US-CAL-CISO, AU-NSW; Electricity Maps hourly), 4 h jobs with 24 h of slack, ``oracle`` and
``carbon-aware`` on perfect forecasts with a 48 h horizon refreshed hourly. Two references
do the same arithmetic in numpy, for each of the two policies: *whole-trace* takes prefix sums
over each whole trace once, then per arrival one argmin over every zone and hourly start in the
window (earliest start, then zone order, on ties); *per-window* is structured as the backtest
is, per job and zone a 48 h window with its own prefix sums and argmin. Both must choose the same zone and start for
every job (checked), so the ratio compares like with like. Prints the median CPU time of
each (process time, so other load on a shared machine does not skew the ratio) and their ratio; numbers from one run on one machine compare with each other only.

Skips with a message (exit 0) when the shared data folder is absent; numpy is needed here
only, never by the package.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from airflow_carbon_provider.core.backtest import run_backtest
from airflow_carbon_provider.core.forecast import PerfectForecast
from airflow_carbon_provider.core.traces import read_trace

ROOT = Path(__file__).resolve().parents[1]
HOURLY = "traces/electricitymaps-hourly/{folder}/{folder}_2023_hourly.normalized.csv"
ZONES = {"DE": "DE-LU", "GB": "GB", "US-CAL-CISO": "US-CAL-CISO", "AU-NSW": "AU-NSW"}
H = timedelta(hours=1)
JOB_H, SLACK_H = 4, 24


def load(data: Path) -> dict[str, Any]:
    actuals: dict[str, Any] = {}
    for folder in ZONES.values():
        actuals.update(read_trace(data / HOURLY.format(folder=folder)))
    return actuals


def ours(actuals: dict[str, Any]) -> list[tuple[str, float]]:
    result = run_backtest(actuals, zones=list(ZONES), home_zone="DE", job_duration=JOB_H * H,
                          max_delay=SLACK_H * H, arrival_every=H, forecast=PerfectForecast(actuals),
                          policies=["oracle", "carbon-aware"], forecast_horizon=48 * H, refresh=H)
    return [(o.zone, o.start.timestamp()) for p in ("oracle", "carbon-aware") for o in result.outcomes[p]]


def reference(actuals: dict[str, Any]) -> list[tuple[str, float]]:
    """Choose as the backtest does, in numpy: whole-trace prefix sums, one argmin per arrival and policy."""
    zones = list(ZONES)
    t0 = max(actuals[z].bounds[0] for z in zones)
    t1 = min(actuals[z].bounds[-1] for z in zones)
    rows = []
    for z in zones:
        b = np.asarray(actuals[z].bounds)
        v = np.asarray(actuals[z].values)
        i0 = int(np.searchsorted(b, t0))
        n = int(round((t1 - t0) / 3600))
        rows.append(v[i0 : i0 + n])
    values = np.vstack(rows)
    cum = np.concatenate([np.zeros((len(zones), 1)), np.cumsum(values, axis=1)], axis=1)
    runs = cum[:, JOB_H:] - cum[:, :-JOB_H]  # runs[z, s]: integral of a run starting at hour s
    arrivals = values.shape[1] - JOB_H - SLACK_H + 1
    out = []
    for _policy in ("oracle", "carbon-aware"):
        for a in range(arrivals):
            window = runs[:, a : a + SLACK_H + 1]
            flat = int(np.argmin(window.T))  # start-major: earliest start, then zone order
            s, z = divmod(flat, len(zones))
            out.append((zones[z], t0 + 3600.0 * (a + s)))
    return out


def reference_per_window(actuals: dict[str, Any]) -> list[tuple[str, float]]:
    """Choose as the backtest does, in plain numpy and structured like it: per job, a 48 h forecast
    window per zone and its own prefix sums, then the lowest run over the window's starts."""
    zones = list(ZONES)
    t0 = max(actuals[z].bounds[0] for z in zones)
    t1 = min(actuals[z].bounds[-1] for z in zones)
    n = int(round((t1 - t0) / 3600))
    values = np.vstack([np.asarray(actuals[z].values)[int(np.searchsorted(np.asarray(actuals[z].bounds), t0)):][:n]
                        for z in zones])
    arrivals = n - JOB_H - SLACK_H + 1
    out = []
    for _policy in ("oracle", "carbon-aware"):
        for a in range(arrivals):
            best = None
            for zi in range(len(zones)):
                window = values[zi, a : a + 48]
                cum = np.concatenate(([0.0], np.cumsum(window)))
                runs = cum[JOB_H : JOB_H + SLACK_H + 1] - cum[: SLACK_H + 1]
                s = int(np.argmin(runs))
                if best is None or runs[s] < best[0] - 1e-9 * abs(best[0]) or \
                        (abs(runs[s] - best[0]) <= 1e-9 * abs(best[0]) and s < best[1]):
                    best = (float(runs[s]), s, zi)
            assert best is not None
            out.append((zones[best[2]], t0 + 3600.0 * (a + best[1])))
    return out


def timed(fn: Any, *args: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t = time.process_time()
        result = fn(*args)
        times.append(time.process_time() - t)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    actuals = load(args.data)
    t_ref, ref = timed(reference, actuals, repeat=args.repeat)
    t_win, win = timed(reference_per_window, actuals, repeat=args.repeat)
    t_ours, got = timed(ours, actuals, repeat=args.repeat)
    same = sum(1 for a, b in zip(ref, got) if a == b)
    same_win = sum(1 for a, b in zip(win, got) if a == b)
    print(f"jobs per policy {len(got) // 2}; same zone and start as the references: {same}/{len(ref)}, "
          f"{same_win}/{len(win)}")
    print(f"numpy, whole-trace prefix sums  {t_ref:7.3f} s CPU")
    print(f"numpy, per-window prefix sums   {t_win:7.3f} s CPU")
    print(f"run_backtest (+ run-now)        {t_ours:7.3f} s CPU")
    print(f"ratio to whole-trace numpy      {t_ours / t_ref:7.1f} x")
    print(f"ratio to per-window numpy       {t_ours / t_win:7.1f} x")
    return 0 if same == len(ref) == len(got) == same_win else 1


if __name__ == "__main__":
    sys.exit(main())
