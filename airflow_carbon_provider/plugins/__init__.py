"""The Airflow UI plugin (Airflow 3.1+): a Carbon page in the navigation and a tab on every task instance.

``CarbonPlugin`` mounts the Carbon FastAPI app (:mod:`.app`) under the API server at
:data:`URL_PREFIX` and adds two external views, which Airflow's UI shows in an iframe:

* "Carbon" in the navigation (``carbon/ui/``): savings per DAG, SLO attainment and the grid
  intensity now and forecast per configured cluster;
* "Carbon" on each task instance (``carbon/ui/task?...``): that task's decision and outcome.

Plugins are imported by every Airflow process, workers included, so importing this module
stays cheap: the FastAPI app and Airflow's API-server modules are built on the first request.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

__all__ = ["URL_PREFIX", "CarbonPlugin", "LazyCarbonApp"]

URL_PREFIX = "/carbon"
"""Where the Carbon app is mounted in the API server."""

TASK_VIEW_TEMPLATE = "carbon/ui/task?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
"""The task tab's URL; Airflow's UI fills in the placeholders (it leaves {MAP_INDEX} for unmapped tasks)."""


class LazyCarbonApp:
    """An ASGI app that builds the Carbon FastAPI app on its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_carbon_provider.plugins.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one ASGI call."""
        await self._get()(scope, receive, send)


class CarbonPlugin(AirflowPlugin):
    """Carbon page, task-instance tab and their API, for Airflow 3.1 and newer."""

    name = "carbon"
    fastapi_apps = [
        {"app": LazyCarbonApp(), "url_prefix": URL_PREFIX, "name": "Carbon-aware scheduling"},
    ]
    external_views = [
        {
            "name": "Carbon",
            "href": "carbon/ui/",
            "destination": "nav",
            "url_route": "carbon",
        },
        {
            "name": "Carbon",
            "href": TASK_VIEW_TEMPLATE,
            "destination": "task_instance",
            "url_route": "carbon_task",
        },
    ]
