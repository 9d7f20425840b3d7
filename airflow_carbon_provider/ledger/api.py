"""The ledger's public API for the operator: record decisions and outcomes, never fail the task.

Call :func:`record_decision` when a decision is made (and again, with ``emit_metrics=False``,
when it changes), and :func:`record_outcome` when the task has finished, successfully or not.
Both return normally whatever the database does: on any failure the record is logged as one
JSON line and appended to the spool, which the next successful write, ``airflow-carbon
report`` or :func:`flush_spool` replays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_carbon_provider.ledger.config import default_spool_path, redact_url_secrets
from airflow_carbon_provider.ledger.errors import RecordRejectedError
from airflow_carbon_provider.ledger.realised import realised_outcome
from airflow_carbon_provider.ledger.secrets import redact_text, sanitize
from airflow_carbon_provider.ledger.spool import Spool, SpoolResult
from airflow_carbon_provider.ledger.store import Ledger, RunKey
from airflow_carbon_provider.scheduling.decision import Decision

__all__ = ["flush_spool", "record_decision", "record_outcome", "run_key_from_context"]

log = logging.getLogger(__name__)
UTC = timezone.utc

LedgerLike = Ledger | str | None


def run_key_from_context(context: Mapping[str, Any]) -> RunKey:
    """Return the ledger key of the task try running in an Airflow ``context``."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return RunKey(
        dag_id=str(ti.dag_id),
        run_id=str(ti.run_id),
        task_id=str(ti.task_id),
        map_index=-1 if map_index is None else int(map_index),
        try_number=int(getattr(ti, "try_number", 1) or 1),
    )


