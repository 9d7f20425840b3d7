"""The forecast-error benchmarks skip cleanly (exit 0, a message) when the shared data is absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


@pytest.mark.parametrize("script", ["bench_backtest.py", "conditioning_sweep.py", "forecast_error_matrix.py",
                                    "forecast_mape.py"])
def test_skips_without_shared_data(script, tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--data", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=BENCHMARKS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("skipped: no shared data")
