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
from datetime import datetime, timedelta
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
UK = "traces/uk-carbon-intensity-forecast-archive/"
WT = "traces/watttime-caiso-north-2023/watttime2023_casio-north_"
#: The real archives: (label, actuals, archive, zone, signal, job hours, slack hours, first arrival)
ARCHIVES = [
    *[(f"NESO GB, Mar 2023, {job:g} h", UK + "actuals.normalized.csv", UK + "forecasts.normalized.csv", "GB",
       "average", job, 12, "2023-03-14T12:01:00Z") for job in (1, 4)],
    *[(f"WattTime CAISO_NORTH, Jun 2023, {job:g} h", WT + "actual.normalized.csv", WT + "forecast.normalized.csv",
       "CAISO_NORTH", "marginal", job, 6, None) for job in (0.5, 1)],
]
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


def archive_command(row: tuple[Any, ...], robust: bool) -> str:
    _, actual, archive, zone, kind, job, slack, start = row
    first = f" --start {start}" if start else ""
    return (f"airflow-carbon backtest --trace ../shared/data/{actual} --forecast archive:../shared/data/{archive} "
            f"--signal {kind} --zones {zone} --job-duration {int(job * 60)}m --max-delay {slack}h --arrival-every 1h "
            f"--refresh 30m --forecast-horizon 48h{first} --robust {'on' if robust else 'off'} --format json")


def run_archive(task: tuple[str, tuple[Any, ...]]) -> dict[str, Any]:
    data, row = task
    _, actual, archive, zone, kind, job, slack, start = row
    actuals = read_trace(Path(data) / actual, kind=kind)
    model = parse_forecast_spec(f"archive:{Path(data) / archive}", actuals, kind=kind)
    out: dict[str, Any] = {"row": row}
    for robust in (False, True):
        out["robust" if robust else "raw"] = run_backtest(
            actuals, zones=[zone], home_zone=zone, job_duration=job * H, max_delay=slack * H, arrival_every=H,
            forecast=model, refresh=timedelta(minutes=30), forecast_horizon=48 * H, robust=robust,
            start=datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None,
            policies=None if not robust else ["carbon-aware"]).to_dict()
    return out


def fraction(report: dict[str, Any], policy: str) -> float:
    value = report["policies"][policy]["fraction_of_oracle"]
    return 0.0 if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", help="run only the rows of this set (archive, tuning, held-out, history, perfect)")
    parser.add_argument("--out", type=Path, help="also write the reST table here (docs/forecast-error-results.inc)")
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    rows = [r for r in ROWS if args.only in (None, r[0])]
    archives = ARCHIVES if args.only in (None, "archive") else []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        done_archives = list(pool.map(run_archive, [(str(args.data), r) for r in archives]))
        results = list(pool.map(run, [(str(args.data), r) for r in rows]))
    lines = []
    for res in done_archives:
        lines.append(_line("archive", res["row"][0], res, archive_command(res["row"], True)))
    for res in results:
        kind, zones, year, job, slack, forecast = res["row"]
        label = f"{','.join(zones)} {year}, {job} h job, {slack} h slack, {forecast}"
        lines.append(_line(kind, label, res, command(res["row"], True)))
    print(f"{'set':<9} {'row':<58} {'jobs':>5} {'raw':>6} {'robust':>6}  best anchor  misses")
    for line in lines:
        print(f"{line['set']:<9} {line['label']:<58} {line['jobs']:>5} {line['raw']:6.3f} {line['robust']:6.3f}  "
              f"{line['anchor']}={line['anchor_fraction']:.3f}  {line['misses']}")
    if args.out is not None:
        args.out.write_text(render(lines) + "\n")
        print(f"written to {args.out}")
    return 0


def _line(kind: str, label: str, res: dict[str, Any], cmd: str) -> dict[str, Any]:
    raw, rob = res["raw"], res["robust"]
    best_anchor = max(ANCHORS, key=lambda p: fraction(raw, p))
    misses = sum(p["deadline_misses"] for p in raw["policies"].values()) + \
        rob["policies"]["carbon-aware"]["deadline_misses"]
    return {"set": kind, "label": label, "jobs": raw["jobs"], "raw": fraction(raw, "carbon-aware"),
            "robust": fraction(rob, "carbon-aware"), "anchor": best_anchor,
            "anchor_fraction": fraction(raw, best_anchor), "misses": misses, "command": cmd}


def render(lines: list[dict[str, Any]]) -> str:
    """Return the reST section of these results (included by ``docs/backtest-results.rst``)."""
    out = [".. Generated by benchmarks/forecast_error_matrix.py --out docs/forecast-error-results.inc; "
           "do not edit by hand.", "",
           ".. list-table:: Fraction of the oracle's reduction: carbon-aware raw and robust, best anchor policy",
           "   :header-rows: 1", "   :widths: 10 40 6 8 8 18 6", "",
           "   * - set", "     - row", "     - jobs", "     - raw", "     - robust", "     - best anchor",
           "     - misses"]
    for line in lines:
        out += [f"   * - {line['set']}", f"     - {line['label']}", f"     - {line['jobs']}",
                f"     - {line['raw']:.3f}", f"     - {line['robust']:.3f}",
                f"     - {line['anchor']} {line['anchor_fraction']:.3f}", f"     - {line['misses']}"]
    out += ["", "Each row's command (``--robust off`` gives the *raw* column and the anchors)::", ""]
    out += [f"    {line['command']}" for line in lines]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
