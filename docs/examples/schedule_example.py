"""Plan a task with the library API at two real moments of the bundled trace, and build its trigger.

Run it from a clone of the repository: ``python docs/examples/schedule_example.py``. The
documentation quotes the parts between the START and END markers and shows its output; a test
runs this file and compares the two. It only plans: nothing is deferred and no pod is started,
so it needs no Airflow database and no cluster. ``custom_operator.py``, next to this file, shows
where the same calls go in a custom operator.
"""

from __future__ import annotations

# [START howto_library_plan]
import json
import os
from datetime import datetime, timezone

from airflow_carbon_provider.scheduling import CarbonSchedule
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

# A carbontrace connection whose wall clock is the trace's own time (replay_start == anchor):
# planning "at" 2023-03-15T22:50Z reads what the bundled trace recorded around that instant.
os.environ["AIRFLOW_CONN_TRACE_AS_RECORDED"] = json.dumps({
    "conn_type": "carbontrace",
    "extra": {"replay_start": "2023-03-01T00:00:00Z", "anchor": "2023-03-01T00:00:00Z", "loop": False},
})

schedule = CarbonSchedule(
    # Candidate name -> grid zone; the first is home (the baseline).
    {"k8s_de": "DE", "k8s_gb": "GB", "k8s_us": "US-CAL-CISO"},
    expected_duration="1h",
    max_delay="6h",
    carbon_conn_id="trace_as_recorded",
)

for now in (datetime(2023, 3, 10, 3, 0, tzinfo=timezone.utc), datetime(2023, 3, 15, 22, 50, tzinfo=timezone.utc)):
    decision = schedule.plan(now=now, arrival=now)
    print(f"at {now:%Y-%m-%d %H:%M}Z: {decision.reason}")
    if not decision.waits:
        print(f"  run now on {decision.chosen.conn_id}")
        continue
    classpath, kwargs = CarbonWindowTrigger.from_decision(schedule, decision).serialize()
    print(f"  defer to {classpath.rsplit('.', 1)[1]} for {decision.chosen.key}, "
          f"timeout {schedule.defer_timeout(decision, now)}")
    print(f"  trigger kwargs: {sorted(kwargs)}")
    print(f"  candidates in the kwargs: {kwargs['candidates']}")
# [END howto_library_plan]