def _key(key: RunKey | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(key, RunKey):
        return key.as_dict()
    return RunKey(**{name: key[name] for name in ("dag_id", "run_id", "task_id") if name in key},
                  map_index=int(key.get("map_index", -1) if key.get("map_index") is not None else -1),
                  try_number=int(key.get("try_number", 1) or 1)).as_dict()


def _ledger(ledger: LedgerLike) -> Ledger:
    return ledger if isinstance(ledger, Ledger) else Ledger(ledger)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_text(f"{type(exc).__name__}: {text[:300]}")


def _store(ledger: LedgerLike, kind: str, key: dict[str, Any], data: dict[str, Any]) -> bool:
    """Write one record; on any failure log it and spool it. Return whether it reached the database."""
    recorded_at = datetime.now(UTC)
    record = {"kind": kind, "key": key, "recorded_at": recorded_at.isoformat(), "data": data}
    where, url = "the configured ledger", ""
    spool: Spool | None = None
    try:
        store = _ledger(ledger)
        where, url, spool = store.masked_url, store.url, store.spool
        if store.spool.pending():
            store.spool.replay(store.write_spooled)
        store.write(kind, key, data, recorded_at)
        return True
    except RecordRejectedError as exc:  # no retry can store it: set it aside, never block the spool
        _quarantine(spool, where, record, str(exc))
        return False
    except Exception as exc:
        spool = spool or Spool(default_spool_path())
        line = json.dumps(record, sort_keys=True, default=str)
        log.warning("Carbon ledger at %s unavailable (%s); record spooled to %s: %s", where,
                    redact_url_secrets(_short(exc), url) if url else _short(exc), spool.path, line)
        try:
            spool.append(record)
        except Exception as exc2:  # the disk too: the log line above is all that is left
            log.error("Carbon ledger spool %s not writable (%s); the record is only in this log", spool.path,
                      _short(exc2))
        return False


def _quarantine(spool: Spool | None, where: str, record: dict[str, Any], why: str) -> None:
    """Set aside a record no retry can store (``.rejected`` beside the spool), never blocking the spool."""
    line = json.dumps(record, sort_keys=True, default=str)
    spool = spool or Spool(default_spool_path())
    log.warning("Carbon ledger at %s rejected a %s record (%s); moved it to %s: %s", where, record["kind"], why,
                spool.rejected_path, line)
    try:
        spool.reject(line, why)
    except Exception as exc:
        log.error("Carbon ledger: %s not writable (%s); the record is only in this log", spool.rejected_path,
                  _short(exc))


def _unreadable(ledger: LedgerLike, kind: str, decision: Any, key: Any, exc: Exception) -> None:
    """Quarantine a decision that is not one (so nothing is lost), or log it if even that fails."""
    try:
        data, run = sanitize(_json_safe(dict(decision))), _key(key)
        spool = ledger.spool if isinstance(ledger, Ledger) else None
        _quarantine(spool, "the ledger", {"kind": kind, "key": run, "recorded_at": datetime.now(UTC).isoformat(),
                                          "data": data}, _short(exc))
    except Exception as exc2:
        log.warning("Carbon ledger: %s not recordable (%s; %s)", kind, _short(exc), _short(exc2))


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _decision_data(decision: Decision | Mapping[str, Any]) -> dict[str, Any]:
    """Return the stored form of a decision: :meth:`Decision.to_xcom`, secrets masked.

    The decision table's columns are keys of that dict, so they read the record's fields.
    """
    record = decision if isinstance(decision, Decision) else Decision.from_xcom(decision)
    return sanitize(_json_safe(record.to_xcom()))


def record_decision(
    decision: Decision | Mapping[str, Any],
    key: RunKey | Mapping[str, Any],
    *,
    ledger: LedgerLike = None,
    emit_metrics: bool = True,
) -> bool:
    """Record a task try's carbon decision (the XCom ``carbon_decision``); return whether it was stored.

    Idempotent: recording the same key again replaces the row (the newest record wins).
    Secret-looking keys are dropped and secret-looking values masked before anything is
    stored or logged. Never raises.

    :param decision: the :class:`~airflow_carbon_provider.scheduling.Decision` (or its XCom dict).
    :param key: the task try, e.g. ``run_key_from_context(context)``.
    :param ledger: a :class:`Ledger`, a SQLAlchemy URL, or None for the configured ledger.
    :param emit_metrics: also emit the decision metrics (intensity per zone, API errors,
        fail-open); pass False when re-recording a decision already recorded.
    """
    try:
        data = _decision_data(decision)
        run = _key(key)
    except Exception as exc:
        _unreadable(ledger, "decision", decision, key, exc)
        return False
    if emit_metrics:
        from airflow_carbon_provider import metrics

        metrics.emit_decision(data, dag_id=run["dag_id"], task_id=run["task_id"])
    return _store(ledger, "decision", run, data)


def record_outcome(
    decision: Decision | Mapping[str, Any],
    key: RunKey | Mapping[str, Any],
    *,
    actual_end: datetime | None = None,
    actual_start: datetime | None = None,
    state: str = "success",
    carbon_conn_id: str | None = None,
    ledger: LedgerLike = None,
    hook_for: Callable[[str], Any] | None = None,
    emit_metrics: bool = True,
) -> dict[str, Any] | None:
    """Record how a task try ran, with realised emissions, baseline and saving; return the outcome.

    Call once the task has finished (successfully or not), with the final decision dict (the
    one holding ``actual_start`` and ``cluster``). The decision is recorded again too, so the
    outcome never lacks its decision. Never raises; returns None only if the outcome could
    not even be computed (the reason is logged).

    :param actual_end: when the task finished (default: now).
    :param actual_start: when it started (default: the decision's ``actual_start``).
    :param state: how it ended (``success``, ``failed``...).
    :param carbon_conn_id: the carbon connection to fetch realised history from (default:
        the decision's ``carbon_conn_id``, else ``carbontrace_default``).
    :param hook_for: ``conn_id -> hook``; default the provider's hook registry.
    """
    try:
        data = _decision_data(decision)
        run = _key(key)
        outcome = realised_outcome(
            data, actual_end or datetime.now(UTC), actual_start=actual_start, carbon_conn_id=carbon_conn_id,
            state=state, hook_for=hook_for,
        )
        outcome = sanitize(outcome)
    except Exception as exc:
        log.warning("Carbon ledger: outcome not computable (%s); nothing recorded", _short(exc))
        return None
    if emit_metrics:
        from airflow_carbon_provider import metrics

        metrics.emit_outcome(outcome, dag_id=run["dag_id"], task_id=run["task_id"])
    _store(ledger, "decision", run, data)
    _store(ledger, "outcome", run, outcome)
    return outcome


def flush_spool(ledger: LedgerLike = None, *, spool_path: Path | str | None = None) -> SpoolResult:
    """Replay the spool into the ledger; return what was replayed, left and set aside (``.rejected``).

    Raises the database error if the ledger is still down (the unreplayed records stay).
    """
    store = ledger if isinstance(ledger, Ledger) else Ledger(ledger, spool_path=spool_path)
    return store.spool.replay(store.write_spooled)
