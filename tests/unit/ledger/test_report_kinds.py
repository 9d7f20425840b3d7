"""Green Mirage (arXiv 2402.03550): the report never adds average to marginal, or forecast to realised."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from airflow_carbon_provider.ledger.realised import realised_outcome
from airflow_carbon_provider.ledger.report import (
    build_report,
    collect_rows,
    format_csv,
    format_table,
    plot_series,
)
from airflow_carbon_provider.ledger.slo import Objectives, evaluate
from airflow_carbon_provider.ledger.store import RunKey
from tests.unit.ledger.conftest import sample_decision

UTC = timezone.utc
END = datetime(2026, 11, 27, 4, tzinfo=UTC)
# (task, signal_kind, basis, intensity_source, emitted g, baseline g); 200 W x 2 h = 0.4 kWh
RUNS = [
    ("a", "average", "realised", "history", 40.0, 160.0),
    ("b", "marginal", "realised", "history", 300.0, 600.0),
    ("c", "average", "forecast", "forecast", 50.0, 100.0),
]
MIXED_SUMS = {390.0, 860.0, 470.0, 90.0, 260.0, 340.0, 760.0}  # any sum across two or three groups


def offline(_conn_id):
    raise RuntimeError("offline")


def _outcome(kind: str, basis: str, source: str, emitted: float, baseline: float) -> dict:
    out = realised_outcome(sample_decision(signal=kind), END, hook_for=offline)
    out.update(signal_kind=kind, basis=basis, intensity_source=source, emissions_g=emitted,
               baseline_emissions_g=baseline, saving_g=baseline - emitted, realised_intensity=emitted / 0.4,
               baseline_intensity=baseline / 0.4)
    return out


@pytest.fixture
def mixed(ledger):
    """One DAG with an average+realised, a marginal+realised and an average+forecast run."""
    for task, kind, basis, source, emitted, baseline in RUNS:
        key = RunKey("train", "r1", task)
        ledger.write("decision", key.as_dict(), sample_decision(signal=kind), datetime.now(UTC))
        ledger.write("outcome", key.as_dict(), _outcome(kind, basis, source, emitted, baseline), datetime.now(UTC))
    return ledger


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, float):
        yield value


def test_three_kinds_give_three_labelled_totals_and_no_sum(mixed):
    report = build_report(collect_rows(mixed), group_by="dag")
    totals = [(t["signal_kind"], t["basis"], t["emissions_g"], t["baseline_emissions_g"]) for t in report["totals"]]
    assert totals == [("average", "realised", 40.0, 160.0), ("average", "forecast", 50.0, 100.0),
                      ("marginal", "realised", 300.0, 600.0)]
    groups = [(g["group"], g["signal_kind"], g["basis"], g["saving_g"]) for g in report["groups"]]
    assert groups == [("train", "average", "realised", 120.0), ("train", "average", "forecast", 50.0),
                      ("train", "marginal", "realised", 300.0)]
    assert not MIXED_SUMS & set(_numbers(json.loads(json.dumps(report))))
    assert (report["runs"], report["finished"]) == (3, 3)  # counts of runs, not carbon figures


def test_table_prints_one_labelled_total_per_kind_and_basis(mixed):
    text = format_table(build_report(collect_rows(mixed), group_by="dag"))
    totals = [line for line in text.splitlines() if line.startswith("TOTAL")]
    assert [line.split()[1] for line in totals] == ["average/realised", "average/forecast", "marginal/realised"]
    assert "390.0" not in text and "860.0" not in text
    assert "train" in text and "marginal/realised" in text


def test_csv_rows_carry_kind_and_basis_and_their_group(mixed):
    rows = list(csv.DictReader(io.StringIO(format_csv(build_report(collect_rows(mixed), group_by="dag")))))
    assert [(r["task_id"], r["signal_kind"], r["basis"], r["group"]) for r in rows] == [
        ("a", "average", "realised", "train [average/realised]"),
        ("b", "marginal", "realised", "train [marginal/realised]"),
        ("c", "average", "forecast", "train [average/forecast]"),
    ]


def test_plot_labels_every_series_by_kind_and_basis(mixed, tmp_path):
    pytest.importorskip("matplotlib")
    report = build_report(collect_rows(mixed), group_by="dag")
    labels, _base, _actual = plot_series(report)
    assert labels == ["train\naverage/realised", "train\naverage/forecast", "train\nmarginal/realised"]
    from airflow_carbon_provider.ledger.report import plot_report

    plot_report(report, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_reduction_objective_is_on_average_realised_by_default_and_says_so(mixed):
    rows = collect_rows(mixed)
    (verdict,) = evaluate(rows, Objectives(on_time_pct=None, reduction_pct=50))
    assert (verdict["signal_kind"], verdict["basis"], verdict["runs"], verdict["actual"]) == (
        "average", "realised", 1, 75.0)
    assert "average, realised runs only" in verdict["description"]


def test_reduction_objective_on_the_group_it_names(mixed):
    rows = collect_rows(mixed)
    (verdict,) = evaluate(rows, Objectives(on_time_pct=None, reduction_pct=50, signal_kind="marginal"))
    assert (verdict["runs"], verdict["actual"], verdict["signal_kind"]) == (1, 50.0, "marginal")
    (verdict,) = evaluate(rows, Objectives(on_time_pct=None, reduction_pct=50, basis="forecast"))
    assert (verdict["runs"], verdict["actual"], verdict["basis"]) == (1, 50.0, "forecast")


def test_low_carbon_objective_compares_one_kind_with_its_threshold(mixed):
    rows = collect_rows(mixed)
    (verdict,) = evaluate(rows, Objectives(on_time_pct=None, low_carbon_pct=50, low_carbon_below=500))
    # only run a (average, realised, 100 g/kWh): run b's 750 g/kWh marginal rate is another quantity
    assert (verdict["runs"], verdict["actual"]) == (1, 100.0)


def test_objective_group_is_validated():
    from airflow_carbon_provider.ledger.errors import ReportError

    with pytest.raises(ReportError, match="signal_kind"):
        Objectives(signal_kind="both")
    with pytest.raises(ReportError, match="basis"):
        Objectives(basis="mixed")
    assert Objectives.from_config(lambda key: {"slo_signal_kind": "marginal", "slo_basis": "forecast"}.get(key)) \
        == Objectives(signal_kind="marginal", basis="forecast")


def test_each_total_has_the_verdicts_of_its_own_runs(mixed):
    report = build_report(collect_rows(mixed), group_by="dag",
                          objectives=Objectives(on_time_pct=None, reduction_pct=60))
    met = {(t["signal_kind"], t["basis"]): t["objectives_met"] for t in report["totals"]}
    # 75 % on average/realised; the other totals hold no run of the group the objective names
    assert met == {("average", "realised"): True, ("average", "forecast"): None, ("marginal", "realised"): None}
