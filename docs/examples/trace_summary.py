"""Summarise the trace bundled with the package: period and intensity range per zone.

Run it from a clone of the repository: ``python3 docs/examples/trace_summary.py``. The traces
page shows its output, and a test reruns it and compares.
"""

from __future__ import annotations

from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace

print(f"{'zone':<12} {'hours':>5}  {'from':<17}  {'to':<17}  {'min':>4}  {'mean':>4}  {'max':>4}")
for zone, series in read_trace(bundled_trace_path()).items():
    values = series.values
    hours = (series.end - series.start).total_seconds() / 3600
    print(
        f"{zone:<12} {hours:>5.0f}  {series.start:%Y-%m-%dT%H:%MZ}  {series.end:%Y-%m-%dT%H:%MZ}  "
        f"{min(values):>4.0f}  {sum(values) / len(values):>4.0f}  {max(values):>4.0f}"
    )
