"""Timelines of carbon-aware tasks, as plain values: what the task tab and the Carbon page draw.

Pure functions, no I/O: the ledger's records go in (a task try's decision as
:meth:`~airflow_carbon_provider.scheduling.Decision.to_xcom` left it, its outcome when there is
one, and the forecasts recorded in the ledger), a :class:`TaskTimeline` or a
:class:`DagRunTimeline` comes out, and :mod:`.views` draws it. ``now`` is a parameter.

What each part is made of, and what is left out rather than guessed:

* the candidates' **forecast at decision time**: per candidate, the newest forecast recorded
  for its zone through its carbon connection (and of the decision's signal kind) issued no
  later than :data:`ISSUE_SLACK` after the decision. None recorded: the curve is absent and a
  note says so;
* their **realised** intensity: the lead-0 values of the recorded forecasts (what the forecast
  skill compares with, :func:`~airflow_carbon_provider.ledger.skill.realised_intervals`). None
  yet: "realised not yet known";
* the **planned window**: the final planned start and the expected duration (without one, the
  run's own duration; without that either, an instant);
* **markers**: the decision, every re-plan that moved the plan (the trigger reports the last
  20; those that kept it are only counted), the end of the wait (with how many re-plans the
  trigger made), the re-check at the start, and every cluster that refused the pod;
* the **run**: from the outcome (start, end, cluster); a task that has started but not finished
  runs up to ``now``; one that has not started waits up to ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_carbon_provider.ledger.skill import realised_intervals
from airflow_carbon_provider.scheduling.decision import Decision

__all__ = ["ISSUE_SLACK", "Curve", "DagRunTimeline", "Marker", "Run", "TaskTimeline", "dag_run_timeline",
           "task_timeline"]

UTC = timezone.utc
ISSUE_SLACK = timedelta(minutes=5)
"""A forecast issued this long after the decision still counts as the one it was made with (fetch vs. clock)."""
REALISED_NOT_KNOWN = "realised not yet known"
NO_FORECAST = "no forecast recorded in the ledger at decision time"
STILL_WAITING = "still waiting: drawn up to now"
STILL_RUNNING = "still running: drawn up to now"
_RUN_WIDE = (REALISED_NOT_KNOWN, NO_FORECAST, STILL_WAITING, STILL_RUNNING)
"""Task notes a DAG run's timeline says once for all its tasks."""
STALE_AFTER = timedelta(hours=6)
"""A task without an outcome this long after its deadline is not drawn up to now (its record stopped)."""

Point = tuple[datetime, datetime, float]


@dataclass(frozen=True)
class Curve:
    """One candidate's intensity over the timeline: ``points`` are ``(start, end, g/kWh)`` steps."""

    key: str
    cluster: str
    zone: str | None
    kind: str
    """``forecast`` (at decision time) or ``realised``."""
    points: tuple[Point, ...]
    source: str | None = None
    issued_at: datetime | None = None


@dataclass(frozen=True)
class Marker:
    """Something that happened to the plan at ``at``: ``decided``, ``replan``, ``wait_end``, ``recheck`` or ``fallback``."""

    at: datetime
    kind: str
    label: str
    short: str = ""
    """A few characters the chart may print beside the marker (``8 re-plans``)."""


@dataclass(frozen=True)
class Run:
    """Where and when the task ran; ``end`` is None while it runs."""

    start: datetime
    end: datetime | None
    cluster: str
    zone: str | None
    state: str | None


