"""``CarbonAwareKubernetesPodOperator``: KubernetesPodOperator, run where and when the grid is cleanest.

It keeps the whole interface of the cncf.kubernetes ``KubernetesPodOperator`` (its own
deferrable mode included) and adds where-and-when planning in front of it:

1. ``execute`` resolves the candidate clusters (each Kubernetes connection's extra
   ``carbon_zone``), fetches forecasts and plans.
2. If the best start is now, it places the pod on the chosen connection (and namespace,
   node selector, affinity) and runs it exactly as KPO does.
3. Otherwise it defers to :class:`~airflow_carbon_provider.triggers.carbon_window.CarbonWindowTrigger`
   (no worker slot held) with a timeout after the latest start; the chosen cluster travels
   in ``defer(kwargs=...)``. ``execute_complete`` re-checks the spatial choice with fresh data
   and starts the pod.
4. If the chosen cluster's API refuses the pod (it was never created), the next-best
   candidate is tried, and the decision and the log say so.

Every outcome is pushed to XCom as ``carbon_decision`` and logged as one sentence. Carbon
data failures never stop the task: with ``fail_open`` (the default) it runs now at home.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.backcompat.backwards_compat_converters import convert_affinity
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

from airflow_carbon_provider.core.emissions import PowerModel, ResourceError
from airflow_carbon_provider.core.planner import Option
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.links.carbon import CarbonDecisionLink
from airflow_carbon_provider.operators._fleet import FleetMixin, RecordsMixin
from airflow_carbon_provider.operators._pod_support import (
    ContextWithStart,
    iso,
    parse_instant,
    short_error,
)
from airflow_carbon_provider.operators.mixin import CarbonScheduledMixin
from airflow_carbon_provider.scheduling import (
    DEFAULT_CARBON_CONN_ID,
    XCOM_KEY,
    CandidateRow,
    CarbonPlanningFailed,
    ClusterCandidate,
    Decision,
    ScheduleConfigError,
    parse_candidates,
    pull_decision,
    utcnow,
)
from airflow_carbon_provider.scheduling.fetching import run_bounded
from airflow_carbon_provider.triggers.carbon_window import CarbonWindowTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["XCOM_KEY", "CarbonAwareKubernetesPodOperator"]

TRIGGER_FAIL = "__fail__"
#: The task state store key holding when the first try started (``max_delay`` counts from it).
ARRIVAL_KEY = "carbon_first_try_start"
#: KPO parameters that choose the cluster inside KPO's hook, over the connection's own.
PLACEMENT_OVERRIDES = ("config_file", "cluster_context", "in_cluster")


@dataclass(frozen=True)
class _Placement:
    """The operator's own placement, as rendered, before any candidate is applied."""

    namespace: str | None
    node_selector: dict[str, str]
    affinity: Any
    config_file: str | None
    cluster_context: str | None
    in_cluster: bool | None


