"""The "Carbon decision" extra link: opens the task's page of the Carbon UI plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

__all__ = ["CarbonDecisionLink", "carbon_task_url"]

TASK_PATH = "/carbon/ui/task"


def _api_base_url() -> str:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - older task SDKs
        from airflow.configuration import conf
    try:
        return str(conf.get("api", "base_url", fallback="") or "")
    except Exception:
        return ""


def carbon_task_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1,
                    base_url: str | None = None) -> str:
    """Return the URL of one task instance's carbon page.

    :param base_url: the API server's public URL (default ``[api] base_url``); without one the
        URL is absolute-path only, which a browser resolves against the Airflow UI it is on.
    """
    base = (_api_base_url() if base_url is None else base_url).rstrip("/")
    query = urlencode({"dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                       "map_index": -1 if map_index is None else int(map_index)})
    return f"{base}{TASK_PATH}?{query}"


class CarbonDecisionLink(BaseOperatorLink):
    """Link from a task instance to its carbon decision and outcome (the Carbon UI plugin)."""

    name = "Carbon decision"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """Return the task instance's carbon page."""
        return carbon_task_url(ti_key.dag_id, ti_key.run_id, ti_key.task_id, getattr(ti_key, "map_index", -1))
