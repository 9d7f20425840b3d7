"""Plan one job over two clusters, then the same job trusting the forecast beyond its horizon.

Run it from a clone of the repository: ``python docs/examples/plan_example.py``. The
documentation quotes the part between the START and END markers and shows its output; a test
runs this file and compares the two.
"""

from __future__ import annotations

# [START howto_plan]
from datetime import datetime, timedelta, timezone

from airflow_carbon_provider.core.planner import Candidate, plan
from airflow_carbon_provider.core.signals import IntensitySeries

now = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
hour = timedelta(hours=1)


def forecast(zone: str, values: list[float]) -> IntensitySeries:
    """Return an hourly average-intensity forecast for ``zone`` issued at ``now``."""
    points = [(now + i * hour, value) for i, value in enumerate(values)]
    return IntensitySeries.from_points(zone, "average", points, resolution=hour, issued_at=now, is_forecast=True)


# The first candidate is home: "run there now" is the baseline every saving is measured against.
candidates = [Candidate("k8s_de", "DE"), Candidate("k8s_eu_north", "SE-SE1")]
# Six hours of forecast, but the 2 h job may start up to 6 h from now: it needs 8 h of forecast.
forecasts = {
    "DE": forecast("DE", [420, 380, 300, 240, 210, 190]),
    "SE-SE1": forecast("SE-SE1", [120, 90, 60, 45, 40, 30]),
}

for beyond_horizon in ("exclude", "persist"):
    decision = plan(
        candidates,
        forecasts,
        now=now,
        duration=2 * hour,
        latest_start=now + 6 * hour,
        beyond_horizon=beyond_horizon,
    )
    print(f"beyond_horizon={beyond_horizon}: horizon_limited={decision.horizon_limited}")
    print(f"  {decision.reason}")
# [END howto_plan]
