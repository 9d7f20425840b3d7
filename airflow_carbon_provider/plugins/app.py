"""The Carbon FastAPI app, mounted by the plugin under the API server at ``/carbon``.

JSON under ``/carbon/api/``, HTML under ``/carbon/ui/``, and nothing else (FastAPI's generated
``/docs``, ``/redoc`` and ``/openapi.json`` are off). Every route needs an authenticated
Airflow user, through the same dependency the core REST API uses (``get_user``: a JWT in an
``Authorization: Bearer`` header, or the UI's ``_token`` cookie); anonymous requests get 401.
Ledger rows are shown only for DAGs whose task instances the user may read, and clusters only
for connections the user may read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_carbon_provider.plugins import charts, data, views

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def dag_filter(user: Any) -> Callable[[str], bool]:
    """Return ``dag_id -> may this user read that DAG's task instances`` (answers cached per request)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = _auth_manager()
    answers: dict[str, bool] = {}

    def allowed(dag_id: str) -> bool:
        if dag_id not in answers:
            answers[dag_id] = bool(manager.is_authorized_dag(
                method="GET", access_entity=DagAccessEntity.TASK_INSTANCE, details=DagDetails(id=dag_id), user=user))
        return answers[dag_id]

    return allowed


def _connection_filter(user: Any) -> Callable[[str], bool]:
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    manager = _auth_manager()
    return lambda conn_id: bool(manager.is_authorized_connection(
        method="GET", details=ConnectionDetails(conn_id=conn_id), user=user))


def _db_connections(session: Session) -> list[tuple[str, str | None, dict[str, Any]]]:
    from airflow.models.connection import Connection
    from sqlalchemy import select

    found: list[tuple[str, str | None, dict[str, Any]]] = []
    for conn in session.scalars(select(Connection).where(Connection.conn_type == "kubernetes")):
        try:
            extras = conn.extra_dejson or {}
        except Exception as exc:  # an undecryptable extra: skip that connection, keep the page
            log.warning("Carbon UI: extras of connection %r unreadable: %s", conn.conn_id, type(exc).__name__)
            continue
        found.append((conn.conn_id, conn.conn_type, extras))
    return found


def _read_connection(conn_id: str) -> Any:
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def _readable_clusters(user: Any, session: Session) -> list[data.ClusterConnection]:
    """Return the configured clusters the user may read, in the Carbon page's order (which fixes their colours)."""
    clusters = data.configured_clusters(_db_connections(session), read_connection=_read_connection)
    may_read = _connection_filter(user)
    return [c for c in clusters if may_read(c.conn_id)]


def _clusters(user: Any, session: Session) -> dict[str, Any]:
    clusters = _readable_clusters(user, session)
    allowed = {c.conn_id for c in clusters}
    result = data.cluster_intensities(clusters, allowed=allowed)
    reserved = data.reserved_load(sorted(allowed))
    for entry in result["clusters"]:
        entry["reserved"] = reserved["clusters"].get(entry["conn_id"])
    result["reserved_horizon_h"] = reserved.get("horizon_h")
    if reserved.get("error"):
        result["reserved_error"] = reserved["error"]
    return result


def _dag_run_section(allowed: Callable[[str], bool], wanted: str | None) -> dict[str, Any]:
    """Return what the Carbon page's DAG-run section shows: the runs to pick from, the picked run's timeline."""
    from airflow_carbon_provider.ledger.errors import LedgerError

    section: dict[str, Any] = {"choices": [], "selected": None, "timeline": None, "error": None}
    try:
        section["choices"] = choices = data.dag_run_choices(allowed)
        picked = None
        if wanted and "/" in wanted:
            dag_id, run_id = wanted.split("/", 1)
            picked = (dag_id, run_id) if allowed(dag_id) else None  # another's DAG: as if it had no run
            if picked is None:
                section["error"] = "No carbon-aware task is recorded for that DAG run."
        elif choices:
            picked = (choices[0]["dag_id"], choices[0]["run_id"])
        if picked is not None:
            section["selected"] = picked
            section["timeline"] = data.dag_run_timeline(*picked)
    except LedgerError as exc:
        section["error"] = str(exc)
    return section


def _ledger_error(exc: Exception) -> HTTPException:
    return HTTPException(status_code=503, detail=str(exc))


