"""The capacity benchmark runs, small: one plan per booking count, every row printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_capacity.py"


def test_runs_small_and_prints_a_row_per_booking_count():
    proc = subprocess.run([sys.executable, str(BENCH), "--repeat", "2", "--bookings", "0,50,200"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[2:]]
    assert [r[0] for r in rows] == ["0", "50", "200"]
    assert int(rows[2][2]) > 0  # the capacity bound: some better option was ruled out
