"""A custom operator that plans with the library API and defers to the carbon window trigger.

``python docs/examples/custom_operator.py`` defines the operator and builds one task (so a
broken import or a parse-time check shows; the documentation test runs it), but runs nothing:
``docs/examples/schedule_example.py`` runs the planning part on real data.
"""

from __future__ import annotations

# [START howto_library_operator]
from typing import Any

from airflow.sdk import BaseOperator

from airflow_carbon_provider.scheduling import XCOM_KEY, CarbonSchedule, Decision, pull_decision, utcnow
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger


class CarbonAwareJobOperator(BaseOperator):
    """Run a job (here: only log it) where and when the grid is cleanest before its deadline."""

    template_fields = ("expected_duration", "max_delay")

    def __init__(self, *, zones: dict[str, str], expected_duration: str, max_delay: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zones, self.expected_duration, self.max_delay = zones, expected_duration, max_delay
        # Validate at parse time: a bad zone, duration or delay fails the DAG import, in one line.
        CarbonSchedule.check_at_parse(zones, expected_duration=expected_duration, max_delay=max_delay)

    def execute(self, context: Any) -> Any:
        schedule = CarbonSchedule(self.zones, expected_duration=self.expected_duration, max_delay=self.max_delay)
        now = utcnow()
        decision = schedule.plan(now=now, arrival=context["ti"].start_date or now)
        self.log.info("%s", decision.reason)
        if decision.waits:
            # Keep a copy in XCom: a resume that brings the event only can still find the plan.
            waiting = decision.with_phase("waiting").to_xcom()
            context["ti"].xcom_push(key=XCOM_KEY, value=waiting)
            self.defer(trigger=CarbonWindowTrigger.from_decision(schedule, decision), method_name="execute_complete",
                       kwargs={"decision": waiting}, timeout=schedule.defer_timeout(decision, now))
        return self.run_job(decision)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None,
                         decision: dict[str, Any] | None = None) -> Any:
        record = Decision.from_xcom(decision) if decision else pull_decision(context["ti"], self.task_id)
        if record is None:
            raise RuntimeError("resumed without the carbon decision")
        # The trigger may have moved the task while it waited: the event names where to run.
        return self.run_job(record.after_trigger(event or {}))

    def run_job(self, decision: Decision) -> dict[str, Any]:
        self.log.info("Running on %s (%s g/kWh expected)", decision.chosen_key, decision.expected_intensity)
        return decision.starting(utcnow()).to_xcom()


CarbonAwareJobOperator(task_id="job", zones={"k8s_de": "DE", "k8s_gb": "GB"}, expected_duration="1h",
                       max_delay="6h")
# [END howto_library_operator]
