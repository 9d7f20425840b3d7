"""The public library API: describe where a task may run, plan it, defer to the window.

Operators in this package use it, and so can custom operators::

    schedule = CarbonSchedule(["k8s_de", "k8s_se"], expected_duration="4h", max_delay="12h")
    decision = schedule.plan(now=utcnow(), arrival=utcnow())
    if decision.waits:
        self.defer(trigger=CarbonWindowTrigger.from_decision(schedule, decision),
                   method_name="execute_complete", kwargs={"decision": decision.to_xcom()},
                   timeout=schedule.defer_timeout(decision))

In parts, each importable on its own:

- :mod:`~airflow_carbon_provider.scheduling.candidates`: where a task may run
  (:class:`ClusterCandidate`, :func:`parse_candidates`).
- :mod:`~airflow_carbon_provider.scheduling.schedule`: a task's timing and options, and
  planning with them (:class:`CarbonSchedule`).
- :mod:`~airflow_carbon_provider.scheduling.fetching`: the one per-source fetch step, all
  sources at once within one time budget (worker and trigger alike).
- :mod:`~airflow_carbon_provider.scheduling.planning`: the decision rule (:func:`decide`).
- :mod:`~airflow_carbon_provider.scheduling.decision`: the typed, frozen decision record
  (:class:`Decision`) and its JSON form.
"""

from __future__ import annotations

from airflow_carbon_provider.scheduling.candidates import (
    DEFAULT_CARBON_CONN_ID,
    ClusterCandidate,
    ScheduleConfigError,
    parse_candidates,
)
from airflow_carbon_provider.scheduling.decision import (
    XCOM_KEY,
    CandidateRow,
    Decision,
    ExpectedFigures,
    Fallback,
    Recheck,
    TriggerReport,
    pull_decision,
)
from airflow_carbon_provider.scheduling.planning import CarbonPlanningFailed, PlanningOptions, decide
from airflow_carbon_provider.scheduling.schedule import CarbonSchedule, utcnow

__all__ = [
    "DEFAULT_CARBON_CONN_ID",
    "XCOM_KEY",
    "CandidateRow",
    "CarbonPlanningFailed",
    "CarbonSchedule",
    "ClusterCandidate",
    "Decision",
    "ExpectedFigures",
    "Fallback",
    "PlanningOptions",
    "Recheck",
    "ScheduleConfigError",
    "TriggerReport",
    "decide",
    "parse_candidates",
    "pull_decision",
    "utcnow",
]
