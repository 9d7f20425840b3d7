"""The installed Airflow's version, for the few tests whose harness differs on the floor (3.1)."""

from __future__ import annotations

from importlib.metadata import version


def airflow_version() -> tuple[int, int]:
    """Return the installed apache-airflow's (major, minor)."""
    major, minor = (int(x) for x in version("apache-airflow").split(".")[:2])
    return major, minor


#: Airflow 3.1.x is installed: the floor we declare, tested by ``.ci/run``'s second run.
AIRFLOW_3_1 = airflow_version() < (3, 2)