def create_app() -> FastAPI:
    """Build the Carbon app (imports Airflow's API-server modules: call it in the API server only)."""
    from airflow_carbon_provider.ledger.errors import LedgerError

    # No /docs, /redoc or /openapi.json: FastAPI adds them outside the app's dependencies, so they
    # would answer anyone; the JSON API is documented in docs/howto/ui.rst instead.
    app = FastAPI(title="Carbon-aware scheduling", description="Emissions, savings and grid intensity.",
                  dependencies=[Depends(get_user)], docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        path = str(request.scope.get("path", ""))
        if "/ui/" in path or path.endswith("/ui"):
            return HTMLResponse(views.error_page(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    # -- JSON ------------------------------------------------------------------------------

    @app.get("/api/summary")
    def api_summary(user: GetUserDep) -> dict[str, Any]:
        """Return savings per DAG, totals and objectives (SLO attainment) over the DAGs the user may read."""
        try:
            return data.summary(dag_filter(user))
        except LedgerError as exc:
            raise _ledger_error(exc) from None

    @app.get("/api/runs")
    def api_runs(user: GetUserDep, dag_id: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Return ledger rows, one per task try, newest first."""
        try:
            return data.runs(dag_filter(user), dag_id=dag_id, limit=limit)
        except LedgerError as exc:
            raise _ledger_error(exc) from None

    @app.get("/api/task")
    def api_task(user: GetUserDep, dag_id: str, run_id: str, task_id: str,
                 map_index: str | None = None) -> dict[str, Any]:
        """Return one task instance's decision and outcome (its latest try)."""
        if not dag_filter(user)(dag_id):
            raise HTTPException(status_code=403, detail="Forbidden")
        try:
            return data.task_record(dag_id, run_id, task_id, data.parse_map_index(map_index))
        except LedgerError as exc:
            raise _ledger_error(exc) from None

    @app.get("/api/forecast-skill")
    def api_forecast_skill(user: GetUserDep) -> dict[str, Any]:
        """Return the recorded forecasts' error by lead time (last 7 days), for the connections the user may read."""
        try:
            return data.forecast_skill(_connection_filter(user))
        except LedgerError as exc:
            raise _ledger_error(exc) from None

    @app.get("/api/clusters")
    def api_clusters(user: GetUserDep, session: SessionDep) -> dict[str, Any]:
        """Return current intensity and forecast per configured cluster; a failing source is an error entry."""
        return _clusters(user, session)

    # -- HTML ------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("ui/")

    @app.get("/ui/", response_class=HTMLResponse)
    def ui_overview(user: GetUserDep, session: SessionDep, dag_run: str | None = None) -> HTMLResponse:
        """Render the Carbon page; ``dag_run`` (``dag_id/run_id``) picks the DAG run whose timeline is drawn."""
        allowed = dag_filter(user)
        summary = recent = error = skill = None
        try:
            summary, recent = data.summary(allowed), data.runs(allowed, limit=20)
            skill = data.forecast_skill(_connection_filter(user))
        except LedgerError as exc:  # the runs unreadable: say so; only the skill: leave its section empty
            if summary is None or recent is None:
                summary, error = None, str(exc)
        clusters = _clusters(user, session)
        timelines = None if error else _dag_run_section(allowed, dag_run)
        return HTMLResponse(views.overview_page(summary, recent, clusters, ledger_error=error, skill=skill,
                                                dag_runs=timelines))

    @app.get("/ui/task", response_class=HTMLResponse)
    def ui_task(user: GetUserDep, session: SessionDep, dag_id: str, run_id: str, task_id: str,
                map_index: str | None = None) -> HTMLResponse:
        """Render the task-instance page: the task's timeline, decision and outcome."""
        if not dag_filter(user)(dag_id):
            raise HTTPException(status_code=403, detail="Forbidden")
        index = data.parse_map_index(map_index)
        try:
            record = data.task_record(dag_id, run_id, task_id, index)
        except LedgerError as exc:
            record = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": index}
            return HTMLResponse(views.task_page(record, ledger_error=str(exc)), status_code=503)
        timeline = timeline_error = None
        try:
            timeline = data.task_timeline(record)
        except LedgerError as exc:  # the table still shows
            timeline_error = str(exc)
        colours = charts.colours_for([{"conn_id": c.conn_id} for c in _readable_clusters(user, session)],
                                    views.timeline_clusters([timeline] if timeline else []))
        return HTMLResponse(views.task_page(record, timeline=timeline, colours=colours, timeline_error=timeline_error))

    return app
