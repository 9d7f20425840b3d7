"""A real historical moment, replayed on the wall clock, for the demo and the end-to-end tests.

On 2023-03-15 at 23:00 UTC (bundled Electricity Maps trace) Germany's intensity was about
519 gCO2eq/kWh and about 489 the hour after; Great Britain's fell from 139 to 101 as the
night began; California stayed near 205. So a short job that arrives a little before 23:00
with Germany as home pays off both by moving (to Great Britain) and by waiting (for the
23:00 hour). :func:`replay_connection_env` maps "shortly before 23:00" onto "now" on the wall
clock, so a DAG run started now meets that moment within ``lead``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

__all__ = ["DEMO_CLUSTERS", "DEMO_MOMENT", "replay_connection_env", "replay_extras"]

UTC = timezone.utc
DEMO_MOMENT = datetime(2023, 3, 15, 23, 0, tzinfo=UTC)
"""The real moment the demo replays: waiting and moving both pay just before it."""

DEMO_CLUSTERS = {"k8s_de": "DE", "k8s_gb": "GB", "k8s_us": "US-CAL-CISO"}
"""Three clusters, home first, and the grid zones they draw power from."""


def replay_extras(
    *, moment: datetime = DEMO_MOMENT, lead: timedelta = timedelta(seconds=45), now: datetime | None = None,
    forecast: str = "perfect",
) -> dict[str, object]:
    """Return ``carbontrace`` extras that make wall-clock ``now + lead`` replay ``moment``."""
    anchor = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "replay_start": (moment - lead).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "anchor": anchor.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "forecast": forecast,
        "loop": False,
    }


def replay_connection_env(conn_id: str = "carbontrace_default", **kwargs: object) -> dict[str, str]:
    """Return the ``AIRFLOW_CONN_...`` variable of a carbontrace connection set by :func:`replay_extras`."""
    extras = replay_extras(**kwargs)  # type: ignore[arg-type]
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "carbontrace", "extra": extras})}
