"""``CarbonWindowSensor``: hold any downstream task until the low-carbon window opens.

Not only pods: put the sensor upstream of any task (a Spark submit, a dbt build, a Python
callable) to start it in the cleanest window before its deadline. With several zones the
sensor also picks where, and returns the decision (``zone`` included) as its XCom value for
the downstream task to use.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_carbon_provider.operators.mixin import CarbonScheduledMixin
from airflow_carbon_provider.scheduling import (
    DEFAULT_CARBON_CONN_ID,
    XCOM_KEY,
    CarbonSchedule,
    Decision,
    ScheduleConfigError,
    fleet,
    pull_decision,
    utcnow,
)
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CarbonWindowSensor"]


class CarbonWindowSensor(CarbonScheduledMixin, BaseSensorOperator):
    """Succeed when the planned low-carbon start arrives; defer meanwhile (default).

    :param zone: the grid zone the gated work draws power from.
    :param zones: several zones to choose from instead (the first is home).
    :param expected_duration: how long the gated work runs, e.g. ``"2h"``.
    :param max_delay: how late the work may start after the sensor starts, e.g. ``"8h"``.
    :param deadline: when the work must be done (templated); give this or ``max_delay``.
    :param policy: planner policy (default ``carbon-aware``).
    :param min_saving_pct: wait only for at least this relative saving (default 5).
    :param min_saving_abs: ... and at least this many gCO2eq/kWh (default 0).
    :param carbon_conn_id: the carbon-intensity connection (default: the bundled trace replay).
    :param fail_open: on carbon-data failure succeed at once and say so (default true).
    :param replan_interval: how often the waiting trigger re-plans (default 15 minutes).
    :param beyond_horizon: ``exclude`` (default) or ``persist``; see the planner docs.
    :param allow_mixed_signals: accept average and marginal zones in one comparison.
    :param planning_timeout: seconds one planning step may wait for carbon data (default
        ``[carbon] planning_timeout``, else 5); then the sensor plans without the late sources,
        or opens.
    :param coordinate: reserve the gated work's window (one pod on the chosen zone) in the
        ledger's database, so that other carbon-aware tasks see it (see
        :mod:`~airflow_carbon_provider.scheduling.fleet`); the zones are not clusters, so no
        cluster is read. The reservation expires an hour after the window ends.
    :param deferrable: wait in the triggerer (default) rather than poking from a worker.
    """

    template_fields: Sequence[str] = ("expected_duration", "max_delay", "deadline")

    def __init__(
        self,
        *,
        expected_duration: Any,
        zone: str | None = None,
        zones: Sequence[str] | None = None,
        max_delay: Any = None,
        deadline: Any = None,
        policy: str = "carbon-aware",
        min_saving_pct: float = 5.0,
        min_saving_abs: float = 0.0,
        carbon_conn_id: str = DEFAULT_CARBON_CONN_ID,
        fail_open: bool = True,
        replan_interval: Any = timedelta(minutes=15),
        beyond_horizon: str = "exclude",
        allow_mixed_signals: bool = False,
        planning_timeout: Any = None,
        coordinate: bool = True,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (zone is None) == (zones is None):
            raise ScheduleConfigError(f"{self.task_id!r}: give zone='DE' or zones=['DE', 'FR'], not both or neither")
        if isinstance(zones, str):
            raise ScheduleConfigError(
                f"{self.task_id!r}: zones={zones!r} is one string; give a list, zones=[{zones!r}], or zone={zones!r}"
            )
        chosen = [zone] if zone is not None else list(zones or [])
        self.zones = chosen
        self._set_carbon_parameters(
            expected_duration, max_delay, deadline, policy=policy, min_saving_pct=min_saving_pct,
            min_saving_abs=min_saving_abs, carbon_conn_id=carbon_conn_id, fail_open=fail_open,
            replan_interval=replan_interval, beyond_horizon=beyond_horizon, allow_mixed_signals=allow_mixed_signals,
            planning_timeout=planning_timeout, coordinate=coordinate,
        )
        self.deferrable = deferrable

    def _carbon_candidates(self) -> Any:
        zones = self.zones
        return {z: {"zone": z} for z in zones} if all(isinstance(z, str) for z in zones) else zones

    def _arrival(self, context: Context, now: datetime) -> datetime:
        """Return when the sensor first started: in reschedule mode, its first poke, not this one."""
        ti = context["ti"]
        first = None
        if getattr(self, "reschedule", False) or self.mode == "reschedule":
            try:
                first = ti.get_first_reschedule_date(context)
            except Exception as exc:  # an older task runner: anchor on this poke and say so
                self.log.warning("Could not read the first reschedule date (%s); max_delay counts from now", exc)
        return first or getattr(ti, "start_date", None) or now

    def _decide(self, context: Context, schedule: CarbonSchedule) -> Decision:
        now = utcnow()
        decision = schedule.plan(now, self._arrival(context, now), holder=fleet.holder_of(context),
                                 read_cluster=False)
        self.log.info("%s", decision.reason)
        return decision

    def execute(self, context: Context) -> Any:
        """Plan; return the decision now, or defer to the window (poke if not deferrable)."""
        if not self.deferrable:
            return super().execute(context)
        schedule = self.carbon_schedule
        decision = self._decide(context, schedule)
        if decision.waits:
            waiting = decision.with_phase("waiting").to_xcom()
            context["ti"].xcom_push(key=XCOM_KEY, value=waiting)
            self.defer(
                trigger=CarbonWindowTrigger.from_decision(schedule, decision),
                method_name="execute_complete",
                kwargs={"decision": waiting},
                timeout=schedule.defer_timeout(decision),
            )
        return self._opened(context, decision)

    def _opened(self, context: Context, record: Decision) -> dict[str, Any]:
        """Stamp the decision with the moment the window opened, push it, and return it."""
        data = record.starting(utcnow(), phase="open").to_xcom()
        context["ti"].xcom_push(key=XCOM_KEY, value=data)
        return data

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the decision, updated with where the trigger ended up."""
        record = None
        if decision:
            try:
                record = Decision.from_xcom(decision)
            except ValueError as exc:
                self.log.warning("The carbon decision passed on resume is not readable (%s); reading XCom", exc)
        record = record or pull_decision(context["ti"], self.task_id)
        if record is None:
            raise ScheduleConfigError(f"{self.task_id}: resumed without its carbon decision")
        if isinstance(event, dict):
            record = record.after_trigger(event)
        else:
            self.log.warning("Window trigger sent no usable event (%r); the window is open anyway", event)
        return self._opened(context, record)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Open anyway if the window trigger failed or timed out, and say why: never hold work past its deadline."""
        if next_method == "__fail__":
            record = pull_decision(context["ti"], self.task_id)
            if record is not None and record.phase == "waiting":
                error = str((next_kwargs or {}).get("error", "unknown"))
                self.log.warning("The carbon window trigger ended without firing (%s); opening the window now", error)
                record = record.after_trigger_failure(
                    error, f"the window trigger ended without firing ({error}), so the window opened at once")
                return self._opened(context, record)
        return super().resume_execution(next_method, next_kwargs, context)

    def poke(self, context: Context) -> PokeReturnValue:
        """Re-plan at each poke; done when the planned start has come."""
        decision = self._decide(context, self.carbon_schedule)
        if decision.waits:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._opened(context, decision))
