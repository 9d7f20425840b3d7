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
