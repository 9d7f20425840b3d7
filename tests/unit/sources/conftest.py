"""Fixtures for the source tests: recorded API bodies, a retry policy that never sleeps, and
a sync/async switch so each test runs the same flows through both drivers over real loopback
HTTP."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon_provider.sources._drivers import AsyncDriver, SyncDriver
from airflow_carbon_provider.sources._http import ErrorClassifier, RetryPolicy

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "api-samples"


def sample_bytes(provider: str, name: str) -> bytes:
    """Return a recorded body exactly as stored."""
    return (SAMPLES / provider / name).read_bytes()


def sample(provider: str, name: str) -> Any:
    """Return a recorded body decoded from JSON."""
    return json.loads(sample_bytes(provider, name))


class SleepRecorder:
    """Stands in for time.sleep / asyncio.sleep and records the requested delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record a blocking sleep."""
        self.delays.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Record an asynchronous sleep."""
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    """Return the recorder the ``policy`` fixture sleeps into."""
    return SleepRecorder()


@pytest.fixture
def policy(sleeps: SleepRecorder) -> RetryPolicy:
    """Return a retry policy with short timeouts whose sleeps return at once."""
    import random

    return RetryPolicy(
        timeout=2.0,
        connect_timeout=1.0,
        max_attempts=3,
        backoff_base=0.5,
        backoff_max=4.0,
        max_retry_after=30.0,
        sleep=sleeps.sleep,
        async_sleep=sleeps.async_sleep,
        rng=random.Random(7),
    )


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run the test once with the requests driver and once with the aiohttp driver."""
    return request.param


def driver_class(mode: str) -> type[SyncDriver] | type[AsyncDriver]:
    """Return the driver class of ``mode``."""
    return SyncDriver if mode == "sync" else AsyncDriver


@pytest.fixture
def make_driver(mode: str, httpserver, policy: RetryPolicy) -> Callable[..., SyncDriver | AsyncDriver]:
    """Return a factory of drivers (of the current mode) aimed at the loopback server."""

    def factory(
        provider: str, classify: ErrorClassifier | None = None, **kwargs: Any
    ) -> SyncDriver | AsyncDriver:
        options = {
            "provider": provider,
            "base_url": httpserver.url_for("").rstrip("/"),
            "policy": policy,
            "classify": classify,
            **kwargs,
        }
        return driver_class(mode)(**options)

    return factory


async def run(driver: SyncDriver | AsyncDriver, flow: Any) -> Any:
    """Run ``flow`` with either driver and return its result."""
    return await call(driver.run, flow)


async def call(target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async method alike and return its result."""
    result = target(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
