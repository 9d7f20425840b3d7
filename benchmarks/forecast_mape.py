"""Measure how wrong the forecasts are: the ``noisy`` model's realised MAPE by lead, and NESO's.

Run: ``python benchmarks/forecast_mape.py [--data ../shared/data]``

Every forecast interval is compared with the measured value of the same interval; its *lead*
is how long after the forecast's issue the interval starts. Two views per lead L:

- *up to L*: the mean absolute percentage error over all intervals with lead 0 to L (what a
  job waiting at most L hours plans on);
- *at L*: only the intervals whose lead is within half an hour of L.

Sources: ``noisy:10:1`` (the backtest matrix's noisy forecast) and ``realistic:1`` (calibrated
on the NESO rows, see :mod:`airflow_carbon_provider.core.forecast`) over all of 2023, issued every
hour with a 48 h horizon, on the Electricity Maps hourly traces of DE and GB; NESO's real
national forecasts for GB (eight 48 h forecasts issued 14-16 March 2023) against NESO's
actuals; and ``noisy:10:1`` on those same actuals at the same eight issue times, so the
two can be compared like for like. ``benchmarks/backtest_matrix.py`` quotes these figures.

Skips with a message (exit 0) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import sys
from bisect import bisect_right
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow_carbon_provider.core.forecast import NoisyForecast, RealisticForecast
from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.core.traces import read_forecast_archive, read_trace

ROOT = Path(__file__).resolve().parents[1]
UTC = timezone.utc
NOISY = (10.0, 1)  # noisy:10:1, as in the backtest matrix
LEADS_H = (6, 12, 24)
HORIZON = timedelta(hours=48)
HOURLY = "traces/electricitymaps-hourly/{folder}/{folder}_2023_hourly.normalized.csv"
NESO = "traces/uk-carbon-intensity-forecast-archive/"


def lead_errors(forecasts: Iterable[IntensitySeries], actual: IntensitySeries) -> list[tuple[float, float]]:
    """Return ``(lead in hours, absolute relative error)`` for every forecast interval with a measured twin.

    An interval counts when the actual series has an interval starting at the same instant
    with a positive value.
    """
    points = []
    for fc in forecasts:
        assert fc.issued_at is not None
        issued = fc.issued_at.timestamp()
        for k, value in enumerate(fc.values):
            start = fc.bounds[k]
            i = bisect_right(actual.bounds, start) - 1
            if 0 <= i < len(actual) and actual.bounds[i] == start and actual.values[i] > 0:
                truth = actual.values[i]
                points.append((max(start - issued, 0.0) / 3600.0, abs(value - truth) / truth))
    return points


def mape_up_to(points: list[tuple[float, float]], lead_h: float) -> float:
    """Return the MAPE (percent) over intervals with lead from 0 to ``lead_h`` hours (exclusive)."""
    errors = [e for lead, e in points if lead < lead_h]
    return 100.0 * sum(errors) / len(errors)


def mape_at(points: list[tuple[float, float]], lead_h: float) -> float:
    """Return the MAPE (percent) over intervals whose lead is within half an hour of ``lead_h``."""
    errors = [e for lead, e in points if lead_h - 0.5 <= lead < lead_h + 0.5]
    return 100.0 * sum(errors) / len(errors)


def measure(data: Path) -> dict[str, dict[str, dict[int, float]]]:
    """Return ``{source: {"up_to": {lead: MAPE}, "at": {lead: MAPE}}}`` for the sources in the module doc."""
    mape, seed = NOISY
    sources: dict[str, list[tuple[float, float]]] = {}
    for zone, folder in (("DE", "DE-LU"), ("GB", "GB")):
        actual = read_trace(data / HOURLY.format(folder=folder))[zone]
        model = NoisyForecast({zone: actual}, mape, seed)
        issues = (datetime.fromtimestamp(t, UTC) for t in actual.bounds[: len(actual) - int(HORIZON / timedelta(hours=1))])
        sources[f"noisy:{mape:g}:{seed}, {zone} 2023 hourly"] = lead_errors(
            (model.forecast(zone, t, HORIZON) for t in issues), actual)
        real = RealisticForecast({zone: actual}, seed)
        issues = (datetime.fromtimestamp(t, UTC) for t in actual.bounds[: len(actual) - int(HORIZON / timedelta(hours=1))])
        sources[f"realistic:{seed}, {zone} 2023 hourly"] = lead_errors(
            (real.forecast(zone, t, HORIZON) for t in issues), actual)
    neso_actual = read_trace(data / NESO / "actuals.normalized.csv")["GB"]
    neso = read_forecast_archive(data / NESO / "forecasts.normalized.csv")["GB"].issues
    sources["NESO GB archive, 8 forecasts 14-16 Mar 2023"] = lead_errors(neso, neso_actual)
    model = NoisyForecast({"GB": neso_actual}, mape, seed)
    sources[f"noisy:{mape:g}:{seed} on the same NESO actuals and issue times"] = lead_errors(
        (model.forecast("GB", fc.issued_at, HORIZON) for fc in neso if fc.issued_at is not None), neso_actual)
    return {
        name: {"up_to": {lead: mape_up_to(points, lead) for lead in LEADS_H},
               "at": {lead: mape_at(points, lead) for lead in LEADS_H}}
        for name, points in sources.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    results = measure(args.data)
    width = max(len(name) for name in results)
    print(f"{'realised MAPE, %':<{width}}  up to 6 h  12 h  24 h    at 6 h  12 h  24 h")
    for name, row in results.items():
        up_to = "  ".join(f"{row['up_to'][lead]:4.1f}" for lead in LEADS_H)
        at = "  ".join(f"{row['at'][lead]:4.1f}" for lead in LEADS_H)
        print(f"{name:<{width}}       {up_to}      {at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
