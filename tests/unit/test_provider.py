"""The package is an Airflow provider: Airflow discovers it after ``pip install``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import airflow_carbon_provider
from airflow_carbon_provider.get_provider_info import get_provider_info


def test_provider_info_shape():
    info = get_provider_info()
    assert info["package-name"] == "airflow-carbon-provider"
    assert info["versions"] == [airflow_carbon_provider.__version__]
    assert info["name"] and info["description"]


def test_airflow_providers_list_shows_the_provider(tmp_path):
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    proc = subprocess.run([str(airflow), "providers", "list", "--output", "plain"], capture_output=True,
                          text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("airflow-carbon-provider")), None)
    assert line is not None, proc.stdout[-2000:]
    assert airflow_carbon_provider.__version__ in line
