"""Run the backtest over a matrix of real scenarios and write the docs' results section.

Run: ``python benchmarks/backtest_matrix.py [--data ../shared/data] [--out docs/backtest-results.rst]``

Real forecast archives first: NESO's GB forecasts (March 2023) and WattTime's CAISO_NORTH
marginal forecasts (June 2023). Then the matrix on Electricity Maps hourly data (lifecycle)
for all of 2023: two zones on one continent (DE, GB) and four zones on three continents (DE,
GB, US-CAL-CISO, AU-NSW), home DE; jobs of 1 h, 4 h and 12 h arriving every 6 h with 6 h or
24 h of slack; ``noisy:10:1`` and perfect forecasts refreshed hourly. Every policy runs with
no hysteresis, and ``carbon-aware`` once more with the operator's default ``min_saving_pct``.
The realised error of the forecasts comes from ``benchmarks/forecast_mape.py``. Every number
and the text around them come from this script; the noise is seeded, so a rerun prints the
same section (about five minutes of CPU time, spread over ``--workers`` processes).

Skips with a message (exit 0) when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from forecast_mape import LEADS_H, measure

from airflow_carbon_provider.core.backtest import backtest_policies, run_backtest
from airflow_carbon_provider.core.forecast import parse_forecast_spec
from airflow_carbon_provider.core.traces import read_trace
from airflow_carbon_provider.scheduling import CarbonSchedule

ROOT = Path(__file__).resolve().parents[1]
HOURLY = "traces/electricitymaps-hourly/{folder}/{folder}_2023_hourly.normalized.csv"
FOLDERS = {"DE": "DE-LU", "GB": "GB", "US-CAL-CISO": "US-CAL-CISO", "AU-NSW": "AU-NSW"}
ZONE_SETS = [("DE", "GB"), ("DE", "GB", "US-CAL-CISO", "AU-NSW")]
JOBS_H = (1, 4, 12)
SLACK_H = (6, 24)
FORECASTS = ("noisy:10:1", "perfect")  # the milder first: perfect is the upper bound
H = timedelta(hours=1)
# The hysteresis the operator, the sensor and CarbonSchedule ship with (read, not copied).
SHIPPED_MIN_SAVING_PCT: float = inspect.signature(CarbonSchedule).parameters["min_saving_pct"].default


def _hourly(data: Path, zones: tuple[str, ...]) -> dict[str, Any]:
    actuals: dict[str, Any] = {}
    for zone in zones:
        actuals.update(read_trace(data / HOURLY.format(folder=FOLDERS[zone])))
    return actuals


def _run(task: tuple[str, tuple[str, ...], int, int, str]) -> dict[str, Any]:
    data, zones, job_h, slack_h, forecast = task
    actuals = _hourly(Path(data), zones)
    reports = [
        run_backtest(
            actuals,
            zones=list(zones),
            home_zone=zones[0],
            job_duration=job_h * H,
            max_delay=slack_h * H,
            arrival_every=6 * H,
            forecast=parse_forecast_spec(forecast, actuals),
            refresh=H,
            **options,
        ).to_dict()
        for options in ({"robust": False}, {"policies": ["carbon-aware"], "min_saving_pct": SHIPPED_MIN_SAVING_PCT,
                                             "robust": False})
    ]
    return {"zones": zones, "job_h": job_h, "slack_h": slack_h, "report": reports[0], "shipped": reports[1]}


def _archive(
    data: Path,
    trace: str,
    archive: str,
    zone: str,
    kind: str,
    job_h: float,
    slack_h: float,
    every_h: float,
    label: str,
) -> dict[str, Any]:
    actuals = read_trace(data / trace, kind=kind)
    model = parse_forecast_spec(f"archive:{data / archive}", actuals, kind=kind)
    first = model.archive[zone].issues[0].issued_at  # type: ignore[attr-defined]
    reports = [
        run_backtest(
            actuals,
            zones=[zone],
            home_zone=zone,
            job_duration=job_h * H,
            max_delay=slack_h * H,
            arrival_every=every_h * H,
            forecast=model,
            start=first,
            refresh=timedelta(minutes=30),
            forecast_horizon=timedelta(hours=48),
            **options,
        ).to_dict()
        for options in ({"robust": False}, {"policies": ["carbon-aware"], "min_saving_pct": SHIPPED_MIN_SAVING_PCT,
                                             "robust": False})
    ]
    return {"label": label, "job_h": job_h, "slack_h": slack_h, "report": reports[0], "shipped": reports[1]}


def _table(title: str, header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    out = [f".. list-table:: {title}", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        out.append(f"   * - {row[0]}")
        out.extend(f"     - {cell}" for cell in row[1:])
    out.append("")
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _seq(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def _no_misses(item: dict[str, Any]) -> None:
    for report in (item["report"], item["shipped"]):
        assert all(p["deadline_misses"] == 0 for p in report["policies"].values()), item


def render(
    matrix: list[dict[str, Any]],
    archives: list[dict[str, Any]],
    mape: dict[str, dict[str, dict[int, float]]],
    command: str,
) -> str:
    """Return the reStructuredText results section."""
    policies = [p for p in backtest_policies() if p != "run-now"]
    shipped = f"{SHIPPED_MIN_SAVING_PCT:g} %"
    leads = "/".join(str(lead) for lead in LEADS_H)
    noisy = {name: row for name, row in mape.items() if name.startswith("noisy")}
    neso = next(row for name, row in mape.items() if name.startswith("NESO"))
    noisy_matrix = next(row for name, row in noisy.items() if "DE 2023" in name)
    for item in [*matrix, *archives]:
        _no_misses(item)

    def shift(items: list[dict[str, Any]]) -> str:
        """Return the range of carbon-aware's reduction with the shipped hysteresis minus without it."""
        deltas = [i["shipped"]["policies"]["carbon-aware"]["reduction_pct"]
                  - i["report"]["policies"]["carbon-aware"]["reduction_pct"] for i in items]
        return f"{min(deltas):+.1f} to {max(deltas):+.1f} points"

    lines = [
        ".. Generated by benchmarks/backtest_matrix.py; do not edit by hand.",
        "",
        "Every figure below was produced by::",
        "",
        f"    {command}",
        "",
        "Reductions are in percent against ``run-now`` (start at arrival in the home zone); *of oracle* is "
        "(run-now - carbon-aware) / (run-now - oracle). Deadline misses were zero for every policy in every "
        "row. Three things to know before reading the tables:",
        "",
        f"* **Hysteresis.** Every policy column was run with no hysteresis (``min_saving_pct`` 0, the "
        f"backtest's default): ``carbon-aware`` waits or moves for any gain, however small. The operator and "
        f"the sensor ship with ``min_saving_pct`` {shipped}, so each table repeats ``carbon-aware`` with "
        f"{shipped} (the columns marked *{shipped}*): it then declines smaller gains. Against no hysteresis "
        f"that changed its reduction by {shift(archives)} with the real archives and by {shift(matrix)} on "
        "the Electricity Maps matrix.",
        f"* **Real forecasts are much worse than** ``noisy:10``. Over leads up to {leads} h, NESO's real "
        f"forecasts for Great Britain missed by {_seq(list(neso['up_to'].values()))} % on average (mean "
        f"absolute percentage error, MAPE); ``noisy:10:1``, the matrix's noisy forecast, misses by only "
        f"{_seq(list(noisy_matrix['up_to'].values()))} % on DE's 2023 data. The real-archive rows therefore "
        "come first; the ``noisy:10:1`` rows are an optimistic case, not a prediction. The errors were measured "
        "by ``python benchmarks/forecast_mape.py`` (table below).",
        "* **The raw planner.** Every table here is ``carbon-aware`` planning on the forecast as given "
        "(``robust=False``, the only behaviour before 0.2.0), so the figures stay comparable with earlier "
        "releases. The robust planner (the default since 0.2.0) and the realistic forecast error model are "
        "measured in the last section, *Under realistic forecast error*.",
        "* **Perfect forecasts reach 100 % of oracle by construction.** With perfect forecasts and no "
        "hysteresis, ``carbon-aware`` minimises the same exact integral of intensity over the same zones and "
        "starts as the oracle (every row's forecast horizon, 48 h, covers the slack plus the job), so it "
        "makes the same choice. Those rows check that the planner finds the optimum and show the most any "
        "policy could save; they say nothing about forecasts.",
        "",
    ]
    if archives:
        lines += [
            "Real forecast archives",
            "~~~~~~~~~~~~~~~~~~~~~~",
            "",
            "One zone each, so only waiting can help; forecasts refreshed every 30 min from the archive as issued. "
            "NESO's archive is eight 48-hour forecasts issued 14-16 March 2023; WattTime's marginal forecasts "
            "reach only 65 minutes ahead.",
            "",
        ]
        header = ["archive", "job", "slack", "jobs", "run-now g/kWh", "oracle", "carbon-aware", "rolling-window",
                  "next-hour-window", "carbon-aware of oracle", f"carbon-aware, {shipped}", f"of oracle, {shipped}"]
        rows = []
        for item in archives:
            pol, ship = item["report"]["policies"], item["shipped"]["policies"]["carbon-aware"]
            rows.append(
                [
                    item["label"],
                    f"{item['job_h']:g} h",
                    f"{item['slack_h']:g} h",
                    str(item["report"]["jobs"]),
                    f"{pol['run-now']['mean_intensity']:.0f}",
                    *(
                        f"{pol[p]['reduction_pct']:.1f}"
                        for p in ("oracle", "carbon-aware", "rolling-window", "next-hour-window")
                    ),
                    _pct(pol["carbon-aware"]["fraction_of_oracle"]),
                    f"{ship['reduction_pct']:.1f}",
                    _pct(ship["fraction_of_oracle"]),
                ]
            )
        lines += _table("Reduction with real archived forecasts", header, rows, "24 5 5 5 7 7 7 7 7 8 8 8")
    lines += [
        ".. _backtest-forecast-errors:",
        "",
        "How wrong the forecasts are",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
        "Mean absolute percentage error of each forecast interval against the measured value, by *lead* (how "
        "long after the forecast's issue the interval starts): over all leads up to L, and at L (within half an "
        "hour). ``noisy:10:1`` is issued every hour over 2023 and, for a like-for-like check, at NESO's eight "
        "issue times on NESO's actuals. NESO's figures rest on eight forecasts over three days: a small sample.",
        "",
    ]
    header = ["forecast", *(f"up to {lead} h" for lead in LEADS_H), *(f"at {lead} h" for lead in LEADS_H)]
    rows = [[name, *(f"{row['up_to'][lead]:.1f}" for lead in LEADS_H), *(f"{row['at'][lead]:.1f}" for lead in LEADS_H)]
            for name, row in sorted(mape.items(), key=lambda kv: not kv[0].startswith("NESO"))]
    lines += _table("Realised MAPE, percent", header, rows, "34 6 6 6 6 6 6")
    titles = {
        "noisy:10:1": "Electricity Maps data, ``noisy:10:1`` forecasts (milder than real ones)",
        "perfect": "Electricity Maps data, perfect forecasts (the upper bound)",
    }
    for forecast in FORECASTS:
        title = titles[forecast]
        lines += [
            title,
            "~" * len(title),
            "",
            "Home zone DE; jobs arrive every 6 h over all of 2023 (Electricity Maps hourly data, lifecycle "
            "intensity, ODbL); forecasts are refreshed hourly.",
            "",
        ]
        header = ["zones", "job", "slack", "run-now g/kWh", *policies, "carbon-aware of oracle",
                  f"carbon-aware, {shipped}", f"of oracle, {shipped}"]
        rows = []
        for item in (m for m in matrix if m["report"]["forecast"] == forecast):
            pol, ship = item["report"]["policies"], item["shipped"]["policies"]["carbon-aware"]
            rows.append(
                [
                    ", ".join(item["zones"]),
                    f"{item['job_h']} h",
                    f"{item['slack_h']} h",
                    f"{pol['run-now']['mean_intensity']:.0f}",
                    *(f"{pol[p]['reduction_pct']:.1f}" for p in policies),
                    _pct(pol["carbon-aware"]["fraction_of_oracle"]),
                    f"{ship['reduction_pct']:.1f}",
                    _pct(ship["fraction_of_oracle"]),
                ]
            )
        lines += _table(
            f"Reduction per policy, forecast ``{forecast}``",
            header,
            rows,
            "18 5 5 7 " + " ".join("7" for _ in policies) + " 8 8 8",
        )
    lines += [
        ".. _forecast-error-results:",
        "",
        "Under realistic forecast error",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
        "",
        "Produced by ``python benchmarks/forecast_error_matrix.py --out docs/forecast-error-results.inc`` "
        "(included here); what the rows and columns mean is explained in :doc:`/howto/forecast-error`.",
        "",
        ".. include:: /forecast-error-results.inc",
        "",
        ".. _capacity-results:",
        "",
        "Under capacities",
        "~~~~~~~~~~~~~~~~",
        "",
        "Produced by ``python benchmarks/capacity_matrix.py --out docs/capacity-results.inc`` (included "
        "here); the flags and how an overflow is charged are explained in :doc:`/howto/backtest`, *Capacities*.",
        "",
        ".. include:: /capacity-results.inc",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "backtest-results.rst")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.data / "traces").is_dir():
        print(f"skipped: no shared data at {args.data} (pass --data)")
        return 0
    tasks = [
        (str(args.data), zones, job, slack, fc)
        for fc in FORECASTS
        for zones in ZONE_SETS
        for job in JOBS_H
        for slack in SLACK_H
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        matrix = list(pool.map(_run, tasks))
    uk = "traces/uk-carbon-intensity-forecast-archive/"
    wt = "traces/watttime-caiso-north-2023/watttime2023_casio-north_"
    archives = [
        _archive(
            args.data,
            uk + "actuals.normalized.csv",
            uk + "forecasts.normalized.csv",
            "GB",
            "average",
            job,
            12,
            1,
            "NESO GB, 14-18 Mar 2023 (average)",
        )
        for job in (1, 4)
    ] + [
        _archive(
            args.data,
            wt + "actual.normalized.csv",
            wt + "forecast.normalized.csv",
            "CAISO_NORTH",
            "marginal",
            job,
            6,
            1,
            "WattTime CAISO_NORTH, Jun 2023 (marginal, 65 min horizon)",
        )
        for job in (0.5, 1)
    ]
    command = "python benchmarks/backtest_matrix.py"
    text = render(matrix, archives, measure(args.data), command)
    args.out.write_text(text + "\n")
    print(text)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