@dataclass(frozen=True)
class TaskTimeline:
    """One task try, from its arrival to its deadline (or its end, or now, whichever is later)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int | None
    start: datetime
    end: datetime
    now: datetime
    arrival: datetime
    decided_at: datetime
    latest_start: datetime
    deadline: datetime | None
    planned_start: datetime
    planned_end: datetime
    planned_cluster: str
    planned_zone: str | None
    home_cluster: str
    mode: str
    """``planned`` (waited or moved by plan), ``now`` (the plan was to start at once) or ``fail_open``."""
    status: str
    """``waiting``, ``running``, ``finished``, or ``unknown`` (no outcome long after the deadline)."""
    wait_until: datetime
    """The wait is drawn from ``arrival`` to here: the start, or ``now`` while waiting."""
    drawn_until: datetime
    """An unfinished run or wait is drawn up to here: ``now``, or the deadline when the record stopped."""
    run: Run | None
    curves: tuple[Curve, ...]
    markers: tuple[Marker, ...]
    notes: tuple[str, ...]
    expected_intensity: float | None = None
    baseline_intensity: float | None = None
    realised_intensity: float | None = None

    @property
    def label(self) -> str:
        """Return the task's name as rows show it (``task`` or ``task[2]``)."""
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @property
    def cluster(self) -> str:
        """Return the cluster it ran on, else the one it is planned on."""
        return self.run.cluster if self.run is not None else self.planned_cluster


@dataclass(frozen=True)
class DagRunTimeline:
    """Every carbon-aware task of one DAG run, over the candidates' curves."""

    dag_id: str
    run_id: str
    start: datetime
    end: datetime
    now: datetime
    tasks: tuple[TaskTimeline, ...]
    curves: tuple[Curve, ...]
    notes: tuple[str, ...]


