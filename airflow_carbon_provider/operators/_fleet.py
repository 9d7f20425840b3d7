"""What the operator records beside its pod: its reservation in the fleet, and the ledger's records.

:class:`FleetMixin` holds the task's reservation at start and releases it at the end (see
:mod:`~airflow_carbon_provider.scheduling.fleet`); :class:`RecordsMixin` writes the decision
and the outcome to the ledger, which never fails the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_carbon_provider.operators._pod_support import bounded_history, short_error
from airflow_carbon_provider.scheduling import fleet
from airflow_carbon_provider.scheduling.schedule import utcnow

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_carbon_provider.scheduling import CarbonSchedule, ClusterCandidate, Decision

__all__ = ["FleetMixin", "RecordsMixin"]


class FleetMixin:
    """For the carbon-aware pod operator: reserve, re-anchor and release its window in the fleet."""

    carbon_schedule: CarbonSchedule
    container_resources: Any
    labels: Any
    log: Any

    def _holder(self, context: Context) -> Any:
        """Return this task instance's reservation holder (the same across tries), None without one."""
        return fleet.holder_of(context)

    def _demand(self) -> dict[str, float]:
        """Return what the pod asks for (one pod plus its requests), for fleet capacities."""
        from airflow_carbon_provider.scheduling.inventory import task_demand

        try:
            return task_demand(self.container_resources)
        except ValueError as exc:
            self.log.warning("Cannot read container_resources for fleet capacities (%s); counting one pod", exc)
            return {"pods": 1.0}

    def _hold_at_start(self, context: Context, record: Decision, cand: ClusterCandidate) -> None:
        """Re-anchor the reservation to the actual start on the cluster the pod is created on.

        The pod then carries :data:`~airflow_carbon_provider.scheduling.fleet.RESERVED_LABEL`, so
        the inventory does not count it a second time while the reservation does.
        """
        schedule = self.carbon_schedule
        holder = self._holder(context)
        if not schedule.coordinate or holder is None or record.fleet is None \
                or record.fleet.get("reservation") is None:
            return
        now = utcnow()
        held = fleet.hold(holder, cand.key, now, schedule.expected_duration,
                          record.fleet.get("demand"), None, now=now, budget=schedule.planning_timeout)
        if held.reserved:
            self.labels = {**(self.labels or {}), fleet.RESERVED_LABEL: "true"}

    def _release(self, context: Context, record: Decision) -> None:
        """Release the reservation once the pod has finished (never fails the task)."""
        holder = self._holder(context)
        if holder is not None and record.fleet is not None and record.fleet.get("reservation") is not None:
            fleet.release(holder, budget=self.carbon_schedule.planning_timeout)


class RecordsMixin:
    """For the carbon-aware pod operator: the ledger's records of its decision and outcome."""

    carbon_schedule: CarbonSchedule
    _carbon_options: dict[str, Any]
    log: Any

    def _release(self, context: Context, record: Decision) -> None:
        raise NotImplementedError

    def _record_decision(self, context: Context, record: Decision, *, emit_metrics: bool = True) -> None:
        try:
            from airflow_carbon_provider.ledger import record_decision, run_key_from_context

            record_decision(record, run_key_from_context(context), emit_metrics=emit_metrics)
        except Exception as exc:  # the ledger is best effort by design
            self.log.warning("Carbon ledger: decision not recorded (%s)", short_error(exc))

    def _record_outcome(self, context: Context, record: Decision, state: str) -> None:
        """Record the outcome (and release the reservation); the realised-intensity fetch gets
        ``planning_timeout``, then forecasts stand in."""
        self._release(context, record)
        budget = self.carbon_schedule.planning_timeout
        try:
            from airflow_carbon_provider.ledger import record_outcome, run_key_from_context

            record_outcome(record, run_key_from_context(context), state=state,
                           carbon_conn_id=record.carbon_conn_id or self._carbon_options["carbon_conn_id"],
                           hook_for=bounded_history(budget))
        except Exception as exc:  # the ledger is best effort by design
            self.log.warning("Carbon ledger: outcome not recorded (%s)", short_error(exc))
