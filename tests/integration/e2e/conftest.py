"""End-to-end fixtures: a migrated Airflow home holding the example DAGs, emulated clusters,
and the real trace replayed so that a real moment where waiting and moving pay is seconds away.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_carbon_provider.testing.kube_emulator import KubeEmulator, KubeletTiming, start_clusters
from airflow_carbon_provider.testing.replay import DEMO_CLUSTERS
from airflow_carbon_provider.testing.sandbox import AirflowSandbox, example_dags_folder

UTC = timezone.utc
FAST = KubeletTiming(schedule_delay=0.05, start_delay=0.2, run_duration=0.5)
FAULT_DAGS = Path(__file__).parent / "dags"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowSandbox]:
    """Return a migrated SQLite Airflow home whose DAGs folder holds the example DAGs."""
    box = AirflowSandbox(tmp_path_factory.mktemp("e2e_home"))
    for dag_file in sorted(example_dags_folder().glob("*.py")):
        box.add_dag_file(dag_file)
    for dag_file in sorted(FAULT_DAGS.glob("*.py")):
        shutil.copyfile(dag_file, box.dags_folder / dag_file.name)
    box.migrate()
    yield box


@pytest.fixture
def clusters() -> Iterator[dict[str, KubeEmulator]]:
    """Return three running emulated clusters, home k8s_de, of the test's own."""
    with start_clusters(DEMO_CLUSTERS, timing=FAST) as running:
        yield running


def iso(moment: datetime) -> str:
    """Return ``moment`` as ISO-8601 UTC with a Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    """Parse an ISO-8601 instant written by the operator."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def soon(minutes: float) -> str:
    """Return now plus ``minutes`` as ISO-8601 UTC."""
    return iso(datetime.now(UTC) + timedelta(minutes=minutes))
