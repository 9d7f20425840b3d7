"""``airflow-carbon report``: table, JSON (schema), CSV (header), PNG, filters and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest

from airflow_carbon_provider.cli import main
from airflow_carbon_provider.ledger import record_decision, record_outcome
from airflow_carbon_provider.ledger.report import CSV_FIELDS
from airflow_carbon_provider.ledger.store import RunKey
from tests.unit.ledger.conftest import closed_port, sample_decision

UTC = timezone.utc
DESIGN_KEYS = ["dag_id", "task_id", "run_id", "cluster", "zone", "actual_start", "emissions_g",
               "baseline_emissions_g", "saving_g", "deadline_met"]
VERDICT = {"type": "object", "required": ["name", "target", "actual", "met", "runs"],
           "properties": {"met": {"type": ["boolean", "null"]}}}
SCHEMA = {
    "type": "object",
    "required": ["rows", "groups", "objectives", "objectives_met", "totals", "group_by", "runs", "finished"],
    "properties": {
        "rows": {"type": "array", "items": {"type": "object", "required": DESIGN_KEYS,
                                            "properties": {"deadline_met": {"type": ["boolean", "null"]},
                                                           "emissions_g": {"type": ["number", "null"]}}}},
        "groups": {"type": "array", "items": {"type": "object",
                                              "required": ["group", "signal_kind", "basis", "runs", "emissions_g",
                                                           "baseline_emissions_g", "saving_g", "objectives",
                                                           "objectives_met"],
                                              "properties": {"objectives": {"type": "array", "items": VERDICT}}}},
        "objectives": {"type": "array", "items": VERDICT},
        "totals": {"type": "array", "items": {"type": "object", "required": ["signal_kind", "basis", "runs",
                                                                             "emissions_g", "saving_g"]}},
    },
}


def no_history(_conn_id):
    raise RuntimeError("offline")


@pytest.fixture
def filled(ledger, monkeypatch):
    """Three finished runs over two days and two DAGs, one still waiting (forecast intensities)."""
    for var in ("AIRFLOW__CARBON__SLO_ON_TIME_PCT", "AIRFLOW__CARBON__SLO_REDUCTION_PCT",
                "AIRFLOW__CARBON__SLO_LOW_CARBON_PCT", "AIRFLOW__CARBON__SLO_LOW_CARBON_BELOW"):
        monkeypatch.delenv(var, raising=False)
    day2 = {"arrival": "2026-11-28T00:00:00Z", "actual_start": "2026-11-28T01:00:00Z",
            "latest_start": "2026-11-28T00:30:00Z"}  # started late
    runs = [
        (RunKey("train", "r1", "fine_tune"), sample_decision(signal="average"), datetime(2026, 11, 27, 4, tzinfo=UTC)),
        (RunKey("train", "r2", "fine_tune"), sample_decision(**day2, cluster="k8s_de", chosen_cluster="k8s_de",
                                                             zone="DE", expected_intensity=400.0, signal="average"),
         datetime(2026, 11, 28, 2, tzinfo=UTC)),
        (RunKey("embed", "r1", "refresh"), sample_decision(signal="average"), datetime(2026, 11, 27, 3, tzinfo=UTC)),
    ]
    for key, decision, end in runs:
        record_outcome(decision, key, actual_end=end, ledger=ledger, hook_for=no_history, emit_metrics=False)
    record_decision(sample_decision(phase="waiting", actual_start=None, cluster=None, signal="average"),
                    RunKey("embed", "r2", "refresh"), ledger=ledger, emit_metrics=False)
    return ledger


def run(argv, capsys):
    out = io.StringIO()
    status = main(argv, out)
    return status, out.getvalue(), capsys.readouterr().err


def test_json_has_rows_groups_and_objectives(filled, capsys):
    status, out, _ = run(["report", "--ledger-url", filled.url, "--format", "json", "--slo-reduction", "60",
                          "--slo-basis", "forecast"], capsys)  # the fixture's runs have no history
    assert status == 0
    report = json.loads(out)
    jsonschema.validate(report, SCHEMA)
    assert len(report["rows"]) == 4
    waiting = next(r for r in report["rows"] if r["run_id"] == "r2" and r["dag_id"] == "embed")
    assert waiting["state"] == "waiting" and waiting["emissions_g"] is None
    assert (waiting["signal_kind"], waiting["basis"]) == ("average", "unknown")
    groups = {g["group"]: g for g in report["groups"] if g["basis"] == "forecast"}
    assert set(groups) == {"embed", "train"}
    assert [(t["signal_kind"], t["basis"], t["runs"]) for t in report["totals"]] == [
        ("average", "forecast", 3), ("average", "unknown", 1)]
    assert report["totals"][1]["emissions_g"] is None  # a waiting run claims no figures, not 0 g
    # train: r1 2 h at 200 W, 40 g vs 160 g; r2 1 h at home, 80 g vs 80 g, started late: 50 % less
    assert groups["train"]["emissions_g"] == 120.0 and groups["train"]["baseline_emissions_g"] == 240.0
    verdicts = {v["name"]: v for v in groups["train"]["objectives"]}
    assert verdicts["on_time"]["met"] is False and verdicts["reduction"]["actual"] == 50.0
    assert verdicts["reduction"]["met"] is False
    embed = {v["name"]: v["met"] for v in groups["embed"]["objectives"]}
    assert embed == {"on_time": True, "reduction": True}
    assert report["objectives_met"] is False


def test_csv_rows_carry_the_group_verdicts(filled, capsys):
    status, out, _ = run(["report", "--ledger-url", filled.url, "--format", "csv", "--group-by", "day"], capsys)
    assert status == 0
    reader = csv.DictReader(io.StringIO(out))
    assert tuple(reader.fieldnames or ()) == CSV_FIELDS
    assert reader.fieldnames[:3] == ["dag_id", "task_id", "run_id"] and set(DESIGN_KEYS) <= set(CSV_FIELDS)
    rows = list(reader)
    late = next(r for r in rows if r["run_id"] == "r2" and r["dag_id"] == "train")
    assert late["group"] == "2026-11-28 [average/forecast]" and late["group_objectives"] == "on_time=MISSED"
    assert (late["signal_kind"], late["basis"]) == ("average", "forecast")
    assert late["deadline_met"] == "False" and late["intensity_source"] == "forecast"


def test_table_marks_objectives_and_filters_apply(filled, capsys):
    status, out, _ = run(["report", "--ledger-url", filled.url, "--dag-id", "train", "--group-by", "cluster",
                          "--slo-on-time", "50", "--slo-low-carbon", "40", "--slo-low-carbon-below", "200",
                          "--slo-basis", "forecast"], capsys)
    assert status == 0
    assert "k8s_gb" in out and "k8s_de" in out and "embed" not in out
    assert "[MET] at least 50 % of runs started by their latest start: actual 50.0 %" in out
    assert ("[MET] at least 40 % of compute-hours below 200 g/kWh (average, forecast runs only): actual 66.7 %"
            in out)
    status, out, _ = run(["report", "--ledger-url", filled.url, "--format", "json", "--since", "2026-11-28",
                          "--cluster", "k8s_de"], capsys)
    assert [r["run_id"] for r in json.loads(out)["rows"]] == ["r2"]


def test_plot(filled, tmp_path, capsys):
    png = tmp_path / "report.png"
    status, out, _ = run(["report", "--ledger-url", filled.url, "--plot", str(png), "--slo-reduction", "10"], capsys)
    assert status == 0 and f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["--group-by", "week"], "invalid choice: 'week'"),
    (["--since", "last tuesday"], "is not an ISO date"),
    (["--since", "2026-11-28", "--until", "2026-11-27"], "is not before --until"),
    (["--slo-reduction", "150"], "between 0 and 100"),
    (["--slo-low-carbon", "50"], "both a share"),
])  # fmt: skip
def test_bad_input_is_one_line_exit_2(ledger, capsys, argv, message):
    try:
        status, _, err = run(["report", "--ledger-url", ledger.url, *argv], capsys)
    except SystemExit as exc:  # argparse's own errors
        status, err = exc.code, capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1


def test_unreachable_ledger_masks_the_password(capsys):
    url = f"postgresql://carbon:hunter2pw@127.0.0.1:{closed_port()}/ledger"
    status, _, err = run(["report", "--ledger-url", url], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "hunter2pw" not in err and "carbon:***@127.0.0.1" in err and "cannot read the ledger" in err


def test_report_replays_the_spool_first(ledger, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(ledger.spool.path))
    ledger.migrate()  # the ledger exists (a report never creates one)
    record = {"kind": "decision", "key": RunKey("late", "r1", "t").as_dict(),
              "recorded_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "data": sample_decision()}
    ledger.spool.append(record)
    status, out, _ = run(["report", "--ledger-url", ledger.url, "--format", "json"], capsys)
    assert status == 0 and [r["dag_id"] for r in json.loads(out)["rows"]] == ["late"]
    assert ledger.spool.pending() == 0


def test_no_ledger_yet_names_the_spooled_records(ledger, capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_SPOOL", str(ledger.spool.path))
    ledger.spool.append({"kind": "decision", "key": RunKey("late", "r1", "t").as_dict(),
                         "recorded_at": datetime.now(UTC).isoformat(), "data": sample_decision()})
    status, _, err = run(["report", "--ledger-url", ledger.url], capsys)
    assert status == 2 and err.count("\n") == 1
    assert f"no ledger at {ledger.sqlite_file()}" in err and "1 record(s) wait in the spool" in err
    assert ledger.spool.pending() == 1 and not ledger.sqlite_file().exists()


@pytest.mark.parametrize("secret_part", [
    "carbon@127.0.0.1:{port}/ledger?password=hunter2pw",
    "carbon:hunter2pw@127.0.0.1:{port}/ledger?sslmode=disable&sslpassword=hunter2pw",
])  # fmt: skip
def test_query_string_secrets_are_masked_in_cli_errors(capsys, secret_part):
    url = "postgresql://" + secret_part.format(port=closed_port())
    status, _, err = run(["report", "--ledger-url", url], capsys)
    assert status == 2 and err.count("\n") == 1 and "cannot read the ledger" in err
    assert "hunter2pw" not in err and "***" in err


def test_a_password_with_an_unencoded_at_sign_is_not_shown_by_the_drivers_error(capsys):
    """The driver reads 'pa@ssw0rd' as password 'pa' and host 'ssw0rd@127.0.0.1', and says so."""
    status, _, err = run(["report", "--ledger-url", "postgresql://carbon:pa@ssw0rd@127.0.0.1:1/ledger"], capsys)
    assert status == 2 and err.count("\n") == 1 and "cannot read the ledger" in err
    assert "ssw0rd" not in err and "carbon:***@127.0.0.1" in err


class _ConstantHistory:
    """Realised history: GB at 212 g/kWh, DE at 400 g/kWh, every hour."""

    VALUES = {"GB": 212.0, "DE": 400.0}

    def get_history(self, zone, start, end):
        from airflow_carbon_provider.core.signals import IntensitySeries

        first = start.replace(minute=0, second=0, microsecond=0)
        points = [(first + timedelta(hours=i), self.VALUES[zone]) for i in range(int((end - first) / timedelta(hours=1)) + 2)]
        return IntensitySeries.from_points(zone, "average", points, resolution=timedelta(hours=1), source="stub")


def _short_pod(ledger, task_id: str = "tiny") -> None:
    """Record a 2 W pod run for 5 s, moved from DE (400 g/kWh) to GB (212 g/kWh): 47 % saved, under 1 mg."""
    start = datetime(2026, 11, 27, 2, tzinfo=UTC)
    decision = sample_decision(power_watts=2.0, arrival=start.isoformat(), actual_start=start.isoformat(),
                               latest_start=(start + timedelta(hours=1)).isoformat())
    record_outcome(decision, RunKey("short", "r1", task_id), actual_end=start + timedelta(seconds=5), ledger=ledger,
                   hook_for=lambda _c: _ConstantHistory(), emit_metrics=False)


def test_the_saving_of_a_short_pod_is_not_rounded_away(ledger, capsys, monkeypatch):
    """Grams rounded to 0.001 once made a 47 % saving read 0 % (0.001 g emitted, 0.001 g baseline)."""
    monkeypatch.delenv("AIRFLOW__CARBON__SLO_REDUCTION_PCT", raising=False)
    _short_pod(ledger)
    status, out, _ = run(["report", "--ledger-url", ledger.url, "--format", "json", "--slo-reduction", "40"], capsys)
    assert status == 0
    report = json.loads(out)
    [row] = report["rows"]
    energy = 2.0 * 5 / 3600 / 1000
    assert row["emissions_g"] == pytest.approx(energy * 212.0, rel=1e-9)
    assert row["baseline_emissions_g"] == pytest.approx(energy * 400.0, rel=1e-9)
    assert row["saving_g"] == pytest.approx(energy * 188.0, rel=1e-9)
    assert row["saving_pct"] == 47.0
    [totals] = report["totals"]
    assert (totals["signal_kind"], totals["basis"]) == ("average", "realised")
    assert report["groups"][0]["saving_pct"] == 47.0 and totals["saving_pct"] == 47.0
    assert totals["saving_g"] == pytest.approx(energy * 188.0, rel=1e-9)
    [verdict] = [v for v in report["objectives"] if v["name"] == "reduction"]
    assert verdict["actual"] == 47.0 and verdict["met"] is True
    status, out, _ = run(["report", "--ledger-url", ledger.url], capsys)
    [total] = [line for line in out.splitlines() if line.startswith("TOTAL")]
    assert "average/realised" in total and "47.0" in total


def test_a_row_recorded_with_rounded_grams_takes_its_saving_from_the_intensities(ledger, capsys):
    """Rows written before grams were kept unrounded still show the saving their intensities support."""
    _short_pod(ledger)
    row = ledger.read("outcome")[0]
    details = dict(row["details"]) | {"emissions_g": 0.001, "baseline_emissions_g": 0.001, "saving_g": 0.0}
    ledger.write("outcome", {k: row[k] for k in ("dag_id", "run_id", "task_id", "map_index", "try_number")},
                 details, row["recorded_at"] + timedelta(seconds=1))
    status, out, _ = run(["report", "--ledger-url", ledger.url, "--format", "json"], capsys)
    assert status == 0 and json.loads(out)["rows"][0]["saving_pct"] == 47.0


def test_the_plot_keeps_legend_verdicts_and_summary_apart(filled):
    """Issue 14 item 6: the legend used to sit on the per-group verdicts."""
    import matplotlib.pyplot as plt

    from airflow_carbon_provider.ledger.report import draw_report, run_report
    from airflow_carbon_provider.ledger.slo import Objectives

    report = run_report(ledger_url=filled.url, group_by="dag", objectives=Objectives(reduction_pct=10.0))
    fig = draw_report(report)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        legend = ax.get_legend().get_window_extent(renderer)
        verdicts = [t.get_window_extent(renderer) for t in ax.texts]
        summary = [t.get_window_extent(renderer) for t in fig.texts]
        ticks = ax.get_tightbbox(renderer)
        assert verdicts and summary
        for box in verdicts:
            assert not legend.overlaps(box) and ax.bbox.contains(box.x0, box.y1 - 1)  # inside the axes, under the legend
        for box in summary:
            assert not box.overlaps(ticks) and not box.overlaps(legend)
    finally:
        plt.close(fig)

