"""Input the CLI cannot use ends in one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_carbon_provider.cli import main


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


@pytest.mark.parametrize(("args", "message"), [
    (["--job-duration", "9999999999d"], "--job-duration '9999999999d' is too long; at most 3650d"),
    (["--job-duration", "9" * 400 + "d"], "is too long; at most 3650d"),
    (["--max-delay", "99999999d"], "--max-delay '99999999d' is too long; at most 3650d"),
    (["--arrival-every", "3651d"], "--arrival-every '3651d' is too long"),
    (["--job-duration", "-4h"], "--job-duration '-4h' is negative"),
    (["--max-delay", "-2h"], "--max-delay '-2h' is negative"),
    (["--refresh", "-0.5h"], "--refresh '-0.5h' is negative"),
    (["--forecast-horizon", "24h", "--job-duration", "48h"], "--forecast-horizon 24h is shorter than --job-duration 48h"),
    (["--job-duration", "0h"], "--job-duration must be longer than zero, got 0h"),
    (["--zones", "DE", "--job-duration", "20d", "--max-delay", "20d", "--forecast-horizon", "20d"],
     "--job-duration plus --max-delay (960h)"),
])  # fmt: skip
def test_backtest_durations(args, message):
    one_line(run_cli("backtest", *args), message)


@pytest.mark.parametrize("target", ["{tmp}/nonexistent-dir/x.png", "{tmp}", "{tmp}/file.txt/x.png"])
def test_backtest_plot_target_is_checked_before_the_run(target, tmp_path, monkeypatch, capsys):
    (tmp_path / "file.txt").write_text("")
    from airflow_carbon_provider.core import backtest

    def no_run(*args, **kwargs):
        raise AssertionError("the backtest ran before --plot was checked")

    monkeypatch.setattr(backtest, "run_backtest", no_run)
    status = main(["backtest", "--zones", "DE", "--policy", "run-now", "--plot", target.format(tmp=tmp_path)],
                  io.StringIO())
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--plot" in err and "cannot write" in err, err


def test_report_plot_target_is_checked_before_reading(tmp_path, capsys):
    ledger = tmp_path / "ledger.db"
    target = tmp_path / "nonexistent-dir" / "r.png"
    status = main(["report", "--ledger-url", f"sqlite:///{ledger}", "--plot", str(target)], io.StringIO())
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "cannot write" in err
    assert not target.parent.exists() and not ledger.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "9999-12-31T23:59:59-05:00"], "argument --since: '9999-12-31T23:59:59-05:00' is out of range"),
    (["--until", "0001-01-01T00:00:00+01:00"], "argument --until: '0001-01-01T00:00:00+01:00' is out of range"),
])  # fmt: skip
def test_report_dates_out_of_range(args, message, tmp_path):
    one_line(run_cli("report", "--ledger-url", f"sqlite:///{tmp_path / 'l.db'}", *args), message)


def test_report_never_creates_a_ledger(tmp_path):
    missing = tmp_path / "nonexistent" / "dir" / "l.db"
    one_line(run_cli("report", "--ledger-url", f"sqlite:///{missing}"), f"no ledger at {missing}")
    assert not (tmp_path / "nonexistent").exists()
    # nor the default one under AIRFLOW_HOME
    home = tmp_path / "home"
    env = {"AIRFLOW_HOME": str(home), "AIRFLOW_CARBON_LEDGER_URL": "", "AIRFLOW_CARBON_LEDGER_CONN_ID": "",
           "AIRFLOW__CARBON__LEDGER_CONN_ID": "", "AIRFLOW_CARBON_LEDGER_SPOOL": str(tmp_path / "spool.jsonl")}
    one_line(run_cli("report", **env), f"no ledger at {home / 'carbon_ledger.db'}")
    assert not (home / "carbon_ledger.db").exists()


def test_a_short_password_adds_no_masker_warning_to_the_one_line(tmp_path):
    """Airflow's masker warns, on stdout, about secrets under 5 characters; the ledger does not register those."""
    proc = run_cli("report", "--format", "json", "--ledger-url", "postgresql://carbon:pa@ssw0rd@127.0.0.1:1/ledger")
    one_line(proc, "cannot read the ledger at postgresql+psycopg2://carbon:***@127.0.0.1:1/ledger")
    assert proc.stdout == ""
