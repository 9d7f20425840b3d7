"""Shared fixtures for the whole suite."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
UTC = timezone.utc


@pytest.fixture
def data_dir() -> Path:
    """Return the folder of small real data slices copied into the repository."""
    return DATA


def utc(*args: int) -> datetime:
    """Return a UTC datetime; shorthand for tests."""
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _replay_on_purpose(monkeypatch):
    """Define ``carbontrace_default`` (the bundled trace replay) for in-process tests, saying so.

    Production never plans on a replay it did not ask for; a test that checks that removes
    the variable itself.
    """
    monkeypatch.setenv("AIRFLOW_CONN_CARBONTRACE_DEFAULT", '{"conn_type": "carbontrace"}')


@pytest.fixture(autouse=True)
def _no_forecast_recording(monkeypatch):
    """Keep hooks from recording fetched forecasts into ``$AIRFLOW_HOME``'s ledger; tests that check it switch it on."""
    monkeypatch.setenv("AIRFLOW__CARBON__RECORD_FORECASTS", "false")


@pytest.fixture(autouse=True)
def _forget_resolved_hooks():
    """Make each test read its connections afresh (hooks are remembered per process)."""
    yield
    import sys

    registry = sys.modules.get("airflow_carbon_provider.hooks._registry")
    if registry is not None:
        registry.forget_hooks()
    inventory = sys.modules.get("airflow_carbon_provider.scheduling.inventory.reading")
    if inventory is not None:  # a cluster read by one test is not another test's cluster
        inventory.inventory_cache.clear()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Run the ``real_kubernetes`` tests last, keeping every other test's order.

    Under ``.ci/run`` their binaries may still be building in the background on a fresh
    machine; running them last lets that build overlap the whole rest of the suite.
    """
    items.sort(key=lambda item: item.get_closest_marker("real_kubernetes") is not None)
