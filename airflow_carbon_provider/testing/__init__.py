"""Test and demo helpers that ship with the package.

Nothing here is needed in production. The modules import neither pytest nor (at import
time) Airflow, so the ``airflow-carbon demo`` command and any test suite can use them.
"""

from __future__ import annotations

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
