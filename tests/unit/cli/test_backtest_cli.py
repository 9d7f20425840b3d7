"""``airflow-carbon backtest`` as a user runs it: real process, real trace slices."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from airflow_carbon_provider.cli import main
from airflow_carbon_provider.core.backtest import backtest_policies

POLICY_KEYS = {"mean_intensity", "reduction_pct", "fraction_of_oracle", "mean_delay_h", "max_delay_h",
               "deadline_misses", "moved_pct", "peak_load"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script in a fresh process."""
    exe = Path(sys.executable).with_name("airflow-carbon")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_default_run_is_the_readme_main_job():
    proc = run_cli("backtest")
    assert proc.returncode == 0, proc.stderr
    assert "zones DE, GB, US-CAL-CISO, CA-ON (home DE)" in proc.stdout
    for policy in backtest_policies(capacities=False):
        assert f"\n{policy} " in proc.stdout
    assert "carbon-aware-uncoordinated" not in proc.stdout  # nothing to coordinate without capacities


_NUMBER = {"type": "number"}
BACKTEST_SCHEMA = {
    "type": "object",
    "required": ["jobs", "zones", "home_zone", "forecast", "job_duration_h", "max_delay_h", "policies"],
    "properties": {
        "jobs": {"type": "integer", "minimum": 1},
        "zones": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "home_zone": {"type": "string"},
        "forecast": {"type": "string"},
        "job_duration_h": _NUMBER,
        "max_delay_h": _NUMBER,
        "capacities": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "jobs_per_arrival": {"type": "integer", "minimum": 1},
        "policies": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": sorted(POLICY_KEYS),
                "additionalProperties": False,
                "properties": {
                    "mean_intensity": _NUMBER, "reduction_pct": _NUMBER,
                    "fraction_of_oracle": {"type": ["number", "null"]},
                    "mean_delay_h": _NUMBER, "max_delay_h": _NUMBER,
                    "deadline_misses": {"type": "integer", "minimum": 0}, "moved_pct": _NUMBER,
                    "peak_load": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "capacity_overflows": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}


def test_json_matches_the_contract():
    proc = run_cli("backtest", "--zones", "DE,GB", "--home-zone", "DE", "--job-duration", "4h",
                   "--max-delay", "24h", "--arrival-every", "6h", "--forecast", "noisy:10:1", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    jsonschema.validate(data, BACKTEST_SCHEMA)
    assert {"jobs", "zones", "home_zone", "forecast", "job_duration_h", "max_delay_h", "policies"} <= set(data)
    assert data["zones"] == ["DE", "GB"] and data["home_zone"] == "DE" and data["forecast"] == "noisy:10:1"
    assert data["job_duration_h"] == 4.0 and data["max_delay_h"] == 24.0
    assert isinstance(data["jobs"], int) and data["jobs"] > 100
    assert list(data["policies"]) == list(backtest_policies(capacities=False))
    for name, figures in data["policies"].items():
        assert set(figures) == POLICY_KEYS, name
        assert isinstance(figures["deadline_misses"], int)
        assert all(isinstance(figures[k], float) for k in POLICY_KEYS - {"deadline_misses", "peak_load"})
    assert data["policies"]["run-now"]["peak_load"] == {"DE": 1}
    assert "capacities" not in data
    assert data["policies"]["run-now"]["reduction_pct"] == 0.0
    assert data["policies"]["oracle"]["fraction_of_oracle"] == 1.0


def test_selected_policies_and_archive_forecast(data_dir):
    out = []

    class Sink:
        def write(self, text):
            out.append(text)

    code = main(["backtest", "--trace", str(data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv"),
                 "--zones", "GB", "--job-duration", "2h", "--max-delay", "12h", "--arrival-every", "3h",
                 "--forecast", f"archive:{data_dir / 'traces/uk_gb_forecasts_2023-03-14_16.csv'}",
                 "--start", "2023-03-14T13:00:00Z", "--policy", "carbon-aware", "--format", "json"], Sink())
    assert code == 0
    data = json.loads("".join(out))
    assert list(data["policies"]) == ["run-now", "oracle", "carbon-aware"]
    assert data["forecast"] == "archive:uk_gb_forecasts_2023-03-14_16.csv"
    assert data["policies"]["carbon-aware"]["deadline_misses"] == 0


def test_progress_bar_only_on_a_terminal():
    """On a terminal stderr shows a progress bar; piped, stderr stays empty."""
    exe = Path(sys.executable).with_name("airflow-carbon")
    parent, child = pty.openpty()
    proc = subprocess.run([str(exe), "backtest", "--zones", "DE,GB", "--format", "json"], stdout=subprocess.PIPE,
                          stderr=child, timeout=120)
    os.close(child)
    drawn = b""
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(parent)
    assert proc.returncode == 0
    assert b"runs" in drawn and b"[#" in drawn
    json.loads(proc.stdout)  # the JSON on stdout is untouched by the bar
    piped = run_cli("backtest", "--zones", "DE,GB", "--format", "json")
    assert piped.stderr == ""


def test_plot_writes_a_png(tmp_path):
    target = tmp_path / "bt.png"
    proc = run_cli("backtest", "--zones", "DE,GB", "--plot", str(target))
    assert proc.returncode == 0, proc.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _bad(tmp_path: Path, body: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    return str(path)


HEADER = "timestamp_utc,zone,gco2_per_kwh\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zones", "DE,XX"], "unknown zone(s) XX"),
        (["--job-duration", "0h"], "--job-duration must be longer than zero"),
        (["--job-duration", "four hours"], "--job-duration 'four hours' is not a duration"),
        (["--max-delay=-2h"], "--max-delay '-2h' is negative"),
        (["--policy", "greedy"], "unknown policy 'greedy'"),
        (["--forecast", "psychic"], "forecast 'psychic' is not valid"),
        (["--trace", "/nonexistent.csv"], "cannot open trace file"),
        (["--home-zone", "FR"], "--home-zone FR is not one of --zones"),
        (["--start", "yesterday"], "argument --start"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, message):
    proc = run_cli("backtest", *args)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEADER + "2023-03-01T00:00:00Z,DE,1\n2023-03-01T01:00:00Z,DE,oops\n", "bad.csv:3: gco2_per_kwh (column 3) is not a number"),
        (HEADER + "2023-03-01T00:00:00Z,DE,1\n2023-03-01T00:00:00Z,DE,2\n", "bad.csv:3: duplicate timestamp"),
        (HEADER + "2023-03-01T00:00:00Z,DE,1\n2023-03-01T00:01:00Z,DE,2\n", "bad.csv:3: rows of zone DE"),
    ],
)
def test_malformed_csv_names_its_line(tmp_path, body, message):
    proc = run_cli("backtest", "--trace", _bad(tmp_path, body))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_traces_whose_periods_do_not_overlap(tmp_path, data_dir):
    other = _bad(tmp_path, HEADER + "2020-01-01T00:00:00Z,FR,1\n2020-01-01T01:00:00Z,FR,2\n")
    proc = run_cli("backtest", "--trace", other, "--trace", str(data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv"),
                   "--zones", "FR,GB")
    assert proc.returncode == 2
    assert "periods do not overlap" in proc.stderr and "Traceback" not in proc.stderr


def test_backtest_does_not_import_airflow():
    code = ("import sys; from airflow_carbon_provider.cli import main; import io; "
            "main(['backtest', '--zones', 'DE', '--policy', 'run-now'], io.StringIO()); "
            "bad = [m for m in ('airflow', 'requests', 'aiohttp', 'sqlalchemy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_capacities_and_jobs_per_arrival_in_json_and_table():
    args = ["backtest", "--zones", "DE,GB,CA-ON", "--home-zone", "DE", "--job-duration", "4h", "--max-delay", "12h",
            "--arrival-every", "2h", "--end", "2023-03-08T00:00:00Z", "--forecast", "perfect",
            "--capacity", "CA-ON=2", "--capacity", "GB=3", "--jobs-per-arrival", "4"]
    proc = run_cli(*args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.validate(data, BACKTEST_SCHEMA)
    assert data["capacities"] == {"CA-ON": 2, "GB": 3} and data["jobs_per_arrival"] == 4
    assert data["jobs"] % 4 == 0
    policies = data["policies"]
    assert list(policies) == list(backtest_policies())
    for name, figures in policies.items():
        assert figures["deadline_misses"] == 0, name
        assert isinstance(figures["capacity_overflows"], int), name
    for name in ("oracle", "carbon-aware", "greenest-now", "threshold"):
        assert policies[name]["peak_load"].get("CA-ON", 0) <= 2 and policies[name]["peak_load"].get("GB", 0) <= 3
        assert policies[name]["capacity_overflows"] == 0, name
    assert policies["carbon-aware-uncoordinated"]["peak_load"]["CA-ON"] > 2
    assert policies["carbon-aware-uncoordinated"]["capacity_overflows"] > 0
    table = run_cli(*args)
    assert table.returncode == 0, table.stderr
    assert "4 jobs per arrival; capacities CA-ON 2, GB 3 (jobs at once)" in table.stdout
    assert "overflows" in table.stdout and "CA-ON 2/2" in table.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--capacity", "FR=3"], "--capacity FR: not one of --zones (DE, GB)"),
    (["--capacity", "GB"], "argument --capacity: 'GB' is not ZONE=N"),
    (["--capacity", "GB=0"], "argument --capacity: 'GB=0' is not ZONE=N with N a whole number of jobs >= 1"),
    (["--capacity", "GB=2", "--capacity", "GB=3"], "--capacity GB is given twice"),
    (["--jobs-per-arrival", "0"], "argument --jobs-per-arrival: '0' is not a whole number of jobs >= 1"),
])
def test_capacity_flag_errors_are_one_clear_line(args, message):
    proc = run_cli("backtest", "--zones", "DE,GB", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, proc.stderr


def test_capacity_without_scipy_names_the_extra(tmp_path):
    """scipy hidden: the oracle under --capacity cannot run, and the error says how to install it."""
    (tmp_path / "scipy").mkdir()
    (tmp_path / "scipy" / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    exe = Path(sys.executable).with_name("airflow-carbon")
    proc = subprocess.run([str(exe), "backtest", "--zones", "DE,GB", "--capacity", "GB=2"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("airflow-carbon: error: --capacity needs scipy for the oracle; install it with: "
                                   "pip install 'airflow-carbon-provider[backtest]'")


def test_the_backtest_says_when_archived_forecasts_are_shorter_than_the_job(data_dir, tmp_path):
    """Issue 14 item 5: a 65-minute archive (WattTime's) planning 2-hour jobs used to say nothing."""
    rows = ["issued_at_utc,timestamp_utc,zone,gco2_per_kwh"]
    actuals = (data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv").read_text().splitlines()[1:]
    times = [line.split(",")[0] for line in actuals]
    for i, issued in enumerate(times[:-3]):  # every half hour, a forecast of the next hour only
        rows += [f"{issued},{t},GB,{100 + k}" for k, t in enumerate(times[i:i + 2])]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(rows) + "\n")
    args = ["backtest", "--trace", str(data_dir / "traces/uk_gb_actuals_2023-03-14_18.csv"), "--zones", "GB",
            "--max-delay", "6h", "--arrival-every", "6h", "--forecast", f"archive:{short}", "--format", "json",
            "--policy", "carbon-aware"]
    proc = run_cli(*args, "--job-duration", "2h")
    assert proc.returncode == 0, proc.stderr
    note = ("the archived forecasts reach 60 min ahead (median), less than --job-duration 120 min: every run's "
            "later part is planned on measured values")
    assert note in proc.stderr and note in json.loads(proc.stdout)["notes"][0]
    proc = run_cli(*args, "--job-duration", "30m")
    assert proc.returncode == 0 and "archived forecasts reach" not in proc.stderr
    assert "notes" not in json.loads(proc.stdout)
