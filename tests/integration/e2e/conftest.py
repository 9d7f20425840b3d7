"""End-to-end fixtures: a migrated Airflow home holding the example DAGs, emulated clusters,
and the real trace replayed so that a real moment where waiting and moving pay is seconds away.
"""

from __future__ import annotations

import shutil
import time
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


#: The replayed moment comes at least this long after a test launches its DAG run, and at most
#: this long (the tests' deadlines, 3-5 minutes ahead, leave room for the wait and the run).
MIN_LEAD, MAX_LEAD = timedelta(seconds=50), timedelta(seconds=150)


@pytest.fixture(scope="session")
def replay_lead(sandbox: AirflowSandbox) -> timedelta:
    """Return how far ahead of a DAG run's launch the replayed low-carbon moment should come.

    A run must reach its task and plan before the moment, or it starts at once and never
    waits. That set-up takes 10-15 s on an idle machine and a minute or more on a loaded one
    (CI builds the real Kubernetes binaries in the background), so it is measured: one run of
    a DAG that does nothing, timed, and the lead is twice that plus 10 s, within 50-150 s.
    """
    started = time.monotonic()
    result = sandbox.run_dag("e2e_warmup")
    assert result.state == "success", result.output[-3000:]
    setup = time.monotonic() - started
    lead = min(MAX_LEAD, max(MIN_LEAD, timedelta(seconds=2 * setup + 10)))
    print(f"e2e: a run of a DAG that does nothing took {setup:.0f} s; replayed moments come {lead} ahead")
    return lead


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
