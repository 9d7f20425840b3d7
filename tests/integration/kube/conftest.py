"""Fixtures for the Kubernetes emulator tests: emulators, and a throwaway Airflow home in which
DAGs run through ``dag.test()`` in a subprocess.

The subprocess keeps Airflow's process-wide state (settings, ORM, secrets backends) out of the
pytest process. The emulators run in the pytest process, so tests ask them directly what the
real ``KubernetesPodOperator`` did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_carbon_provider.testing.kube_emulator import KubeEmulator, KubeletTiming

#: Fast kubelet timings for tests; still slow enough that clients see every phase.
FAST = KubeletTiming(schedule_delay=0.05, start_delay=0.2, run_duration=0.5)

# The DAGs the subprocess runs. Each KPO task records its outcome (the exception it failed
# with, or the XCom it returned), so the tests need not parse logs.
DAGS_FILE = """
from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG

from airflow_carbon_provider.testing.kube_emulator import FAIL_KEY, XCOM_KEY


def record(context, **fields):
    with open(os.environ["EMULATOR_TEST_OUTCOMES"], "a") as out:
        out.write(json.dumps({"dag_id": context["dag"].dag_id, **fields}) + "\\n")


def record_failure(context, exc):
    record(
        context,
        outcome="failure",
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        status=getattr(exc, "status", None),
        message=str(exc)[:2000],
    )


# The operator records the exception its task fails with itself, not on_failure_callback: on
# Airflow 3.1 the callback's context carries no exception.
class RecordingPodOperator(KubernetesPodOperator):

    def execute(self, context):
        try:
            return super().execute(context)
        except Exception as exc:  # TaskDeferred is a BaseException and passes through
            record_failure(context, exc)
            raise

    def trigger_reentry(self, context, event):
        try:
            return super().trigger_reentry(context, event)
        except Exception as exc:
            record_failure(context, exc)
            raise


def record_success(context):
    record(context, outcome="success", xcom=context["ti"].xcom_pull(task_ids="pod"))


def pod_task(dag_id, conn_id, *, deferrable=False, annotations=None, do_xcom_push=False):
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["emulator"]) as dag:
        RecordingPodOperator(
            task_id="pod",
            kubernetes_conn_id=conn_id,
            namespace="batch",
            name=dag_id.replace("_", "-"),
            image="python:3.12-slim",
            cmds=["python", "-c"],
            arguments=[f"print('hello from {dag_id}')"],
            labels={"app": "emulator-test", "dag": dag_id},
            annotations=annotations or {},
            node_selector={"kubernetes.io/hostname": f"{conn_id}-node-1"},
            get_logs=True,
            do_xcom_push=do_xcom_push,
            deferrable=deferrable,
            poll_interval=1,
            startup_check_interval_seconds=1,
            retries=0,
            on_success_callback=record_success,
        )
    return dag


XCOM = {XCOM_KEY: json.dumps({"rows": 42})}
sync_ok = pod_task("emu_sync", "k8s_a")
deferred_ok = pod_task("emu_deferrable", "k8s_b", deferrable=True)
sync_fail = pod_task("emu_sync_fail", "k8s_a", annotations={FAIL_KEY: "true"})
deferred_fail = pod_task("emu_deferrable_fail", "k8s_b", deferrable=True, annotations={FAIL_KEY: "true"})
refused_403 = pod_task("emu_refused_403", "k8s_refuse_403")
refused_500 = pod_task("emu_refused_500", "k8s_refuse_500")
sync_xcom = pod_task("emu_sync_xcom", "k8s_a", annotations=XCOM, do_xcom_push=True)
deferred_xcom = pod_task("emu_deferrable_xcom", "k8s_b", deferrable=True, annotations=XCOM, do_xcom_push=True)
"""

# Runs the named DAGs with dag.test() and writes {dag_id: {"state", "tasks"}} as JSON.
RUNNER = """
from __future__ import annotations

import importlib.util
import json
import sys

out_path, dags_path, *dag_ids = sys.argv[1:]
spec = importlib.util.spec_from_file_location("emulator_dags", dags_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dags = {obj.dag_id: obj for obj in vars(module).values() if hasattr(obj, "dag_id") and hasattr(obj, "test")}
results = {}
for dag_id in dag_ids:
    try:
        run = dags[dag_id].test()
        results[dag_id] = {
            "state": str(run.state),
            "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
        }
    except Exception as exc:
        results[dag_id] = {"state": "error", "error": repr(exc)}
    with open(out_path, "w") as out:
        json.dump(results, out)
"""


@dataclass
class DagRunResults:
    """What one subprocess of ``dag.test()`` runs produced."""

    runs: dict[str, dict[str, Any]]
    outcomes: list[dict[str, Any]]
    output: str

    def outcome(self, dag_id: str, outcome: str) -> dict[str, Any]:
        """Return what the DAG's task recorded on ``outcome`` ("success" or "failure")."""
        found = [o for o in self.outcomes if o["dag_id"] == dag_id and o["outcome"] == outcome]
        assert found, f"{dag_id} recorded no {outcome}; output tail:\n{self.output[-4000:]}"
        return found[-1]


@dataclass
class AirflowHome:
    """A migrated throwaway ``AIRFLOW_HOME`` with the emulator DAGs in its DAGs folder."""

    path: Path
    env: dict[str, str]

    @property
    def dags_file(self) -> Path:
        """Return the DAG file inside the configured DAGs folder."""
        return self.path / "dags" / "emulator_dags.py"

    def run_dags(
        self, dag_ids: list[str], extra_env: Mapping[str, str], timeout: float = 300
    ) -> DagRunResults:
        """Run each DAG once with ``dag.test()`` in one subprocess and return the results."""
        out = self.path / "results.json"
        outcomes = self.path / "outcomes.jsonl"
        for stale in (out, outcomes):
            stale.unlink(missing_ok=True)
        env = {**self.env, **extra_env, "EMULATOR_TEST_OUTCOMES": str(outcomes)}
        proc = subprocess.run(
            [sys.executable, str(self.path / "run_dags.py"), str(out), str(self.dags_file), *dag_ids],
            env=env,
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = proc.stdout + proc.stderr
        assert out.exists(), (
            f"runner wrote no results (exit {proc.returncode}); output tail:\n{output[-6000:]}"
        )
        recorded = (
            [json.loads(line) for line in outcomes.read_text().splitlines()] if outcomes.exists() else []
        )
        return DagRunResults(runs=json.loads(out.read_text()), outcomes=recorded, output=output)


@pytest.fixture
def kube_emulator() -> Iterator[KubeEmulator]:
    """Return a running emulator of the test's own."""
    with KubeEmulator("k8s_test", carbon_zone="SE-SE3", timing=FAST) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """Return a migrated SQLite Airflow home whose DAGs folder holds the emulator DAGs."""
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    (home / "dags" / "emulator_dags.py").write_text(textwrap.dedent(DAGS_FILE).lstrip())
    (home / "run_dags.py").write_text(textwrap.dedent(RUNNER).lstrip())
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_HOME"
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # KPO retries 5xx answers; two attempts keep the 500 test short.
            "AIRFLOW__WORKERS__API_RETRIES": "2",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return AirflowHome(path=home, env=env)
