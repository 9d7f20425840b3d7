"""A throwaway (or given) Airflow home in which DAG files run end to end through ``dag.test()``.

Used by ``airflow-carbon demo`` and the end-to-end tests. Each run happens in a subprocess,
so Airflow's process-wide state (settings, ORM, secrets backends) never leaks between runs or
into the caller; the caller keeps the Kubernetes emulators, which the subprocess reaches over
loopback. Results come back as JSON: the run's state, each task's state, and each task's
``carbon_decision`` XCom.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AirflowSandbox", "DagRunResult", "example_dags_folder"]

_RUNNER = r'''
from __future__ import annotations

import json
import sys

import importlib.util
import os
from pathlib import Path

out_path, dag_id, conf_json = sys.argv[1:4]
dag = None
errors = {}
for path in sorted(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).glob("*.py")):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        errors[str(path)] = repr(exc)
        continue
    for obj in vars(module).values():
        if getattr(obj, "dag_id", None) == dag_id and hasattr(obj, "test"):
            dag = obj
if dag is None:
    json.dump({"state": "import_error", "errors": errors or {"dag_id": f"no DAG {dag_id!r} in the DAGs folder"}},
              open(out_path, "w"))
    sys.exit(0)
result = {"dag_id": dag_id}
try:
    run = dag.test(run_conf=json.loads(conf_json) or None)
except Exception as exc:  # report, do not hide
    result.update(state="error", error=repr(exc))
else:
    result.update(state=str(run.state), run_id=run.run_id, tasks=[])
    for ti in run.get_task_instances():
        result["tasks"].append({"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state),
                                "try_number": ti.try_number})
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.query(XComModel).filter(
                XComModel.dag_id == dag_id, XComModel.run_id == run.run_id).all()
            xcoms = {}
            for row in rows:
                value = row.value
                if isinstance(value, (str, bytes)):
                    try:
                        value = json.loads(value)
                    except ValueError:
                        pass
                xcoms.setdefault(row.task_id, {})[row.key] = value
        result["xcom"] = xcoms
    except Exception as exc:
        result["xcom_error"] = repr(exc)
json.dump(result, open(out_path, "w"), default=str)
'''


def example_dags_folder() -> Path:
    """Return the folder holding the example DAGs (a source checkout, or the installed share/)."""
    here = Path(__file__).resolve().parents[2] / "example_dags"
    if here.is_dir():
        return here
    installed = Path(sys.prefix) / "share" / "airflow-carbon-provider" / "example_dags"
    if installed.is_dir():
        return installed
    raise FileNotFoundError(
        "cannot find the example DAGs: expected them next to the package (a source checkout) or in "
        f"{installed}; reinstall airflow-carbon-provider"
    )


@dataclass
class DagRunResult:
    """What one ``dag.test()`` run produced."""

    data: dict[str, Any]
    output: str

    @property
    def state(self) -> str:
        """The run's final state (``success``, ``failed``, ``error``, ``import_error``)."""
        return str(self.data.get("state"))

    def task(self, task_id: str) -> dict[str, Any]:
        """Return one task's record (state, try number)."""
        for task in self.data.get("tasks", []):
            if task["task_id"] == task_id:
                return task
        raise KeyError(f"no task {task_id!r} in the run; output tail:\n{self.output[-3000:]}")

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        """Return one XCom value of the run."""
        return self.data.get("xcom", {}).get(task_id, {}).get(key)


@dataclass
class AirflowSandbox:
    """An Airflow home with a DAGs folder and a migrated SQLite database.

    :param home: the folder; a temporary one when ``None`` (removed by :meth:`close`).
    :param env: extra environment for every Airflow subprocess (connections, settings).
    """

    home: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    _temporary: bool = False

    def __post_init__(self) -> None:
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix="airflow-carbon-"))
            self._temporary = True
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dags").mkdir(exist_ok=True)

    @property
    def dags_folder(self) -> Path:
        """The configured DAGs folder (``dag.test()`` needs the DAG file inside it)."""
        assert self.home is not None
        return self.home / "dags"

    def base_env(self) -> dict[str, str]:
        """Return the environment of the Airflow subprocesses."""
        assert self.home is not None
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_HOME"}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        return env

    def add_dag_file(self, source: Path) -> Path:
        """Copy a DAG file into the DAGs folder."""
        target = self.dags_folder / source.name
        shutil.copyfile(source, target)
        return target

    def migrate(self, timeout: float = 300) -> None:
        """Create or upgrade the metadata database (``airflow db migrate``)."""
        assert self.home is not None
        proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.base_env(),
                              cwd=self.home, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-4000:]}")

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``airflow ARGS...`` in this home and return its output; raise when it fails."""
        assert self.home is not None
        proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.base_env(), cwd=self.home,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
        return proc.stdout + proc.stderr

    def run_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None, *,
                env: Mapping[str, str] | None = None, timeout: float = 600) -> DagRunResult:
        """Run ``dag_id`` once with ``dag.test()`` in a subprocess and return its result."""
        assert self.home is not None
        runner = self.home / "run_dag.py"
        runner.write_text(_RUNNER)
        out = self.home / f"result-{dag_id}.json"
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            [sys.executable, str(runner), str(out), dag_id, json.dumps(dict(conf or {}))],
            env={**self.base_env(), **dict(env or {})}, cwd=self.home, capture_output=True, text=True,
            timeout=timeout,
        )
        output = proc.stdout + proc.stderr
        if not out.exists():
            raise RuntimeError(f"dag.test() for {dag_id} wrote no result (exit {proc.returncode}):\n{output[-6000:]}")
        return DagRunResult(json.loads(out.read_text()), output)

    def close(self) -> None:
        """Remove the home if it was temporary."""
        if self._temporary and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
