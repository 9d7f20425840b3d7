"""Fixtures for the hook tests: connections as AIRFLOW_CONN_* variables (no database), a
fresh cache, a fixed clock and a retry policy that never sleeps."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from airflow_carbon_provider.hooks.cache import IntensityCache
from airflow_carbon_provider.sources import watttime as wt
from airflow_carbon_provider.sources._http import RetryPolicy


@pytest.fixture
def add_connection(monkeypatch) -> Callable[..., None]:
    """Return a function that defines a connection through an environment variable."""

    def add(conn_id: str, conn_type: str, **fields: Any) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, **fields}))

    return add


@pytest.fixture
def cache() -> IntensityCache:
    """Return a cache of the test's own, so tests do not see each other's answers."""
    return IntensityCache()


@pytest.fixture
def sleeps() -> list[float]:
    """Return the list the policy's sleeps are recorded into."""
    return []


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    """Return a policy with short timeouts whose sleeps only record the delay."""

    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return RetryPolicy(
        timeout=5.0, connect_timeout=2.0, max_attempts=3, sleep=sleeps.append, async_sleep=async_sleep,
        rng=random.Random(1),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_watttime_tokens():
    """Forget WattTime tokens shared in-process, since every test reuses one loopback port."""
    wt._TOKENS.clear()
    yield
    wt._TOKENS.clear()


class FixedClock:
    """A wall clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
