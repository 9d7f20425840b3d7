"""Sweep the conditioning's constants on the real archives (how they were chosen).

Run: ``python benchmarks/conditioning_sweep.py [--data ../shared/data] [--archive neso|watttime]
[--config '{"correction_time": 10800}' ...]``

Prints ``carbon-aware``'s fraction of the oracle's reduction (robust, as the default) on the
archive's two rows of ``benchmarks/forecast_error_matrix.py`` (NESO GB 1 h and 4 h jobs with
12 h of slack; WattTime CAISO_NORTH 30 min and 1 h jobs with 6 h of slack, marginal), once per
configuration: keyword arguments of :func:`airflow_carbon_provider.core.conditioning.condition`
(``correction_time`` and ``level_time`` in seconds, ``days``), and three of the planner around it:
``"last_look": false`` (no re-plan at the planned start), ``"sigma": "own"`` (shrink by the
archive's own error by lead measured up to each plan, as a task shrinks by its recorded skill,
instead of NESO's) and ``"hysteresis_sigma": k`` (move only when the gain beats ``k`` times the
forecast's error at the best start's lead). Without ``--config`` it runs the ones the
forecast-error how-to quotes. Skips with a message (exit 0) when the shared data folder
is absent.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import airflow_carbon_provider.core.backtest as backtest
from airflow_carbon_provider.core import conditioning
from airflow_carbon_provider.core.forecast import parse_forecast_spec
from airflow_carbon_provider.core.policies import CarbonAware
from airflow_carbon_provider.core.traces import read_trace

ROOT = Path(__file__).resolve().parents[1]
H = timedelta(hours=1)
UK = "traces/uk-carbon-intensity-forecast-archive/"
WT = "traces/watttime-caiso-north-2023/watttime2023_casio-north_"
DEFAULT_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "neso": [{}, {"last_look": False}, {"correction_time": 10800}, {"correction_time": 21600},
             {"correction_time": 0.001}, {"days": 7}, {"days": 14}, {"sigma": "own"}, {"hysteresis_sigma": 0.5}],
    "watttime": [{}, {"last_look": False}, {"days": 7}, {"days": 14}, {"level_time": 3600}, {"level_time": 43200},
                 {"sigma": "own"}, {"hysteresis_sigma": 0.5}, {"hysteresis_sigma": 1.0}],
}


def _sigma_hysteresis(k: float) -> Any:
    """Return a ``CarbonAware.settle`` that also asks a move to beat ``k`` x the forecast's error at its lead."""
    from airflow_carbon_provider.core.forecast import realistic_sigma
    from airflow_carbon_provider.core.policies import CarbonAware

    original = CarbonAware.settle

    def settle(self: Any, ctx: Any, best: Any, options: Any) -> Any:
        margin = 100.0 * k * realistic_sigma(max(0.0, best.start.timestamp() - ctx.t_now) + 1.0)
        return original(self, replace(ctx, min_saving_pct=max(ctx.min_saving_pct, margin)), best, options)

    return settle


def sweep(data: Path, archive: str, configs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[float]]]:
    if archive == "neso":
        actuals = read_trace(data / UK / "actuals.normalized.csv")
        spec, kind, zone = f"archive:{data / UK / 'forecasts.normalized.csv'}", "average", "GB"
        rows, start = [(1 * H, 12 * H), (4 * H, 12 * H)], datetime(2023, 3, 14, 12, 1, tzinfo=timezone.utc)
    else:
        actuals = read_trace(data / (WT + "actual.normalized.csv"), kind="marginal")
        spec, kind, zone = f"archive:{data / (WT + 'forecast.normalized.csv')}", "marginal", "CAISO_NORTH"
        rows, start = [(0.5 * H, 6 * H), (1 * H, 6 * H)], None
    original, settle = backtest.condition, CarbonAware.settle
    out = []
    try:
        for config in configs:
            config = dict(config)
            options = {key: config.pop(key) for key in ("last_look", "sigma", "hysteresis_sigma") if key in config}
            model = parse_forecast_spec(spec, actuals, kind=kind)
            if options.get("sigma") == "own":  # the archive's own error by lead, measured up to each plan
                model.sigma_at = model.own_sigma_at  # type: ignore[attr-defined]
            CarbonAware.settle = _sigma_hysteresis(options["hysteresis_sigma"]) if "hysteresis_sigma" in options \
                else settle  # type: ignore[method-assign]
            backtest.condition = functools.partial(conditioning.condition, **config)
            fractions = []
            for job, slack in rows:
                result = backtest.run_backtest(
                    actuals, zones=[zone], home_zone=zone, job_duration=job, max_delay=slack, arrival_every=H,
                    forecast=model, policies=["carbon-aware"], start=start, forecast_horizon=48 * H,
                    refresh=timedelta(minutes=30), robust=True, last_look=options.get("last_look", True))
                fractions.append(round(result.summaries["carbon-aware"].fraction_of_oracle or 0.0, 3))
            out.append(({**config, **options}, fractions))
    finally:
        backtest.condition, CarbonAware.settle = original, settle  # type: ignore[method-assign]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--archive", choices=("neso", "watttime"), default="neso")
    parser.add_argument("--config", action="append", type=json.loads, help="a JSON object of condition() arguments")
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    for config, fractions in sweep(args.data, args.archive, args.config or DEFAULT_CONFIGS[args.archive]):
        print(f"{args.archive:<9} {json.dumps(config) or '{}':<36} {fractions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
