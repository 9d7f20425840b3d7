"""Measure planning under realistic forecast error, on zones and years held out of tuning.

Run: ``python benchmarks/forecast_error_matrix.py [--data ../shared/data] [--workers 2] [--only NAME]``

Each row is one ``run_backtest`` on Electricity Maps hourly data (lifecycle, a whole year),
jobs arriving every 6 h, forecasts refreshed hourly with a 48 h horizon, and prints each
policy's fraction of the oracle's reduction. ``carbon-aware`` runs twice: as planned on the
raw forecast (``raw``) and with ``robust=True`` (conditioned on measured history,
:mod:`airflow_carbon_provider.core.conditioning`). The *tuning* rows are the only ones any
constant in the conditioning was looked at on (DE and GB, 2023); the *held-out* rows are zones
(the north-eastern US and Ontario, California, Texas) and years (2021, 2022) never looked at
before the constants were fixed. Forecasts: ``realistic:1`` (calibrated on NESO's archive,
:mod:`airflow_carbon_provider.core.forecast`), ``history`` (no provider forecast), ``perfect``.

Every row can be rerun with the CLI; the script prints the command of each row. Skips with a
message (exit 0) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_carbon_provider.core.backtest import run_backtest
from airflow_carbon_provider.core.forecast import parse_forecast_spec
from airflow_carbon_provider.core.traces import read_trace

ROOT = Path(__file__).resolve().parents[1]
HOURLY = "traces/electricitymaps-hourly/{folder}/{folder}_{year}_hourly.normalized.csv"
FOLDERS = {"DE": "DE-LU"}
H = timedelta(hours=1)
ANCHORS = ("rolling-window", "next-hour-window", "greenest-now", "threshold")
#: (set, zones (home first), year, job hours, slack hours, forecast)
ROWS: list[tuple[str, tuple[str, ...], int, int, int, str]] = [
    *[("tuning", zones, 2023, job, slack, "realistic:1")
      for zones in (("DE", "GB"), ("DE",), ("GB",)) for job, slack in ((1, 6), (4, 24))],
    *[("held-out", zones, year, job, slack, "realistic:1")
      for zones, year in ((("US-MIDA-PJM", "US-NY-NYIS", "CA-ON"), 2023), (("US-CAL-CISO",), 2023),
                          (("DE", "GB"), 2021), (("US-TEX-ERCO", "US-CAL-CISO"), 2022), (("CA-ON",), 2022))
      for job, slack in ((1, 6), (4, 24))],
    *[("history", zones, year, 4, 24, "history")
      for zones, year in ((("DE",), 2023), (("GB",), 2023), (("US-CAL-CISO",), 2023), (("AU-NSW",), 2022),
                          (("US-TEX-ERCO",), 2022), (("DE", "GB", "US-CAL-CISO"), 2023))],
    *[("perfect", zones, 2023, 4, 24, "perfect") for zones in (("DE", "GB"), ("US-CAL-CISO",))],
]


def path(data: Path, zone: str, year: int) -> Path:
    folder = FOLDERS.get(zone, zone)
    return data / HOURLY.format(folder=folder, year=year)


def command(row: tuple[str, tuple[str, ...], int, int, int, str], robust: bool) -> str:
    _, zones, year, job, slack, forecast = row
    traces = " ".join(f"--trace ../shared/data/{path(Path(), z, year)}" for z in zones)
    return (f"airflow-carbon backtest {traces} --zones {','.join(zones)} --job-duration {job}h "
            f"--max-delay {slack}h --arrival-every 6h --refresh 1h --forecast-horizon 48h "
            f"--forecast {forecast} --robust {'on' if robust else 'off'} --format json")


def run(task: tuple[str, tuple[str, tuple[str, ...], int, int, int, str]]) -> dict[str, Any]:
    data, row = task
    _, zones, year, job, slack, forecast = row
    actuals: dict[str, Any] = {}
    for zone in zones:
        actuals.update(read_trace(path(Path(data), zone, year)))
    out: dict[str, Any] = {"row": row}
    for robust in (False, True):
        result = run_backtest(actuals, zones=list(zones), home_zone=zones[0], job_duration=job * H,
                              max_delay=slack * H, arrival_every=6 * H, forecast=parse_forecast_spec(forecast, actuals),
                              refresh=H, forecast_horizon=48 * H, robust=robust,
                              policies=None if not robust else ["carbon-aware"]).to_dict()
        out["robust" if robust else "raw"] = result
    return out


def fraction(report: dict[str, Any], policy: str) -> float:
    value = report["policies"][policy]["fraction_of_oracle"]
    return 0.0 if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="run only the rows of this set (tuning, held-out, history, perfect)")
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    rows = [r for r in ROWS if args.only in (None, r[0])]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run, [(str(args.data), r) for r in rows]))
    print("set       zones                          year job slack forecast     jobs  raw  robust  best anchor"
          "  misses")
    for res in results:
        kind, zones, year, job, slack, forecast = res["row"]
        raw, rob = res["raw"], res["robust"]
        best_anchor = max(ANCHORS, key=lambda p: fraction(raw, p))
        misses = sum(p["deadline_misses"] for p in raw["policies"].values()) + \
            rob["policies"]["carbon-aware"]["deadline_misses"]
        print(f"{kind:<9} {','.join(zones):<30} {year} {job:>2}h {slack:>4}h {forecast:<12} {raw['jobs']:>4} "
              f"{fraction(raw, 'carbon-aware'):5.3f} {fraction(rob, 'carbon-aware'):6.3f}  "
              f"{best_anchor}={fraction(raw, best_anchor):.3f}  {misses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
