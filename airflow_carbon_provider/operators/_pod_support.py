"""Small helpers of the carbon-aware pod operator: time anchoring, bounded history, short errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow_carbon_provider.scheduling.fetching import run_bounded

__all__ = ["ContextWithStart", "bounded_history", "iso", "parse_instant", "short_error"]


class ContextWithStart(dict):
    """A task context whose ``ti.start_date`` reads as the pod's start (for KPO's deadline)."""

    def __init__(self, context: Any, started: datetime) -> None:
        super().__init__(context)
        self["ti"] = self["task_instance"] = _StartedAt(context["ti"], started)


class _StartedAt:
    def __init__(self, ti: Any, started: datetime) -> None:
        self._ti, self.start_date = ti, started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)


class _BoundedHistoryHook:
    def __init__(self, conn_id: str, budget: float) -> None:
        self.conn_id, self.budget = conn_id, budget

    def get_history(self, zone: str, start: datetime, end: datetime) -> Any:
        from airflow_carbon_provider.hooks._registry import carbon_hook

        return run_bounded(lambda: carbon_hook(self.conn_id).get_history(zone, start, end), self.budget,
                           f"history of {zone}")


def bounded_history(budget: float) -> Any:
    """Return ``conn_id -> hook`` whose history fetch gives up after ``budget`` seconds."""
    return lambda conn_id: _BoundedHistoryHook(conn_id, budget)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def short_error(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status:
        return f"{type(exc).__name__} {status} {reason or ''}".strip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"

