"""Test and demo helpers that ship with the package.

Nothing here is needed in production. The modules import neither pytest nor (at import
time) Airflow, so the ``airflow-carbon demo`` command and any test suite can use them. The
emulator's names below are imported lazily, on first use, so importing
``airflow_carbon_provider.testing.replay`` alone does not load aiohttp's server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_carbon_provider.testing.kube_emulator import (
        EXIT_CODE_KEY,
        FAIL_KEY,
        LOG_KEY,
        RUN_SECONDS_KEY,
        XCOM_KEY,
        KubeEmulator,
        KubeletTiming,
        PodRecord,
        RequestRecord,
        connections_env,
        start_clusters,
    )

__all__ = [
    "EXIT_CODE_KEY",
    "FAIL_KEY",
    "LOG_KEY",
    "RUN_SECONDS_KEY",
    "XCOM_KEY",
    "KubeEmulator",
    "KubeletTiming",
    "PodRecord",
    "RequestRecord",
    "connections_env",
    "start_clusters",
]


def __getattr__(name: str) -> Any:
    """Import the emulator's public names on first access (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("airflow_carbon_provider.testing.kube_emulator"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
