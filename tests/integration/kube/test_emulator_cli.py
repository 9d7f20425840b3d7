"""``airflow-carbon emulator``: emulated clusters and their connections, for trying one's own DAG.

The command runs as a user runs it (a subprocess of the installed console script), writes its
connections, serves them until interrupted, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.kube.test_emulator import pod_body

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("airflow-carbon"))


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return subprocess.Popen([CLI, "emulator", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the emulator command wrote no connections in time"
        time.sleep(0.2)


def test_the_written_connections_reach_running_emulators_until_ctrl_c(tmp_path, monkeypatch):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    out = tmp_path / "connections.env"
    proc = _start("--clusters", "k8s_se=SE-SE3,k8s_fr=FR", "--write", str(out), cwd=tmp_path)
    try:
        _wait_for(out, proc)
        exports = dict(line.removeprefix("export ").split("=", 1) for line in out.read_text().splitlines())
        assert list(exports) == ["AIRFLOW_CONN_K8S_SE", "AIRFLOW_CONN_K8S_FR", "AIRFLOW_CONN_CARBONTRACE_DEFAULT"]
        for name, quoted in exports.items():
            (value,) = shlex.split(quoted)  # what `source` would set
            monkeypatch.setenv(name, value)
        assert json.loads(os.environ["AIRFLOW_CONN_K8S_FR"])["extra"]["carbon_zone"] == "FR"
        hook = KubernetesHook(conn_id="k8s_fr")
        hook.core_v1_client.create_namespaced_pod("default", pod_body("tried-locally"))
        assert hook.get_pod("tried-locally", "default").metadata.name == "tried-locally"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "press Ctrl-C to stop" in err and "stopped the emulators" in err
    assert f"source {out}" in err


def test_json_is_an_airflow_connections_import_file(tmp_path):
    proc = _start("--clusters", "k8s_a=DE", "--format", "json", "--no-carbontrace", cwd=tmp_path)
    try:
        assert proc.stdout is not None
        text = proc.stdout.readline()
        while text.count("{") != text.count("}"):  # the whole object, then the command keeps serving
            text += proc.stdout.readline()
        conns = json.loads(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert list(conns) == ["k8s_a"]
    # ``extra`` is a JSON string, as ``airflow connections export`` writes it (the e2e test
    # tests/integration/e2e/test_example_dags.py imports such a file into Airflow for real)
    assert conns["k8s_a"]["conn_type"] == "kubernetes" and json.loads(conns["k8s_a"]["extra"])["carbon_zone"] == "DE"
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("clusters", "message"),
    [("k8s_de", "is not conn_id=ZONE"), ("k8s_de=de", "use 'DE'"), ("a=DE,a=GB", "names 'a' twice"),
     ("", "--clusters is empty"), ("bad id=DE", "is not a connection id")],
)
def test_wrong_clusters_are_refused_in_one_line(tmp_path, clusters, message):
    done = subprocess.run([CLI, "emulator", "--clusters", clusters], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert message in line and line.startswith("airflow-carbon: error: --clusters")
