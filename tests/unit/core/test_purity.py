"""The core imports nothing but the standard library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import airflow_carbon_provider.core as core

FORBIDDEN = ("airflow", "requests", "aiohttp", "sqlalchemy", "pendulum", "numpy", "matplotlib")


def test_importing_every_core_module_loads_no_third_party_package():
    modules = [m.name for m in pkgutil.iter_modules(core.__path__, "airflow_carbon_provider.core.")
               if not m.name.endswith("_plot")]
    assert "airflow_carbon_provider.core.planner" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"loaded = sorted(m for m in {FORBIDDEN!r} if m in sys.modules)\n"
        "print(loaded); sys.exit(1 if loaded else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"core imported {proc.stdout.strip()} {proc.stderr}"
