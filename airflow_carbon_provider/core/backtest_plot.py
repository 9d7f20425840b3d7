"""Draw a backtest: intensity per zone over the period, and where and when jobs started.

Up to :data:`DETAIL_DAYS` days the plot shows every interval and every job's start. Longer
periods (a year of hourly arrivals is 8,760 jobs per policy) are drawn as **weekly
aggregates**, which stay readable: per zone the weekly mean intensity, and per week the mean
intensity the jobs were charged under the chosen policy and under ``run-now``, with the share
of jobs each zone ran in drawn below.

This module needs matplotlib (the ``plot`` extra); it is imported only when a plot is asked for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow_carbon_provider.core.backtest import BacktestResult, JobOutcome
from airflow_carbon_provider.core.signals import IntensitySeries

__all__ = ["DETAIL_DAYS", "draw_backtest", "plot_backtest", "weekly"]

UTC = timezone.utc
#: Periods up to this many days are drawn in detail; longer ones as weekly aggregates.
DETAIL_DAYS = 45
WEEK = timedelta(days=7)


def plot_backtest(
    result: BacktestResult, actuals: Mapping[str, IntensitySeries], path: Path, policy: str = "carbon-aware"
) -> None:
    """Write a PNG of the backtest (detailed, or weekly for periods over :data:`DETAIL_DAYS` days)."""
    import matplotlib.pyplot as plt

    fig = draw_backtest(result, actuals, policy)
    fig.savefig(path)
    plt.close(fig)


def draw_backtest(result: BacktestResult, actuals: Mapping[str, IntensitySeries], policy: str = "carbon-aware") -> Any:
    """Return the matplotlib figure :func:`plot_backtest` writes."""
    import matplotlib

    matplotlib.use("Agg")
    shown = policy if policy in result.outcomes else "oracle"
    span = result.arrivals[-1] - result.arrivals[0]
    if span > timedelta(days=DETAIL_DAYS):
        return _weekly_figure(result, actuals, shown)
    return _detail_figure(result, actuals, shown)


def _detail_figure(result: BacktestResult, actuals: Mapping[str, IntensitySeries], shown: str) -> Any:
    import matplotlib.pyplot as plt

    lo = result.arrivals[0].timestamp()
    hi = (result.arrivals[-1] + result.max_delay + result.job_duration).timestamp()
    fig, ax = plt.subplots(figsize=(12, 5), dpi=100)
    colours = {}
    for zone in result.zones:
        part = actuals[zone].window_ts(lo, hi)
        xs: Any = [datetime.fromtimestamp(t, UTC) for t in part.bounds[:-1]]
        (line,) = ax.step(xs, part.values, where="post", linewidth=0.9, label=zone)
        colours[zone] = line.get_color()
    for outcome in result.outcomes.get(shown, []):
        ax.plot(_x(outcome.start), [outcome.intensity], marker="v", color=colours[outcome.zone],
                markeredgecolor="black", markersize=6, linestyle="none")
    for outcome in result.outcomes.get("run-now", []):
        ax.plot(_x(outcome.start), [outcome.intensity], marker="o", color="none",
                markeredgecolor="grey", markersize=4, linestyle="none")
    ax.set_ylabel("gCO2eq/kWh")
    ax.set_title(
        f"{shown} starts (triangles, coloured by zone) vs run-now (grey circles); "
        f"{result.job_duration.total_seconds() / 3600:g} h jobs, forecast {result.forecast}",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def weekly(outcomes: Sequence[JobOutcome], first: datetime) -> dict[datetime, tuple[datetime, float, dict[str, int]]]:
    """Group jobs by the week of their arrival (weeks counted from ``first``).

    :return: per week start: the jobs' mean arrival (where to draw the week), their mean
        charged intensity, and how many ran in each zone.
    """
    groups: dict[datetime, list[JobOutcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[first + WEEK * ((outcome.arrival - first) // WEEK)].append(outcome)
    out = {}
    for week, jobs in sorted(groups.items()):
        zones: dict[str, int] = defaultdict(int)
        for job in jobs:
            zones[job.zone] += 1
        middle = week + sum((j.arrival - week for j in jobs), timedelta(0)) / len(jobs)
        out[week] = (middle, sum(j.intensity for j in jobs) / len(jobs), dict(zones))
    return out


def _weekly_figure(result: BacktestResult, actuals: Mapping[str, IntensitySeries], shown: str) -> Any:
    import matplotlib.pyplot as plt

    first = result.arrivals[0]
    last = result.arrivals[-1] + result.max_delay + result.job_duration
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), dpi=100, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.2]})
    colours = {}
    weeks = []
    week = first
    while week < last:
        weeks.append(week)
        week += WEEK
    for zone in result.zones:
        means = []
        for start in weeks:
            lo, hi = start.timestamp(), min(start + WEEK, last).timestamp()
            means.append(actuals[zone].integral_ts(lo, hi) / (hi - lo) if hi > lo else float("nan"))
        (line,) = top.step(_xs([*weeks, last]), [*means, means[-1]], where="post", linewidth=1.0, alpha=0.6,
                           label=f"{zone} weekly mean")
        colours[zone] = line.get_color()
    for name, style in ((shown, {"marker": "v", "color": "black", "markersize": 6}),
                        ("run-now", {"marker": "o", "color": "grey", "markersize": 4, "markerfacecolor": "none"})):
        agg = weekly(result.outcomes.get(name, []), first)
        top.plot(_xs([m for m, _, _ in agg.values()]), [v for _, v, _ in agg.values()], linestyle="-", linewidth=0.8,
                 label=f"{name}: jobs' mean charged intensity", **style)
    top.set_ylabel("gCO2eq/kWh")
    top.set_title(
        f"{shown} vs run-now, by week ({len(result.arrivals)} jobs of "
        f"{result.job_duration.total_seconds() / 3600:g} h, forecast {result.forecast})", fontsize=10)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    top.grid(alpha=0.3)
    agg = weekly(result.outcomes.get(shown, []), first)
    bottom_edge = [0.0] * len(agg)
    xs = _xs([m for m, _, _ in agg.values()])
    for zone in result.zones:
        shares = [100.0 * zones.get(zone, 0) / sum(zones.values()) for _, _, zones in agg.values()]
        bottom.bar(xs, shares, width=WEEK * 0.6, bottom=bottom_edge, color=colours[zone], label=zone)
        bottom_edge = [b + s for b, s in zip(bottom_edge, shares)]
    bottom.set_ylabel(f"% of jobs\n({shown})")
    bottom.set_ylim(0, 100)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _x(moment: datetime) -> Any:
    """Return ``moment`` as an x coordinate (matplotlib's stubs do not list datetimes)."""
    return [moment]


def _xs(moments: Sequence[datetime]) -> Any:
    return list(moments)
