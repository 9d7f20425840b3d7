"""The trigger a carbon-aware task waits in: no worker slot held, re-planning on the way.

Everything it needs is in its kwargs as connection ids, zones, absolute UTC datetimes and
policy parameters, never a token; carbon data is fetched at run time through the async hooks
and the shared in-process cache, so N triggers over the same zones cost one request per zone
and refresh. After a triggerer restart the trigger is rebuilt from the same kwargs and
re-derives where it stands from the wall clock alone: past the planned start or the latest
start it fires at once.

It always fires by the latest start. At the planned start it takes a last look: one more
re-plan on the newest forecast (bounded by the planning budget and the latest start), which
keeps waiting only if a later start beats the hysteresis by more than the forecast's error at
that lead. Re-plans happen every ``replan_interval_seconds`` at a
fixed offset per trigger (spread over up to a minute, so thousands of triggers do not re-plan
in the same instant; the shared cache still serves them one fetch per zone), are bounded in time so that a slow API cannot delay the start, and
change the plan only when the gain beats the hysteresis. A carbon API that is down, stale or
empty leaves the current plan in force.
"""

from __future__ import annotations

import asyncio
import json
import math
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_carbon_provider.core.conditioning import worth_waiting
from airflow_carbon_provider.core.forecast import realistic_sigma
from airflow_carbon_provider.core.planner import Option
from airflow_carbon_provider.scheduling import ClusterCandidate, PlanningOptions, decide
from airflow_carbon_provider.scheduling.decision import START_TOLERANCE
from airflow_carbon_provider.scheduling.fetching import DEFAULT_PLANNING_TIMEOUT, afetch_sources
from airflow_carbon_provider.scheduling.fleet import FleetView, aread_fleet, hold, holder_from

if TYPE_CHECKING:
    from airflow_carbon_provider.scheduling import CarbonSchedule, Decision

UTC = timezone.utc
# Longest single sleep: the wall clock is re-read at least this often, so a clock jump or a
# suspended host cannot make the trigger oversleep its start by more than this.
MAX_SLEEP = 60.0
# A trigger that fires more than this many seconds after its planned start says so.
LATE_AFTER = 2 * MAX_SLEEP
MAX_MOVES = 20
"""The event reports at most this many re-plans that moved the plan (the latest), so the decision stays small."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | str, name: str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


_Replan = tuple[dict[tuple[str, str], str], "Decision | None"]
SHARE_PLANS = True
"""Share one re-plan among this process's triggers with the same inputs at the same refresh instant."""
SHARE_KEEP = 120.0
"""The longest a shared re-plan stays joinable after its refresh instant (late wakers still join it)."""
_shared: dict[tuple[Any, ...], tuple[float, asyncio.Future[Any]]] = {}
_next_prune = 0.0


async def shared_plan(key: tuple[Any, ...], plan: Callable[[], Awaitable[_Replan]], *,
                      keep: float = SHARE_KEEP) -> _Replan:
    """Return the re-plan of ``key`` (refresh instant first), running ``plan`` once per event loop and key.

    The first caller starts ``plan`` as a task of its own, shielded from every caller: a trigger
    whose re-plan budget runs out, or that is cancelled, stops waiting without cancelling the
    plan the others wait on. Its result (or its error) is every caller's. An entry stays
    joinable ``keep`` seconds after its refresh instant (at most :data:`SHARE_KEEP`; callers
    pass their re-plan interval, after which they are at a later instant anyway), so the
    registry holds about one refresh period of plans, swept once per period.
    """
    global _next_prune
    keep = min(keep, SHARE_KEEP)
    loop = asyncio.get_running_loop()
    full = (loop, *key)
    entry = _shared.get(full)
    if entry is None:
        tick = float(key[0])
        if not _next_prune - keep <= tick < _next_prune:  # amortised: one sweep per period of ticks
            for old in [k for k, (t, fut) in _shared.items() if abs(t - tick) > keep or fut.get_loop() is not loop]:
                del _shared[old]
            _next_prune = tick + keep
        entry = _shared[full] = (tick, asyncio.ensure_future(plan()))
    return await asyncio.shield(entry[1])


