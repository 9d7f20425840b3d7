"""Draw a backtest: intensity per zone over the period, and where and when jobs started.

This module needs matplotlib (the ``plot`` extra); it is imported only when a plot is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_carbon_provider.core.backtest import BacktestResult
from airflow_carbon_provider.core.signals import IntensitySeries

UTC = timezone.utc


def plot_backtest(
    result: BacktestResult, actuals: Mapping[str, IntensitySeries], path: Path, policy: str = "carbon-aware"
) -> None:
    """Write a PNG: one line per zone, and a marker at the start of each job under ``policy``."""
    import matplotlib

    matplotlib.use("Agg")
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
    shown = policy if policy in result.outcomes else "oracle"
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
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _x(moment: datetime) -> Any:
    """Return ``moment`` as an x coordinate (matplotlib's stubs do not list datetimes)."""
    return [moment]
