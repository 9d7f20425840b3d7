"""The Carbon page's HTML builders, without a server: what users and attackers can put in a page."""

from __future__ import annotations

from airflow_carbon_provider.plugins.charts import intensity_chart_svg
from airflow_carbon_provider.plugins.views import error_page, task_page

HOSTILE = '<script>alert("x")</script>'


def _record(**decision):
    return {"dag_id": "train", "run_id": "manual__1", "task_id": "fine_tune", "map_index": -1, "found": True,
            "try_number": 2, "tries": [1, 2], "ledger": "sqlite:///l.db",
            "decision": {"chosen_cluster": "k8s_gb", "zone": "GB", "expected_intensity": 101.23456, **decision},
            "outcome": {"emissions_g": 1.5, "saving_g": 6.0, "saving_pct": 80.0, "deadline_met": True,
                        "notes": [HOSTILE]}}


def test_every_recorded_string_is_escaped():
    """A decision's reason, a zone or a note comes from the ledger; it never becomes markup."""
    page = task_page({**_record(reason=HOSTILE, zone=HOSTILE), "dag_id": HOSTILE, "run_id": HOSTILE})
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_the_task_page_shows_the_decision_outcome_and_tries():
    page = task_page(_record())
    assert 'data-field="chosen_cluster">k8s_gb<' in page and "101.235" in page  # rounded for display only
    assert "try 2 of tries 1, 2" in page and 'data-slo="met"' in page


def test_a_task_without_a_record_and_an_unreadable_ledger_say_so():
    assert 'id="carbon-task-none"' in task_page({**_record(), "found": False})
    page = task_page(_record(), ledger_error=f"OperationalError: {HOSTILE}")
    assert 'id="carbon-ledger-error"' in page and "<script>" not in page


def test_an_auth_error_page_points_to_airflows_login():
    page = error_page(403, HOSTILE)
    assert "Log in to Airflow first" in page and "<script>" not in page
    assert "Log in" not in error_page(503, "ledger down")


def test_the_chart_without_forecasts_is_a_sentence_not_an_empty_svg():
    assert 'id="carbon-intensity-chart-empty"' in intensity_chart_svg([{"status": "error", "error": "503"}])
    svg = intensity_chart_svg([{"conn_id": "k8s_gb", "zone": HOSTILE, "status": "ok",
                                "current": {"start": "2023-03-15T22:00:00Z", "value": 100.0},
                                "forecast": [{"start": "2023-03-15T22:00:00Z", "end": "2023-03-15T23:00:00Z",
                                              "value": 100.0},
                                             {"start": "2023-03-15T23:00:00Z", "end": "2023-03-16T00:00:00Z",
                                              "value": 80.0}]}])
    assert svg.startswith("<svg") and "<script>" not in svg


def test_the_forecast_skill_section_escapes_and_says_when_empty():
    from airflow_carbon_provider.plugins.views import forecast_skill_section

    row = {"source": HOSTILE, "zone": "DE", "signal_kind": "average", "lead": "0-1h", "n": 5, "mape_pct": 12.345,
           "bias_pct": -3.0, "mae_g": 20.0}
    page = forecast_skill_section({"since": "2026-11-24T00:00:00Z", "forecasts": 9, "rows": [row]})
    assert "<script>" not in page and 'id="carbon-forecast-skill"' in page and "12.3 %" in page and "-3.0 %" in page
    empty = forecast_skill_section({"since": "2026-11-24T00:00:00Z", "forecasts": 0, "rows": []})
    assert 'id="carbon-forecast-skill-empty"' in empty
    assert "cannot be read" in forecast_skill_section(None)