class CarbonWindowTrigger(BaseTrigger):
    """Wait until the planned low-carbon start (re-planning meanwhile), then fire.

    :param candidates: the resolved candidates as dicts (``conn_id``, ``zone``,
        ``carbon_conn_id`` and optional placement keys); the first is home.
    :param planned_cluster: key of the candidate chosen so far.
    :param planned_start: the planned start (UTC).
    :param planned_intensity: the forecast mean intensity of the planned run.
    :param latest_start: the trigger fires by this instant whatever happens.
    :param duration_seconds: the task's expected run time.
    :param policy: planner policy.
    :param min_saving_pct: hysteresis, relative.
    :param min_saving_abs: hysteresis, absolute (g/kWh).
    :param carbon_conn_id: the carbon connection for candidates that name none.
    :param replan_interval_seconds: the forecast refresh period.
    :param beyond_horizon: planner horizon mode.
    :param allow_mixed_signals: planner signal-mix switch.
    :param replans: how many re-plans earlier incarnations made (carried for reporting).
    :param planning_timeout_seconds: how long one re-plan may wait for carbon data (all
        sources at once); absent from triggers serialized before 0.2.0, which get the default.
    :param holder: the task instance whose reservation re-plans move (``dag_id``, ``run_id``,
        ``task_id``, ``map_index``, ``try_number``), or None when the task does not coordinate
        (:mod:`~airflow_carbon_provider.scheduling.fleet`).
    :param demand: what the task asks for while it runs (resource name to amount).
    """

    # Injectable for tests; never serialized.
    clock: Callable[[], datetime] = staticmethod(_utcnow)
    sleep: Callable[[float], Any] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        *,
        candidates: list[dict[str, Any]],
        planned_cluster: str,
        planned_start: datetime | str,
        planned_intensity: float,
        latest_start: datetime | str,
        duration_seconds: float,
        policy: str = "carbon-aware",
        min_saving_pct: float = 5.0,
        min_saving_abs: float = 0.0,
        carbon_conn_id: str = "carbontrace_default",
        replan_interval_seconds: float = 900.0,
        beyond_horizon: str = "exclude",
        allow_mixed_signals: bool = False,
        replans: int = 0,
        planning_timeout_seconds: float = DEFAULT_PLANNING_TIMEOUT,
        holder: dict[str, Any] | None = None,
        demand: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("candidates is empty; the trigger needs at least the home candidate")
        self.candidates = [dict(c) for c in candidates]
        for cand in self.candidates:
            if not cand.get("conn_id") or not cand.get("zone"):
                raise ValueError(f"candidate {cand!r} needs a conn_id and a zone (resolve candidates first)")
        self.planned_cluster = planned_cluster
        self.planned_start = _aware(planned_start, "planned_start")
        self.planned_intensity = float(planned_intensity)
        self.latest_start = _aware(latest_start, "latest_start")
        if duration_seconds <= 0:
            raise ValueError(f"duration_seconds must be positive, got {duration_seconds}")
        self.duration_seconds = float(duration_seconds)
        self.policy = policy
        self.min_saving_pct = float(min_saving_pct)
        self.min_saving_abs = float(min_saving_abs)
        self.carbon_conn_id = carbon_conn_id
        if replan_interval_seconds <= 0:
            raise ValueError(f"replan_interval_seconds must be positive, got {replan_interval_seconds}")
        self.replan_interval_seconds = float(replan_interval_seconds)
        self.beyond_horizon = beyond_horizon
        self.allow_mixed_signals = bool(allow_mixed_signals)
        self.replans = int(replans)
        self.planning_timeout_seconds = float(planning_timeout_seconds)
        self.holder = dict(holder) if holder else None
        self.demand = {str(k): float(v) for k, v in demand.items()} if demand else None
        self.api_errors = 0
        self.moves: list[dict[str, str]] = []  # re-plans that moved the plan (the last MAX_MOVES), for the event
        self._static_key: tuple[Any, ...] | None = None
        self._cands: list[ClusterCandidate] | None = None

    @classmethod
    def from_decision(cls, schedule: CarbonSchedule, decision: Decision) -> CarbonWindowTrigger:
        """Return the trigger that waits for ``decision``'s window and re-plans on the way."""
        return cls(
            candidates=[c.to_dict() for c in decision.candidates],
            planned_cluster=decision.chosen.key,
            planned_start=decision.planned_start,
            planned_intensity=decision.expected_intensity or 0.0,
            latest_start=decision.latest_start,
            duration_seconds=schedule.expected_duration.total_seconds(),
            policy=schedule.policy,
            min_saving_pct=schedule.min_saving_pct,
            min_saving_abs=schedule.min_saving_abs,
            carbon_conn_id=schedule.carbon_conn_id,
            replan_interval_seconds=schedule.replan_interval.total_seconds(),
            beyond_horizon=schedule.beyond_horizon,
            allow_mixed_signals=schedule.allow_mixed_signals,
            planning_timeout_seconds=schedule.planning_timeout,
            holder=(decision.fleet or {}).get("holder") if decision.fleet and schedule.coordinate else None,
            demand=(decision.fleet or {}).get("demand") if decision.fleet else None,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the classpath (derived, not hard-coded) and JSON-friendly kwargs."""
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "candidates": self.candidates,
                "planned_cluster": self.planned_cluster,
                "planned_start": self.planned_start,
                "planned_intensity": self.planned_intensity,
                "latest_start": self.latest_start,
                "duration_seconds": self.duration_seconds,
                "policy": self.policy,
                "min_saving_pct": self.min_saving_pct,
                "min_saving_abs": self.min_saving_abs,
                "carbon_conn_id": self.carbon_conn_id,
                "replan_interval_seconds": self.replan_interval_seconds,
                "beyond_horizon": self.beyond_horizon,
                "allow_mixed_signals": self.allow_mixed_signals,
                "replans": self.replans,
                "planning_timeout_seconds": self.planning_timeout_seconds,
                "holder": self.holder,
                "demand": self.demand,
            },
        )

    # -- helpers ----------------------------------------------------------------------------

    def _options(self) -> PlanningOptions:
        return PlanningOptions(
            policy=self.policy, min_saving_pct=self.min_saving_pct, min_saving_abs=self.min_saving_abs,
            carbon_conn_id=self.carbon_conn_id, beyond_horizon=self.beyond_horizon,
            allow_mixed_signals=self.allow_mixed_signals, fail_open=True,
            planning_timeout=self.planning_timeout_seconds,
        )

    def _phase(self) -> float:
        """Return this trigger's fixed offset into each refresh period, in seconds.

        Refreshes sit at wall-clock multiples of the interval plus this offset: spread over up to
        a minute (a quarter of the period at most) so that thousands of triggers in one triggerer
        do not all re-plan in the same instant, while the cache still serves them one fetch per
        zone. The offset derives from the kwargs, so it survives a restart unchanged.
        """
        spread = min(60.0, self.replan_interval_seconds / 4)
        key = f"{self.latest_start.isoformat()}|{self.planned_cluster}|{len(self.candidates)}"
        return (zlib.crc32(key.encode()) % 1000) / 1000 * spread

    def _next_refresh(self, now: datetime) -> datetime:
        """Return this trigger's next refresh instant after ``now``."""
        period = self.replan_interval_seconds
        phase = self._phase()
        t = (math.floor((now.timestamp() - phase) / period) + 1) * period + phase
        return datetime.fromtimestamp(t, UTC)

    async def _sleep_until(self, moment: datetime) -> None:
        while True:
            remaining = (moment - self.clock()).total_seconds()
            if remaining <= 0:
                return
            await self.sleep(min(remaining, MAX_SLEEP))

    def _last_refresh(self, now: datetime) -> float:
        """Return this trigger's refresh instant at or before ``now`` (epoch seconds)."""
        period, phase = self.replan_interval_seconds, self._phase()
        return math.floor((now.timestamp() - phase) / period) * period + phase

    def _share_key(self) -> tuple[Any, ...]:
        """Return what decides a re-plan besides the instant: candidates, duration, latest start, options, plan."""
        if self._static_key is None:
            self._static_key = (
                json.dumps(self.candidates, sort_keys=True, default=str), self.duration_seconds, self.latest_start,
                self.policy, self.min_saving_pct, self.min_saving_abs, self.carbon_conn_id, self.beyond_horizon,
                self.allow_mixed_signals, self.planning_timeout_seconds, self.clock,
            )
        return (*self._static_key, self.planned_cluster, self.planned_start, self.planned_intensity)

    def _decide(self, options: PlanningOptions, now: datetime, cands: list[ClusterCandidate],
                current: ClusterCandidate, series: Any, errors: Any, view: FleetView | None,
                notes: Mapping[tuple[str, str], str]) -> Decision:
        incumbent = Option(options.planner_candidate(current, view.capacities.get(current.key) if view else None),
                           self.planned_start, self.planned_intensity)
        return decide(
            options, timedelta(seconds=self.duration_seconds), cands, series, errors, now=now, arrival=now,
            latest=self.latest_start, finish_by=None, incumbent=incumbent, fail_open=True, fleet=view,
            demand=self.demand, notes=notes,
        )

    async def _fleet(self, now: datetime, cands: list[ClusterCandidate]) -> FleetView | None:
        """Read the fleet for a re-plan (None when this task does not coordinate)."""
        if self.holder is None:
            return None
        return await aread_fleet(cands, holder=holder_from(self.holder), now=now, latest=self.latest_start,
                                 duration=timedelta(seconds=self.duration_seconds),
                                 budget=self.planning_timeout_seconds)

    async def _plan(self, now: datetime, cands: list[ClusterCandidate], current: ClusterCandidate,
                    fetched: dict[tuple[str, str], Any] | None = None, view: FleetView | None = None) -> _Replan:
        """Fetch the carbon data and plan again from ``now`` (the plan in force is the incumbent).

        :param fetched: receives the (conditioned) forecasts planned on, by source.
        :param view: the fleet's view when this task coordinates (capacities, others' bookings).
        """
        options = self._options()
        until = self.latest_start + timedelta(seconds=self.duration_seconds)
        notes: dict[tuple[str, str], str] = {}  # conditioned on measured history, or why not
        series, errors = await afetch_sources(
            (options.source_of(c) for c in cands), now, until, budget=self.planning_timeout_seconds, clock=self.clock,
            notes=notes,
        )
        if fetched is not None:
            fetched.update(series)
        if options.source_of(current) in errors:
            return errors, None  # cannot re-score the plan in force: keep it
        return errors, self._decide(options, now, cands, current, series, errors, view, notes)

    async def _replan(self, now: datetime) -> str | None:
        """Re-plan once; return a log line if the plan changed, None otherwise. Never raises.

        Triggers of this process that would plan from the same inputs at the same refresh
        instant (same candidates, duration, latest start, options and plan in force) share one
        fetch-and-plan (:func:`shared_plan`); each applies the result to itself as before.
        """
        if self._cands is None:  # the candidates never change: parse them once, not at every refresh
            self._cands = [ClusterCandidate.from_dict(c) for c in self.candidates]
        cands = self._cands
        current = next((c for c in cands if c.key == self.planned_cluster), None)
        if current is None:
            self.log.warning("Planned cluster %s is not among the candidates; keeping the plan", self.planned_cluster)
            return None
        view = await self._fleet(now, cands)
        if SHARE_PLANS and (view is None or not view.limited):  # with room limited, each plan is its own
            key = (self._last_refresh(now), *self._share_key())
            errors, decision = await shared_plan(key, lambda: self._plan(now, cands, current),
                                                 keep=self.replan_interval_seconds)
        else:
            errors, decision = await (self._plan(now, cands, current) if view is None
                                      else self._plan(now, cands, current, view=view))
        self.replans += 1
        self.api_errors += len(errors)
        if errors:
            self.log.warning("Re-plan at %s without data for %s", now.isoformat(), "; ".join(errors.values()))
        if decision is None or decision.fail_open or decision.plan is None:
            return None
        # The planner's own start (decide() rounds a start within seconds to "now", which here
        # would fire early).
        chosen, start = decision.chosen.key, decision.plan.chosen.start
        changed = (chosen, start) != (self.planned_cluster, self.planned_start)
        if changed and view is not None and view.coordinated:  # move the reservation first, or keep the plan
            held = await asyncio.to_thread(
                hold, holder_from(self.holder or {}), chosen, start, timedelta(seconds=self.duration_seconds),
                self.demand, view.capacities.get(chosen), now=now, budget=self.planning_timeout_seconds)
            if held.status == "refused":
                self.log.info("Re-plan would move to %s at %s, but %s; keeping the plan", chosen,
                              start.isoformat(), held.message)
                return None
        previous = (self.planned_cluster, self.planned_start)
        self.planned_cluster, self.planned_start = chosen, start
        self.planned_intensity = float(decision.expected_intensity or 0.0)
        if changed:
            self._moved(now)
            return (f"Re-plan moved the start from {previous[0]} at {previous[1].isoformat()} to {chosen} at "
                    f"{start.isoformat()}: {decision.reason}")
        return None

    def _moved(self, now: datetime) -> None:
        """Note that the re-plan at ``now`` moved the plan to the planned cluster and start now in force."""
        self.moves = [*self.moves, {"at": now.isoformat(), "cluster": self.planned_cluster,
                                    "start": self.planned_start.isoformat()}][-MAX_MOVES:]

    def _status(self, now: datetime) -> str:
        """Say what happened when firing at ``now``.

        ``start``: the planned start came (a plan at the latest start included);
        ``late_start``: it came, but the trigger ran more than :data:`LATE_AFTER` late (a
        triggerer that was down); ``deadline_reached``: the latest start came before the
        planned start (no plan points past it; kept for triggers from older releases).
        """
        if self.planned_start > self.latest_start:
            return "deadline_reached"
        if (now - self.planned_start).total_seconds() > LATE_AFTER:
            return "late_start"
        return "start"

    def _event(self, status: str, now: datetime) -> TriggerEvent:
        return TriggerEvent({
            "status": status,
            "cluster": self.planned_cluster,
            "planned_start": self.planned_start.isoformat(),
            "expected_intensity": self.planned_intensity,
            "fired_at": now.isoformat(),
            "replans": self.replans,
            "api_errors": self.api_errors,
            **({"moves": self.moves} if self.moves else {}),
        })

    async def _last_look(self, now: datetime) -> None:
        """Re-plan once at the planned start on the newest forecast, within the planning budget.

        A forecast issued since the last refresh may show that waiting a little longer pays
        (the backtest's ``carbon-aware`` does the same); the plan moves only if the gain beats
        the hysteresis and one forecast error at the new start's lead
        (:func:`~airflow_carbon_provider.core.conditioning.worth_waiting`, with the calibrated
        default error), and never past the latest start. Not shared with other triggers (their
        refresh-instant plans are older), and never fatal: on any failure the trigger fires.
        """
        budget = min(self.planning_timeout_seconds, (self.latest_start - now).total_seconds())
        try:
            if self._cands is None:
                self._cands = [ClusterCandidate.from_dict(c) for c in self.candidates]
            current = next((c for c in self._cands if c.key == self.planned_cluster), None)
            if current is None:
                return
            fetched: dict[tuple[str, str], Any] = {}
            view = await asyncio.wait_for(self._fleet(now, self._cands), timeout=max(budget, 0.001))
            planning = (self._plan(now, self._cands, current, fetched) if view is None
                        else self._plan(now, self._cands, current, fetched, view=view))
            errors, decision = await asyncio.wait_for(planning, timeout=max(budget, 0.001))
        except Exception:  # a timeout included: start as planned
            self.api_errors += 1
            self.log.warning("Last look before the start failed; starting as planned", exc_info=True)
            return
        self.replans += 1
        self.api_errors += len(errors)
        if decision is None or decision.fail_open or decision.plan is None:
            return
        start = decision.plan.chosen.start
        if start - now <= START_TOLERANCE:
            return
        try:  # starting now is nearly certain, the later start a forecast: wait only for a sure gain
            now_mean = fetched[self._options().source_of(current)].mean(
                now, now + timedelta(seconds=self.duration_seconds))
        except Exception:  # the plan in force cannot be scored now: start as planned
            return
        later_mean = float(decision.expected_intensity or 0.0)
        if not worth_waiting(now_mean, later_mean, (start - now).total_seconds(), realistic_sigma):
            self.log.info("Last look: waiting until %s would save %.0f of %.0f gCO2eq/kWh, within the forecast's "
                          "error at that lead; starting now", start.isoformat(), now_mean - later_mean, now_mean)
            return
        if view is not None and view.coordinated:  # waiting longer pays: move the reservation, or start as planned
            held = await asyncio.to_thread(
                hold, holder_from(self.holder or {}), decision.chosen.key, start,
                timedelta(seconds=self.duration_seconds), self.demand, view.capacities.get(decision.chosen.key),
                now=now, budget=self.planning_timeout_seconds)
            if held.status == "refused":
                self.log.info("Last look: %s was taken (%s); starting as planned", start.isoformat(), held.message)
                return
        # waiting longer pays: the new plan is in force
        previous = (self.planned_cluster, self.planned_start)
        self.planned_cluster, self.planned_start = decision.chosen.key, start
        self.planned_intensity = float(decision.expected_intensity or 0.0)
        self._moved(now)
        self.log.info("Last look moved the start from %s at %s to %s at %s: %s", previous[0],
                      previous[1].isoformat(), self.planned_cluster, start.isoformat(), decision.reason)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep to the planned start, re-planning at each refresh; fire by the latest start."""
        self.log.info(
            "Waiting for %s at %s (latest start %s), re-planning every %ss",
            self.planned_cluster, self.planned_start.isoformat(), self.latest_start.isoformat(),
            self.replan_interval_seconds,
        )
        looked: datetime | None = None  # the planned start the last look was taken at
        while True:
            now = self.clock()
            if now >= min(self.planned_start, self.latest_start):
                if (now < self.latest_start and looked != self.planned_start
                        and (now - self.planned_start).total_seconds() <= LATE_AFTER):
                    looked = self.planned_start
                    await self._last_look(now)
                    continue
                yield self._event(self._status(now), now)
                return
            wake = min(self.planned_start, self.latest_start, self._next_refresh(now))
            await self._sleep_until(wake)
            now = self.clock()
            if now >= min(self.planned_start, self.latest_start):
                continue
            budget = (min(self.planned_start, self.latest_start) - now).total_seconds()
            try:
                change = await asyncio.wait_for(self._replan(now), timeout=max(budget, 0.001))
            except asyncio.TimeoutError:
                self.api_errors += 1
                self.log.warning("Re-plan did not finish before the planned start; keeping the plan")
                continue
            except Exception:  # a re-plan must never stop the trigger from firing
                self.api_errors += 1
                self.log.exception("Re-plan failed; keeping the plan")
                continue
            if change:
                self.log.info(change)
