"""Fixtures for the ledger tests: a SQLite ledger in a temporary folder, a sample decision."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon_provider.ledger.store import Ledger, RunKey


def sample_decision(**changes: Any) -> dict[str, Any]:
    """Return a decision as the operator pushes it: waited 2 h, moved from DE to GB."""
    decision: dict[str, Any] = {
        "chosen_cluster": "k8s_gb", "chosen_key": "k8s_gb", "zone": "GB", "home_cluster": "k8s_de",
        "home_zone": "DE", "planned_start": "2026-11-27T02:00:00Z", "deadline": "2026-11-27T12:00:00Z",
        "latest_start": "2026-11-27T08:00:00Z", "arrival": "2026-11-27T00:00:00Z",
        "decided_at": "2026-11-27T00:00:05Z", "waited": True, "expected_intensity": 100.0,
        "baseline_intensity": 400.0, "expected_saving_pct": 75.0, "policy": "carbon-aware",
        "reason": "GB is cleaner in 2 h", "fail_open": False, "errors": {},
        "candidates": [{"cluster": "k8s_de", "zone": "DE", "forecast_mean": 400.0},
                       {"cluster": "k8s_gb", "zone": "GB", "forecast_mean": 100.0}],
        "power_watts": 200.0, "power_source": "power_watts", "expected_duration_s": 7200.0,
        "expected_emissions_g": 40.0, "baseline_emissions_g": 160.0, "expected_saving_g": 120.0,
        "phase": "running", "cluster": "k8s_gb", "actual_start": "2026-11-27T02:00:00Z", "fallbacks": [],
    }  # fmt: skip
    if "chosen_cluster" in changes and "chosen_key" not in changes:  # the operator always writes both
        changes["chosen_key"] = changes["chosen_cluster"]
    decision.update(changes)
    return decision


KEY = RunKey("train", "manual__2026-11-27", "fine_tune", -1, 1)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """Return a fresh SQLite ledger with its own spool."""
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", spool_path=tmp_path / "spool.jsonl")
    yield led
    led.dispose()


def closed_port() -> int:
    """Return a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def down_ledger(tmp_path: Path) -> Ledger:
    """Return a PostgreSQL ledger whose server is not there (connection refused at once)."""
    led = Ledger(f"postgresql://carbon:hunter2pw@127.0.0.1:{closed_port()}/ledger",
                 spool_path=tmp_path / "spool.jsonl", connect_timeout=2)
    yield led
    led.dispose()


@pytest.fixture(autouse=True)
def _own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the default spool of every ledger the tests open inside the test's folder."""
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(tmp_path / "default-spool.jsonl"))
