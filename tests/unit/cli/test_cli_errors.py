"""Input the CLI cannot use ends in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in a fresh process."""
    exe = Path(sys.executable).with_name("airflow-carbon")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **env})


def one_line(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0], lines[0]


def test_a_short_password_adds_no_masker_warning_to_the_one_line(tmp_path):
    """Airflow's masker warns, on stdout, about secrets under 5 characters; the ledger does not register those."""
    proc = run_cli("report", "--format", "json", "--ledger-url", "postgresql://carbon:pa@ssw0rd@127.0.0.1:1/ledger")
    one_line(proc, "cannot read the ledger at postgresql+psycopg2://carbon:***@127.0.0.1:1/ledger")
    assert proc.stdout == ""
