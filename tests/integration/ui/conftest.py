"""A real Airflow API server with the Carbon plugin, authentication required, and a filled ledger.

The ledger (SQLite) is filled through the ledger's public API, with a stub carbon source whose
realised history is constant per zone, so every figure the pages show is known exactly:

* ``nightly_training.fine_tune``: moved from DE (400 g/kWh) to GB (100 g/kWh), 1 kW for 2 h:
  200 g emitted, 800 g baseline, 600 g (75 %) saved, started on time;
* ``batch_inference.score``: stayed in DE, 0.5 kW for 1 h, started after its latest start:
  200 g emitted, 200 g baseline, nothing saved, deadline missed;
* ``nightly_training.evaluate`` (map index 2): decided, not run yet.

The realised history of 2026-03-10 00:00-08:00 varies by the hour (:data:`PROFILE`) with the
same means over those runs, and the DE and GB forecasts the hooks would have fetched each
hour that night are recorded (12 % off after their first hour), so the timelines have a
forecast at decision time and realised values to draw.

Objectives: every run on time (the default) and at least 50 % below the baseline. Clusters:
``k8s_gb`` (GB, environment variable) and ``k8s_de`` (DE, in the database, added through the
REST API by the test) replay the bundled trace; ``k8s_broken``'s carbon connection points at a
trace file that does not exist.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.ledger import Ledger, RunKey, record_decision, record_outcome
from tests.integration.e2e.airflow_stack import AirflowStack, base_env, free_port, migrate

UTC = timezone.utc
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"
HISTORY = {"DE": 400.0, "GB": 100.0}
PROFILE = {"DE": [400.0, 400.0, 385.0, 370.0, 360.0, 350.0, 345.0, 340.0],
           "GB": [230.0, 190.0, 100.0, 100.0, 125.0, 170.0, 215.0, 240.0]}
"""Realised g/kWh per hour of 2026-03-10 from 00:00; other hours: :data:`HISTORY`."""
RUN_TRAINING = "scheduled__2026-03-10T00:00:00+00:00"
RUN_INFERENCE = "manual__2026-03-11T12:00:00+00:00"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """Return 2026-03-<day> <hour>:<minute> UTC."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """Return ``moment`` as ISO-8601 with a Z."""
    return moment.isoformat().replace("+00:00", "Z")


def realised(zone: str, hour: datetime) -> float:
    """Return the realised intensity of ``zone`` in the hour starting at ``hour``."""
    index = int((hour - at(10, 0)).total_seconds() // 3600)
    return PROFILE[zone][index] if 0 <= index < len(PROFILE[zone]) else HISTORY[zone]


class ConstantHistory:
    """A carbon source whose realised history is :func:`realised` per zone, hour by hour."""

    def get_history(self, zone: str, start: datetime, end: datetime) -> IntensitySeries:
        """Return hourly values covering ``[start, end)``."""
        first = start.replace(minute=0, second=0, microsecond=0)
        hours = int((end - first).total_seconds() // 3600) + 1
        points = [(first + timedelta(hours=i), realised(zone, first + timedelta(hours=i))) for i in range(hours)]
        return IntensitySeries.from_points(zone, "average", points, resolution=timedelta(hours=1), source="stub")


def _decision(**fields: Any) -> dict[str, Any]:
    base = {"policy": "carbon-aware", "signal": "average", "home_cluster": "k8s_de", "home_zone": "DE",
            "carbon_conn_id": "carbontrace_default", "candidates": [
                {"cluster": "k8s_de", "zone": "DE"}, {"cluster": "k8s_gb", "zone": "GB"}]}
    return {**base, **fields}


def fill_ledger(url: str) -> None:
    """Record the three task runs described in the module docstring."""
    ledger = Ledger(url)
    stub = ConstantHistory()
    training = _decision(
        chosen_cluster="k8s_gb", cluster="k8s_gb", zone="GB", arrival=iso(at(10, 0)), decided_at=iso(at(10, 0)),
        planned_start=iso(at(10, 2)), actual_start=iso(at(10, 2)), latest_start=iso(at(10, 6)),
        deadline=iso(at(10, 8)), waited=True, expected_intensity=110.0, baseline_intensity=390.0,
        expected_saving_pct=71.8, power_watts=1000.0, expected_duration_s=7200.0,
        reason="GB is cleanest, and cleaner after 02:00",
        trigger={"status": "start", "fired_at": iso(at(10, 2)), "replans": 8,
                 "moves": [{"at": iso(at(10, 0, 45)), "cluster": "k8s_gb", "start": iso(at(10, 2))}]},
        recheck={"at": iso(at(10, 2)), "chosen_key": "k8s_gb", "chosen_cluster": "k8s_gb", "expected_intensity": 104.0})
    key = RunKey("nightly_training", RUN_TRAINING, "fine_tune")
    assert record_decision(training, key, ledger=ledger, emit_metrics=False)
    assert record_outcome(training, key, actual_end=at(10, 4), ledger=ledger, hook_for=lambda _c: stub,
                          emit_metrics=False) is not None
    inference = _decision(
        chosen_cluster="k8s_de", cluster="k8s_de", zone="DE", arrival=iso(at(11, 12)), decided_at=iso(at(11, 12)),
        planned_start=iso(at(11, 12)), actual_start=iso(at(11, 13)), latest_start=iso(at(11, 12, 30)),
        deadline=iso(at(11, 15)), waited=False, expected_intensity=400.0, baseline_intensity=400.0,
        expected_saving_pct=0.0, power_watts=500.0, reason="no cleaner window before the latest start")
    key = RunKey("batch_inference", RUN_INFERENCE, "score")
    assert record_decision(inference, key, ledger=ledger, emit_metrics=False)
    assert record_outcome(inference, key, actual_end=at(11, 14), ledger=ledger, hook_for=lambda _c: stub,
                          emit_metrics=False) is not None
    waiting = _decision(
        phase="waiting", chosen_cluster="k8s_gb", zone="GB", arrival=iso(at(10, 0)), decided_at=iso(at(10, 0)),
        planned_start=iso(at(10, 5)), latest_start=iso(at(10, 6)), deadline=iso(at(10, 8)), waited=True,
        expected_intensity=95.0, baseline_intensity=390.0, expected_saving_pct=75.6, power_watts=200.0,
        reason="waiting for the GB night window")
    assert record_decision(waiting, RunKey("nightly_training", RUN_TRAINING, "evaluate", map_index=2),
                           ledger=ledger, emit_metrics=False)
    record_forecasts(ledger)
    record_night_forecasts(ledger)
    reserve_some(ledger)
    ledger.dispose()


def reserve_some(ledger: Ledger) -> None:
    """Hold fleet reservations in the next hours: 30 pods on k8s_gb, 10 on a node pool of k8s_de."""

    from airflow_carbon_provider.ledger.reservations import reserve


    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    for i in range(3):
        held = reserve(f"ui-test-gb-{i}", "k8s_gb", now + timedelta(hours=2), now + timedelta(hours=6),
                       {"pods": 10, "nvidia.com/gpu": 1}, capacity=None, ledger=ledger)
        assert held.reserved, held.message
    held = reserve("ui-test-de", "k8s_de[pool=a]", now + timedelta(hours=1), now + timedelta(hours=3),
                   {"pods": 10}, capacity=None, ledger=ledger)
    assert held.reserved, held.message


def record_night_forecasts(ledger: Ledger) -> None:
    """Record the DE and GB forecasts of 2026-03-10, one issued each hour from 00:01 to 07:01, 12 % off ahead."""
    from airflow_carbon_provider.ledger.forecasts import forecast_row, store_forecasts

    rows = []
    for zone, off in (("DE", 1.12), ("GB", 1.12)):
        for hour in range(8):
            values = [realised(zone, at(10, k)) * (1.0 if k == hour else off) for k in range(hour, 8)]
            bounds = [at(10, k).timestamp() for k in range(hour, 9)]
            series = IntensitySeries.from_arrays(zone, "average", bounds, values, is_forecast=True,
                                                 issued_at=at(10, hour, 1))
            rows.append(forecast_row(series, source="carbontrace_default", fetched_at=datetime.now(UTC)))
    assert store_forecasts(ledger, rows) == len(rows)


def record_forecasts(ledger: Ledger) -> None:
    """Record hourly DE forecasts of the last 6 hours, each 10 % too high one hour ahead (the skill section)."""
    from airflow_carbon_provider.ledger.forecasts import forecast_row, store_forecasts

    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for hours_ago in range(6, 0, -1):
        start = top - timedelta(hours=hours_ago)
        series = IntensitySeries.from_arrays("DE", "average", [start.timestamp() + 3600 * k for k in range(4)],
                                             [100.0, 110.0, 121.0], issued_at=start + timedelta(minutes=5),
                                             is_forecast=True)
        rows.append(forecast_row(series, source="carbontrace_default", fetched_at=start + timedelta(minutes=6)))
    assert store_forecasts(ledger, rows) == 6


@dataclass
class CarbonUI:
    """The running API server and how to talk to it."""

    stack: AirflowStack
    password: str

    @property
    def url(self) -> str:
        """Return the API server's base URL."""
        return self.stack.api_url

    def token(self) -> str:
        """Return a JWT for the admin user, from the auth manager's ``/auth/token``."""
        response = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password},
                              timeout=30)
        assert response.status_code == 201, response.text
        return str(response.json()["access_token"])

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """GET ``path`` on the API server, with ``token`` as a bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)


@pytest.fixture(scope="session")
def carbon_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CarbonUI]:
    """Start ``airflow api-server`` with the plugin (installed entry point) and a filled ledger."""
    home = tmp_path_factory.mktemp("ui_home")
    (home / "dags").mkdir()
    ledger_url = f"sqlite:///{home / 'carbon_ledger.db'}"
    fill_ledger(ledger_url)
    password = secrets.token_urlsafe(12)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    port = free_port()
    env = base_env(home, api_port=port, extra={
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_CARBON_LEDGER_URL": ledger_url,
        "AIRFLOW_CARBON_LEDGER_SPOOL": str(home / "spool.jsonl"),
        "AIRFLOW__CARBON__SLO_REDUCTION_PCT": "50",
        "AIRFLOW_CONN_CARBONTRACE_DEFAULT": json.dumps({"conn_type": "carbontrace"}),  # the replay, on purpose
        "AIRFLOW_CONN_K8S_GB": json.dumps({"conn_type": "kubernetes", "extra": {"carbon_zone": "GB"}}),
        "AIRFLOW_CONN_K8S_BROKEN": json.dumps(
            {"conn_type": "kubernetes", "extra": {"carbon_zone": "DE", "carbon_conn_id": "carbon_broken"}}),
        "AIRFLOW_CONN_CARBON_BROKEN": json.dumps(
            {"conn_type": "carbontrace", "extra": {"path": str(home / "no-such-trace.csv")}}),
    })
    migrate(home, env)
    stack = AirflowStack(home, env, port)
    try:
        api = stack.start("api-server", "api-server")
        stack.wait_for("the API server", stack.health, timeout=120, must_run=(api,))
        ui = CarbonUI(stack, password)
        created = httpx.post(f"{ui.url}/api/v2/connections", timeout=30,
                             headers={"Authorization": f"Bearer {ui.token()}"},
                             json={"connection_id": "k8s_de", "conn_type": "kubernetes",
                                   "extra": json.dumps({"carbon_zone": "DE", "in_cluster": False})})
        assert created.status_code == 201, created.text
        yield ui
    finally:
        stack.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Return ``test-artifacts/ui`` (created), where screenshots are kept."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