class CarbonAwareKubernetesPodOperator(FleetMixin, RecordsMixin, CarbonScheduledMixin, KubernetesPodOperator):
    """Run a pod on the greenest candidate cluster, in the lowest-carbon window before its deadline.

    All of :class:`~airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator`'s
    parameters are accepted and behave as there, except that where the pod runs follows the
    chosen candidate: ``kubernetes_conn_id``, ``namespace``, ``node_selector``, ``affinity``,
    ``config_file``, ``cluster_context`` and ``in_cluster`` are the operator's own values plus
    the chosen candidate's, afresh for every cluster tried. With several candidates,
    ``config_file``, ``cluster_context`` and ``in_cluster`` on the operator are refused (they
    would send every candidate's pod to one cluster): give them per candidate. Carbon-aware
    parameters:

    :param cluster_conn_ids: candidate Kubernetes connection ids, home first; or a mapping of
        connection id to zone, or to a dict with ``zone``, ``namespace``, ``node_selector``,
        ``affinity``, ``carbon_conn_id``, ``capacity``, ``conn_id``, ``config_file``,
        ``cluster_context``, ``in_cluster`` (see
        :func:`~airflow_carbon_provider.scheduling.parse_candidates`). Default: just
        ``kubernetes_conn_id`` (time-shifting only).
    :param expected_duration: how long the pod runs, e.g. ``"4h"`` (templated).
    :param max_delay: how long after the task's first try started it may start, e.g. ``"12h"``
        (templated). Retries share it: a retry plans within what is left.
    :param deadline: when the pod must have finished (templated; ISO-8601 with timezone).
        Give ``max_delay`` or ``deadline``.
    :param policy: planner policy (default ``carbon-aware``: joint choice of cluster and time).
    :param min_saving_pct: wait or move only for at least this relative saving (default 5).
    :param min_saving_abs: ... and at least this many gCO2eq/kWh (default 0).
    :param carbon_conn_id: carbon-intensity connection for clusters that name none (default
        ``carbontrace_default``, a trace replay that must be defined on purpose; undefined,
        the task runs now at home and says so).
    :param power_watts: average power of the pod; default derived from its resource requests
        (CPU, memory, ``nvidia.com/gpu``) with ``power_model``.
    :param power_model: a :class:`~airflow_carbon_provider.core.emissions.PowerModel`.
    :param fail_open: on carbon-data failure run at once at home and say so (default true).
    :param replan_interval: how often the waiting trigger re-plans (default 15 minutes).
    :param beyond_horizon: ``exclude`` (default) or ``persist``; see the planner docs.
    :param allow_mixed_signals: accept average and marginal candidates in one comparison.
    :param planning_timeout: seconds that planning, the re-check before the pod starts, the
        search for an earlier try's pod and the realised-intensity fetch after the run may
        each take (default ``[carbon] planning_timeout``, else 5). When carbon data has not
        come in time the task plans without it, or falls open.
    :param coordinate: plan with the fleet (default true): what each candidate cluster can take
        (its nodes' allocatable minus running pods' requests, capped by a declared
        ``capacity``) and the other carbon-aware tasks' reservations; the task reserves its
        window, re-plans move the reservation, and it is released when the pod finishes. See
        :mod:`~airflow_carbon_provider.scheduling.fleet`.
    """

    template_fields: Sequence[str] = (
        *KubernetesPodOperator.template_fields, "expected_duration", "max_delay", "deadline",
    )
    operator_extra_links = (*KubernetesPodOperator.operator_extra_links, CarbonDecisionLink())

    def __init__(
        self,
        *,
        expected_duration: Any,
        cluster_conn_ids: Any = None,
        max_delay: Any = None,
        deadline: Any = None,
        policy: str = "carbon-aware",
        min_saving_pct: float = 5.0,
        min_saving_abs: float = 0.0,
        carbon_conn_id: str = DEFAULT_CARBON_CONN_ID,
        power_watts: float | None = None,
        power_model: PowerModel | None = None,
        fail_open: bool = True,
        replan_interval: Any = timedelta(minutes=15),
        beyond_horizon: str = "exclude",
        allow_mixed_signals: bool = False,
        planning_timeout: Any = None,
        coordinate: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        task = kwargs.get("task_id", "?")
        if cluster_conn_ids is None:
            cluster_conn_ids = [self.kubernetes_conn_id or "kubernetes_default"]
        elif kwargs.get("kubernetes_conn_id") is not None:
            try:
                conn_ids = {c.conn_id for c in parse_candidates(cluster_conn_ids)}
            except ScheduleConfigError:
                conn_ids = set()  # reported below with the parameter's own message
            if conn_ids and kwargs["kubernetes_conn_id"] not in conn_ids:
                raise ScheduleConfigError(
                    f"{type(self).__name__} {task!r}: kubernetes_conn_id {kwargs['kubernetes_conn_id']!r} is not "
                    "among cluster_conn_ids; the pod runs on the chosen candidate, so drop kubernetes_conn_id "
                    "or list it in cluster_conn_ids (first = home)"
                )
        self.cluster_conn_ids = cluster_conn_ids
        self._set_carbon_parameters(
            expected_duration, max_delay, deadline, policy=policy, min_saving_pct=min_saving_pct,
            min_saving_abs=min_saving_abs, carbon_conn_id=carbon_conn_id, fail_open=fail_open,
            replan_interval=replan_interval, beyond_horizon=beyond_horizon, allow_mixed_signals=allow_mixed_signals,
            planning_timeout=planning_timeout, coordinate=coordinate,
        )
        overrides = [name for name in PLACEMENT_OVERRIDES if kwargs.get(name) is not None]
        if overrides and len(self.carbon_schedule.candidates) > 1:
            raise ScheduleConfigError(
                f"{type(self).__name__} {task!r}: {', '.join(overrides)} on the operator would send every "
                "candidate's pod to one cluster; give them per candidate in cluster_conn_ids "
                "(e.g. {'k8s_se': {'cluster_context': 'se'}}) or in each Kubernetes connection's extras"
            )
        if power_watts is not None and (
            not isinstance(power_watts, (int, float)) or not math.isfinite(power_watts) or power_watts < 0
        ):
            raise ScheduleConfigError(f"{self.task_id!r}: power_watts must be a number >= 0, got {power_watts!r}")
        self.power_watts = power_watts
        self.power_model = power_model or PowerModel()

    def _carbon_candidates(self) -> Any:
        return self.cluster_conn_ids

    # -- power and emissions ----------------------------------------------------------------

    def estimated_power_watts(self) -> tuple[float, str]:
        """Return the pod's estimated average power and how it was obtained."""
        if self.power_watts is not None:
            return float(self.power_watts), "power_watts"
        res = self.container_resources
        wanted: dict[str, Any] = {}
        if res is not None:
            wanted = dict(getattr(res, "limits", None) or {})
            wanted.update(getattr(res, "requests", None) or {})
        if not wanted:
            return self.power_model.watts("1", "1Gi", 0), "default: 1 vCPU and 1 GiB (no resources requested)"
        gpus = wanted.get("nvidia.com/gpu") or wanted.get("amd.com/gpu") or 0
        try:
            watts = self.power_model.watts(wanted.get("cpu", 0), wanted.get("memory", 0), float(gpus))
        except (ResourceError, ValueError) as exc:
            self.log.warning("Cannot estimate power from container_resources (%s); assuming 1 vCPU", exc)
            return self.power_model.watts("1", "1Gi", 0), "default: resources unreadable"
        return watts, "container_resources"

    def _with_power(self, decision: Decision) -> Decision:
        """Return ``decision`` with this pod's power and expected run time (its grams derive from them)."""
        watts, source = self.estimated_power_watts()
        return decision.with_power(watts, source, self.carbon_schedule.expected_duration)

    def _expected_now(self, cand: ClusterCandidate) -> float | None:
        """Return ``cand``'s forecast mean for a run starting now, or None if its source has none in time."""
        schedule = self.carbon_schedule
        now = utcnow()
        end = now + schedule.expected_duration
        series, errors = schedule.fetch_forecasts([cand], now, end)
        forecast = series.get(schedule.source_of(cand))
        if forecast is None:
            self.log.warning("No forecast for %s to state the fallback's expected intensity (%s)", cand.key,
                             "; ".join(errors.values()))
            return None
        try:
            return float(forecast.mean(now, min(end, forecast.end)))
        except ValueError:
            return None

    # -- execution --------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        """Plan; run now on the chosen cluster, or defer to the low-carbon window."""
        now = utcnow()
        ti = context["ti"]
        schedule = self.carbon_schedule
        arrival = self._arrival(context, now)
        adopted = self._adopt_earlier_pod(context)
        if adopted is not None:
            return self._start_pod(context, adopted)
        try:
            decision = schedule.plan(now, arrival, holder=self._holder(context), demand=self._demand())
        except CarbonPlanningFailed as exc:  # fail_open is off and the data failed
            raise CarbonDataError(f"{self.task_id}: no carbon plan and fail_open is off: {exc}",
                                  provider="planner") from exc
        decision = self._with_power(decision)
        (self.log.warning if decision.fail_open else self.log.info)("%s", decision.reason)
        self._record_decision(context, decision)
        if decision.waits:
            waiting = decision.with_phase("waiting").to_xcom()
            ti.xcom_push(key=XCOM_KEY, value=waiting)
            self.defer(
                trigger=CarbonWindowTrigger.from_decision(schedule, decision),
                method_name="execute_complete",
                kwargs={"decision": waiting},
                timeout=schedule.defer_timeout(decision, now),
            )
        return self._start_pod(context, decision)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         decision: dict[str, Any] | None = None) -> Any:
        """Resume from the window trigger: re-check the cluster with fresh data, then run."""
        # The decision travels in defer(kwargs=...); Airflow's dag.test() (3.3) resumes with
        # the event only, so the copy pushed to XCom before deferring is the fallback.
        record = self._readable_decision(decision) or self._pulled_decision(context)
        if record is None:
            raise ScheduleConfigError(f"{self.task_id}: resumed without its carbon decision; cannot place the pod")
        if not isinstance(event, dict) or "cluster" not in event:
            self.log.warning("Window trigger sent no usable event (%r); starting on the planned cluster", event)
            event = {"status": "start", "cluster": record.chosen_key}
        record = self._recheck(record.after_trigger(event))
        return self._start_pod(context, record)

    def _readable_decision(self, data: Any) -> Decision | None:
        if not data:
            return None
        try:
            return Decision.from_xcom(data)
        except ValueError as exc:
            self.log.warning("The carbon decision passed on resume is not readable (%s); reading XCom", exc)
            return None

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Start the pod anyway if the window trigger failed or timed out: never miss the deadline."""
        if next_method == TRIGGER_FAIL:
            record = self._pulled_decision(context)
            if record is not None and record.phase == "waiting":
                error = str((next_kwargs or {}).get("error", "unknown"))
                self.log.warning(
                    "The carbon window trigger ended without firing (%s); starting now on %s as planned",
                    error, record.chosen.conn_id,
                )
                return self._start_pod(context, record.after_trigger_failure(error))
        return super().resume_execution(next_method, next_kwargs, context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Resume KPO's own deferral on the cluster the pod was placed on (not the home one)."""
        record = self._pulled_decision(context)
        if record is not None:
            self._place(record.chosen)
        try:
            result = super().trigger_reentry(context, event)
        except TaskDeferred:  # KPO re-defers to stream logs: not finished yet
            raise
        except Exception:
            if record is not None:
                self._record_outcome(context, record, "failed")
            raise
        if record is not None:
            self._record_outcome(context, record, "success")
        return result

    def invoke_defer_method(self, last_log_time: Any = None, context: Context | None = None) -> None:
        """Defer to KPO's pod trigger with ``execution_timeout`` counted from the pod's start.

        KPO anchors the deadline on the task instance's ``start_date``, which for a carbon-aware
        task lies before its wait for the low-carbon window; the wait must not count against
        the pod's run time.
        """
        if context is not None and self.execution_timeout is not None:
            record = self._pulled_decision(context)
            started = record.actual_start if record is not None else None
            if started is not None:
                context = ContextWithStart(context, started)  # type: ignore[assignment]
        super().invoke_defer_method(last_log_time=last_log_time, context=context)

    # -- tries ------------------------------------------------------------------------------

    def _arrival(self, context: Context, now: datetime) -> datetime:
        """Return when the first try of this task instance started (``max_delay`` counts from it).

        Kept in Airflow's task state store (3.3+), which outlives tries; before 3.3, or if the
        store cannot be read, each try counts from its own start.
        """
        ti = context["ti"]
        own = getattr(ti, "start_date", None) or now
        store = context.get("task_state_store")
        if store is None:
            return own
        try:
            first = parse_instant(store.get(ARRIVAL_KEY))
            if first is not None and first <= own:
                return first
            store.set(ARRIVAL_KEY, iso(own))
        except Exception as exc:  # the store is a convenience: never fail the task on it
            self.log.warning("Could not read or keep the first try's start in the task state store (%s)", short_error(exc))
        return own

    def _adopt_earlier_pod(self, context: Context) -> Decision | None:
        """On a retry, find a live pod of an earlier try on any candidate: one pod per task instance.

        With ``reattach_on_restart`` (KPO's default) the task reattaches to it on its cluster
        and does not plan; otherwise the earlier pods are deleted before planning. Clusters that
        do not answer within ``planning_timeout`` are logged and passed over.
        """
        if int(getattr(context["ti"], "try_number", 1) or 1) <= 1:
            return None
        try:
            candidates = self.carbon_schedule.resolve()
        except ScheduleConfigError:
            return None  # planning reports the configuration error with its own message
        found = self._live_pods(context, candidates)
        # A pod KPO labelled already_checked was given up by the try that ran it (its clean-up
        # ran, e.g. on a timeout with on_finish_action keeping unsucceeded pods), yet it may
        # still run. KPO never reattaches to it and would start a second pod: delete it first.
        for cand, pod in [item for item in found if self._was_checked(item[1])]:
            self.log.warning("Deleting live pod %s of an earlier try on %s: that try gave it up, so it cannot be "
                             "reattached (one pod per task instance)", pod.metadata.name, cand.conn_id)
            self._delete_pod(cand, pod)
        found = [item for item in found if not self._was_checked(item[1])]
        if not found:
            return None
        if not getattr(self, "reattach_on_restart", True):
            for cand, pod in found:
                self.log.warning("Deleting live pod %s of an earlier try on %s (reattach_on_restart is off)",
                                 pod.metadata.name, cand.conn_id)
                self._delete_pod(cand, pod)
            return None
        found.sort(key=lambda item: item[1].metadata.creation_timestamp or datetime.min, reverse=True)
        (cand, pod), extra = found[0], found[1:]
        for other_cand, other in extra:
            self.log.warning("Deleting extra live pod %s of an earlier try on %s", other.metadata.name,
                             other_cand.conn_id)
            self._delete_pod(other_cand, other)
        now = utcnow()
        reason = (f"a live pod of an earlier try ({pod.metadata.name}) runs on {cand.conn_id}; reattached to it "
                  "instead of planning again (one pod per task instance)")
        self.log.info("%s", reason)
        decision = self._with_power(Decision(
            self.carbon_schedule.policy, tuple(CandidateRow(c) for c in candidates), candidates[0].key, cand.key,
            now, None, now, now, now, None, None, reason, reattached_pod=pod.metadata.name,
        ))
        self._record_decision(context, decision)
        return decision

    def _live_pods(self, context: Context, candidates: list[ClusterCandidate]) -> list[tuple[ClusterCandidate, Any]]:
        budget = self.carbon_schedule.planning_timeout
        selector = self._build_find_pod_label_selector(context, exclude_checked=False)
        listers = []
        seen = set()
        for cand in candidates:
            self._place(cand)
            hook = self.hook
            where = (cand.conn_id, cand.config_file, cand.cluster_context, cand.in_cluster)
            try:
                namespace = self.namespace or hook.get_namespace() or "default"
            except Exception as exc:
                self.log.warning("Cannot read the namespace of %s (%s); not searched", cand.conn_id, short_error(exc))
                continue
            if (where, namespace) in seen:
                continue
            seen.add((where, namespace))
            listers.append((cand, hook, namespace))

        def search(hook: Any, namespace: str) -> list[Any]:
            return hook.core_v1_client.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=budget).items

        found = []
        for cand, hook, namespace in listers:  # sequential, bounded: retries are rare
            try:
                pods = run_bounded(partial(search, hook, namespace), budget, f"pod search on {cand.conn_id}")
            except Exception as exc:
                self.log.warning("Could not search %s for a pod of an earlier try (%s)", cand.conn_id, short_error(exc))
                continue
            for pod in pods:
                phase = pod.status.phase if pod.status else None
                if phase not in ("Succeeded", "Failed") and pod.metadata.deletion_timestamp is None:
                    found.append((cand, pod))
        return found

    def _was_checked(self, pod: Any) -> bool:
        return (pod.metadata.labels or {}).get(self.POD_CHECKED_KEY) == "True"

    def _delete_pod(self, cand: ClusterCandidate, pod: Any) -> None:
        self._place(cand)
        hook = self.hook
        try:
            run_bounded(lambda: hook.core_v1_client.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, _request_timeout=self.carbon_schedule.planning_timeout),
                self.carbon_schedule.planning_timeout, "pod deletion")
        except Exception as exc:
            self.log.warning("Could not delete pod %s on %s (%s)", pod.metadata.name, cand.conn_id, short_error(exc))

    # -- placement --------------------------------------------------------------------------

    def _pulled_decision(self, context: Context) -> Decision | None:
        return pull_decision(context["ti"], self.task_id)

    def _candidates(self) -> list[ClusterCandidate]:
        return self.carbon_schedule.resolve()

    def _recheck(self, record: Decision) -> Decision:
        """Re-check the spatial choice with fresh data just before starting; keep it on any failure.

        Bounded by ``planning_timeout``: a carbon API that hangs delays the pod by that much at most.
        """
        now = utcnow()
        try:
            cands = self._candidates()
            schedule = self.carbon_schedule
            series, errors = schedule.fetch_forecasts(cands, now, now + schedule.expected_duration)
            current = next((c for c in cands if c.key == record.chosen_key), None)
            if current is None:
                return record
            incumbent = Option(schedule.planner_candidate(current), now, 0.0)
            fresh = schedule.decide(cands, series, errors, now=now, arrival=now, latest=now, finish_by=None,
                                    incumbent=incumbent, fail_open=True)
        except (CarbonDataError, ScheduleConfigError, ValueError) as exc:
            self.log.warning("Could not re-check the cluster before starting (%s); keeping %s", exc,
                             record.chosen.conn_id)
            return record
        if fresh.fail_open or fresh.plan is None:
            self.log.warning("No fresh carbon data to re-check the cluster; keeping %s", record.chosen.conn_id)
            return record
        if fresh.chosen_key != record.chosen_key:
            self.log.info("Fresh data just before starting: %s", fresh.reason)
        return record.after_recheck(fresh)

    def _base_placement(self) -> _Placement:
        """Return the operator's own placement, captured before the first candidate is applied."""
        base = self.__dict__.get("_carbon_base_placement")
        if base is None:
            base = _Placement(self.namespace, dict(self.node_selector or {}), self.affinity, self.config_file,
                              self.cluster_context, self.in_cluster)
            self.__dict__["_carbon_base_placement"] = base
        return base

    def _place(self, cand: ClusterCandidate) -> None:
        """Point KPO at ``cand``: the operator's own placement plus the candidate's, nothing else.

        Connection, namespace, node selector, affinity, kubeconfig file, context and in-cluster
        flag; cached clients are dropped. Each call starts from the operator's own values, so a
        refused candidate leaves nothing behind for the next.
        """
        base = self._base_placement()
        self.kubernetes_conn_id = cand.conn_id
        self.namespace = cand.namespace or base.namespace
        self.node_selector = {**base.node_selector, **(cand.node_selector or {})}
        self.affinity = convert_affinity(cand.affinity) if cand.affinity else base.affinity
        self.config_file = cand.config_file or base.config_file
        self.cluster_context = cand.cluster_context or base.cluster_context
        self.in_cluster = cand.in_cluster if cand.in_cluster is not None else base.in_cluster
        for name in ("hook", "client", "pod_manager"):
            self.__dict__.pop(name, None)

    def convert_config_file_to_dict(self) -> None:
        """Load the chosen candidate's kubeconfig for KPO's trigger; ``$KUBECONFIG`` only for a lone cluster.

        KPO falls back to ``$KUBECONFIG`` and hands it to its trigger, where it wins over the
        connection: with several candidates that would run every pod on one cluster.
        """
        if self.config_file or len(self.carbon_schedule.candidates) == 1:
            super().convert_config_file_to_dict()
        else:
            self._config_dict = None

    def _fallback_order(self, record: Decision) -> list[ClusterCandidate]:
        """Return the chosen candidate, then the others by their planned forecast mean (home order on ties)."""
        if record.reattached_pod:
            return [record.chosen]  # the pod runs there: never start a second one elsewhere
        rows = [row for row in record.rows if row.candidate.key != record.chosen_key]
        rows.sort(key=lambda row: math.inf if row.forecast_mean is None else row.forecast_mean)  # stable
        return [record.chosen, *(row.candidate for row in rows)]

    def _start_pod(self, context: Context, record: Decision) -> Any:
        """Run the pod on the chosen cluster; fall back to the next candidate if the API refuses it."""
        ti = context["ti"]
        if record.power_watts is None:
            record = self._with_power(record)
        order = self._fallback_order(record)
        last_error: BaseException | None = None
        for attempt, cand in enumerate(order):
            self._place(cand)
            self.pod = None
            self.pod_request_obj = None
            if attempt:  # the expected figures are the cluster's it runs on, for a run starting now
                record = record.moved_to(cand.key, self._expected_now(cand))
            record = record.starting(utcnow())
            ti.xcom_push(key=XCOM_KEY, value=record.to_xcom())
            self._hold_at_start(context, record, cand)
            try:
                result = super().execute(context)
            except TaskDeferred:  # KPO's own deferrable mode: the outcome is recorded on re-entry
                raise
            except Exception as exc:
                if self.pod is not None:  # the pod was created: this is the pod's failure, not a refusal
                    self._record_outcome(context, record, "failed")
                    raise
                last_error = exc
                record = record.refused(cand.key, short_error(exc))
                nxt = order[attempt + 1].conn_id if attempt + 1 < len(order) else None
                self.log.warning(
                    "Cluster %s refused the pod (%s); %s", cand.conn_id, short_error(exc),
                    f"falling back to {nxt}" if nxt else "no candidate left",
                )
            else:
                self._record_outcome(context, record, "success")
                return result
        record = record.with_phase("failed")
        ti.xcom_push(key=XCOM_KEY, value=record.to_xcom())
        self._record_decision(context, record, emit_metrics=False)
        self._release(context, record)
        assert last_error is not None
        raise last_error