def _instant(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _hm(moment: datetime) -> str:
    return moment.strftime("%d %b %H:%M")


def _clip(points: Iterable[Point], start: datetime, end: datetime) -> tuple[Point, ...]:
    out = []
    for lo, hi, value in points:
        if hi <= start or lo >= end:
            continue
        out.append((max(lo, start), min(hi, end), value))
    return tuple(out)


def _steps(row: Mapping[str, Any]) -> list[Point]:
    begin: datetime = row["start"]
    offsets, values = row["offsets_s"], row["values"]
    return [(begin + timedelta(seconds=float(offsets[k])), begin + timedelta(seconds=float(offsets[k + 1])),
             float(v)) for k, v in enumerate(values) if v is not None]


def _same_series(row: Mapping[str, Any], zone: str | None, source: str | None, kind: str | None) -> bool:
    return (row.get("zone") == zone and (source is None or row.get("source") == source)
            and (kind is None or row.get("signal_kind") == kind))


def _curves(decision: Decision, forecasts: Sequence[Mapping[str, Any]], start: datetime, end: datetime,
            decided_at: datetime, now: datetime, default_source: str | None = None) -> tuple[list[Curve], bool, bool]:
    """Return each candidate's forecast (at ``decided_at``) and realised curves, and whether any of each was found."""
    curves: list[Curve] = []
    any_forecast = any_realised = False
    kind = decision.signal if decision.signal in ("average", "marginal") else None
    for row in decision.rows:
        cand = row.candidate
        source = cand.carbon_conn_id or decision.carbon_conn_id or default_source
        if cand.zone is None:
            continue
        mine = [f for f in forecasts if _same_series(f, cand.zone, source, kind)]
        issued = [f for f in mine if f["issued_at"] <= decided_at + ISSUE_SLACK]
        if issued:
            newest = max(issued, key=lambda f: f["issued_at"])
            points = _clip(_steps(newest), start, end)
            if points:
                any_forecast = True
                curves.append(Curve(cand.key, cand.conn_id, cand.zone, "forecast", points, newest.get("source"),
                                    newest["issued_at"]))
        realised = _clip(realised_intervals(mine), start, min(end, now))  # nothing is realised after now
        if realised:
            any_realised = True
            curves.append(Curve(cand.key, cand.conn_id, cand.zone, "realised", realised,
                                mine[0].get("source") if mine else source))
    return curves, any_forecast, any_realised


def task_timeline(decision: Mapping[str, Any], outcome: Mapping[str, Any] | None,
                  forecasts: Sequence[Mapping[str, Any]], *, now: datetime, dag_id: str = "", run_id: str = "",
                  task_id: str = "", map_index: int = -1, try_number: int | None = None) -> TaskTimeline:
    """Return one task try's timeline from its ledger records.

    :param decision: the decision record (the XCom ``carbon_decision`` form; the ledger's
        columns may be merged in, as :func:`~airflow_carbon_provider.plugins.data.task_record`
        returns them).
    :param outcome: the outcome record, or None while the task has not finished.
    :param forecasts: recorded forecasts (``carbon_forecasts`` rows as dicts), any zones:
        only the decision's candidates' are used.
    :param now: the present (aware).

    Raises :class:`ValueError` when ``decision`` is not a decision.
    """
    record = Decision.from_xcom(decision)
    now = now.astimezone(UTC)
    outcome = outcome or {}
    notes: list[str] = []
    arrival, decided = record.arrival, record.decided_at
    expected = record.expected_duration
    run: Run | None = None
    started = _instant(outcome.get("actual_start")) or record.actual_start
    ended = _instant(outcome.get("actual_end"))
    if started is not None:
        cluster = str(outcome.get("cluster") or record.chosen.conn_id)
        zone = outcome.get("zone") or record.zone
        run = Run(started, ended, cluster, None if zone is None else str(zone),
                  outcome.get("state") or (None if ended else "running"))
    status = "finished" if ended is not None else ("running" if started is not None else "waiting")
    if expected is None and started is not None and ended is not None:
        expected = ended - started
    planned_end = record.planned_start + (expected or timedelta(0))
    horizon_end = record.deadline or (record.latest_start + (expected or timedelta(0)))
    end = max(horizon_end, planned_end, ended or horizon_end)
    drawn_until = now
    if status != "finished" and now > end + STALE_AFTER:
        notes.append(f"no outcome recorded, though the deadline passed at {_hm(horizon_end)} UTC: drawn up to "
                     "the deadline (the task may have been stopped, or its outcome not recorded)")
        status, drawn_until = "unknown", end
    elif status != "finished":
        end = max(end, now)
    start = min(arrival, decided, record.planned_start, started or arrival)
    if end <= start:
        end = start + timedelta(minutes=1)

    if record.fail_open:
        mode = "fail_open"
        notes.append("no usable carbon data when deciding: ran at once at home (fail-open)")
    elif record.waits or record.chosen_key != record.home_key:
        mode = "planned"
    else:
        mode = "now"
        notes.append("the plan was to start at once on the home cluster")
    if status == "waiting":
        notes.append(STILL_WAITING)
    elif status == "running":
        notes.append(STILL_RUNNING)

    source = decision.get("carbon_conn_id")
    curves, any_forecast, any_realised = _curves(record, forecasts, start, end, decided, now,
                                                 None if source is None else str(source))
    if not any_forecast:
        notes.append(NO_FORECAST)
    if not any_realised:
        notes.append(REALISED_NOT_KNOWN)

    markers = [Marker(decided, "decided", f"decided: {record.reason}" if record.reason else "decided")]
    if record.trigger is not None:
        fired = _instant(record.trigger.fired_at)
        replans = record.trigger.replans or 0
        text = f"wait ended ({record.trigger.status}) after {replans} re-plan{'s' if replans != 1 else ''}"
        if record.trigger.error:
            text += f": {record.trigger.error}"
        if fired is not None:
            markers.append(Marker(fired, "wait_end", text, f"{replans} re-plan{'s' if replans != 1 else ''}"))
        else:
            notes.append(text)
    for move in record.trigger.moves if record.trigger is not None else ():
        moved_at, planned = _instant(move.get("at")), _instant(move.get("start"))
        if moved_at is not None:
            to = record.candidate(str(move.get("cluster")))
            where = to.conn_id if to is not None else str(move.get("cluster"))
            markers.append(Marker(moved_at, "replan", f"re-plan moved the start to {where}"
                                  + (f" at {_hm(planned)} UTC" if planned else "")))
    if record.recheck is not None:
        moved = record.recheck.chosen_key != record.chosen_key or record.chosen.conn_id != record.recheck.chosen_cluster
        markers.append(Marker(record.recheck.at, "recheck",
                              f"re-check at start: {'chose' if moved else 'kept'} {record.recheck.chosen_cluster}"))
    for fallback in record.fallbacks:
        markers.append(Marker(started or now, "fallback", f"{fallback.cluster} refused the pod: {fallback.error}"))

    return TaskTimeline(
        dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index, try_number=try_number,
        start=start, end=end, now=now, arrival=arrival, decided_at=decided, latest_start=record.latest_start,
        deadline=record.deadline, planned_start=record.planned_start, planned_end=planned_end,
        planned_cluster=record.chosen.conn_id, planned_zone=record.zone, home_cluster=record.home.conn_id,
        mode=mode, status=status, wait_until=started or drawn_until, drawn_until=drawn_until, run=run,
        curves=tuple(curves),
        markers=tuple(sorted(markers, key=lambda m: m.at)), notes=tuple(notes),
        expected_intensity=record.expected_intensity, baseline_intensity=record.baseline_intensity,
        realised_intensity=_number(outcome.get("realised_intensity")),
    )


def dag_run_timeline(records: Iterable[Mapping[str, Any]], forecasts: Sequence[Mapping[str, Any]], *,
                     now: datetime, dag_id: str, run_id: str) -> DagRunTimeline:
    """Return the timeline of every carbon-aware task of one DAG run.

    :param records: one per task instance (its latest try): ``task_id``, ``map_index``,
        ``try_number``, ``decision`` and ``outcome`` (None while it has not finished).
        Records whose decision cannot be read are left out, with a note.
    :param forecasts: recorded forecasts; each candidate's forecast curve is the one in force at
        the earliest decision of the run that names it.
    """
    tasks: list[TaskTimeline] = []
    notes: list[str] = []
    decisions: list[tuple[Decision, str | None]] = []
    for rec in records:
        try:
            timeline = task_timeline(rec["decision"], rec.get("outcome"), (), now=now, dag_id=dag_id, run_id=run_id,
                                     task_id=str(rec["task_id"]), map_index=int(rec.get("map_index", -1)),
                                     try_number=rec.get("try_number"))
            source = rec["decision"].get("carbon_conn_id")
            decisions.append((Decision.from_xcom(rec["decision"]), None if source is None else str(source)))
        except (ValueError, KeyError, TypeError) as exc:
            notes.append(f"{rec.get('task_id')}: decision not readable ({exc})")
            continue
        tasks.append(timeline)
    if not tasks:
        moment = now.astimezone(UTC)
        return DagRunTimeline(dag_id, run_id, moment, moment + timedelta(minutes=1), moment, (), (),
                              (*notes, "no carbon-aware task recorded for this DAG run"))
    start = min(t.start for t in tasks)
    end = max(t.end for t in tasks)
    curves: dict[tuple[str, str], Curve] = {}
    for record, source in sorted(decisions, key=lambda d: d[0].decided_at):
        for curve in _curves(record, forecasts, start, end, record.decided_at, now, source)[0]:
            curves.setdefault((curve.key, curve.kind), curve)  # the earliest decision's forecast
    said: dict[str, list[str]] = {}  # one line per note, naming every task it applies to
    for task in tasks:
        for note in task.notes:
            if note not in _RUN_WIDE:
                said.setdefault(note, []).append(task.label)
    notes.extend(f"{', '.join(labels)}: {note}" for note, labels in said.items())
    if not any(c.kind == "forecast" for c in curves.values()):
        notes.append(NO_FORECAST)
    if not any(c.kind == "realised" for c in curves.values()):
        notes.append(REALISED_NOT_KNOWN)
    waiting = sum(1 for t in tasks if t.status == "waiting")
    if waiting:
        notes.append(f"{waiting} task{'s' if waiting != 1 else ''} still waiting: drawn up to now")
    order = sorted(tasks, key=lambda t: (t.cluster, t.run.start if t.run else t.planned_start, t.label))
    return DagRunTimeline(dag_id, run_id, start, end, now.astimezone(UTC), tuple(order), tuple(curves.values()),
                          tuple(notes))
