"""The store: migrations, idempotent upserts, newest-wins, no secrets."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from airflow_carbon_provider.ledger import record_decision
from airflow_carbon_provider.ledger.config import mask_url, resolve_ledger_url
from airflow_carbon_provider.ledger.store import Ledger, RunKey
from airflow_carbon_provider.scheduling import Decision
from tests.unit.ledger.conftest import KEY, sample_decision

UTC = timezone.utc


def test_first_use_migrates_to_head(ledger):
    ledger.migrate()
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"carbon_decisions", "carbon_outcomes", "carbon_ledger_alembic_version"} <= tables
    assert "alembic_version" not in tables  # never clashes with Airflow's own history
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("carbon_outcomes")}
    assert {"emissions_g", "baseline_emissions_g", "saving_g", "delay_s", "deadline_met", "intensity_source",
            "fallback_used", "energy_kwh", "power_watts", "realised_intensity"} <= columns


def test_same_key_twice_is_one_row_with_the_newest_data(ledger):
    assert record_decision(sample_decision(phase="waiting"), KEY, ledger=ledger, emit_metrics=False)
    assert record_decision(sample_decision(phase="running"), KEY, ledger=ledger, emit_metrics=False)
    assert record_decision(sample_decision(phase="running"), KEY, ledger=ledger, emit_metrics=False)
    rows = ledger.read("decision")
    assert len(rows) == 1 and rows[0]["phase"] == "running"
    assert rows[0]["planned_start"] == datetime(2026, 11, 27, 2, tzinfo=UTC)
    other = RunKey(KEY.dag_id, KEY.run_id, KEY.task_id, KEY.map_index, try_number=2)
    record_decision(sample_decision(), other, ledger=ledger, emit_metrics=False)
    assert len(ledger.read("decision")) == 2


def test_an_older_record_never_replaces_a_newer_one(ledger):
    now = datetime.now(UTC)
    key = KEY.as_dict()
    ledger.write("decision", key, sample_decision(phase="running"), now)
    ledger.write("decision", key, sample_decision(phase="waiting"), now - timedelta(minutes=5))  # a late replay
    assert ledger.read("decision")[0]["phase"] == "running"


def test_a_clean_decision_is_stored_as_its_typed_record(ledger):
    """The stored details are the record's own JSON; the columns read the record's fields."""
    decision = sample_decision(reason="moved to k8s_gb: 75 % cleaner", errors={"k8s_fr": "CarbonServerError 503"})
    record_decision(decision, KEY, ledger=ledger, emit_metrics=False)
    row = ledger.read("decision")[0]
    record = Decision.from_xcom(decision)
    assert row["details"] == record.to_xcom() and Decision.from_xcom(row["details"]) == record
    figures = record.figures()
    assert (row["chosen_cluster"], row["zone"], row["home_zone"]) == ("k8s_gb", "GB", "DE")
    assert row["expected_emissions_g"] == pytest.approx(figures.emissions_g)
    assert row["expected_saving_g"] == pytest.approx(figures.saving_g) and row["expected_saving_pct"] == 75.0


def test_secret_looking_keys_are_dropped_and_values_masked(ledger, caplog):
    decision = sample_decision(
        api_key="em-abc123", auth={"password": "pw1", "user": "me"}, access_token="tok",
        errors={"k8s_fr": "401 for https://api.example/v3?token=SEKRET1&zone=FR"},
        candidates=[{"cluster": "k8s_de", "zone": "DE", "client_secret": "zzz"}],
        reason="header was Bearer abcdefghijkl",
    )
    record_decision(decision, KEY, ledger=ledger, emit_metrics=False)
    stored = ledger.read("decision")[0]["details"]
    text = repr(stored) + caplog.text
    for secret in ("em-abc123", "pw1", "tok'", "SEKRET1", "zzz", "abcdefghijkl"):
        assert secret not in text
    # Keys the typed record does not know never reach the ledger; strings it keeps are masked.
    assert "api_key" not in stored and "access_token" not in stored and "auth" not in stored
    assert stored["candidates"][0] == {"cluster": "k8s_de", "key": "k8s_de", "conn_id": "k8s_de", "zone": "DE"}
    assert "token=***" in stored["errors"]["k8s_fr"] and "Bearer ***" in stored["reason"]


def test_concurrent_writers_on_one_key_leave_one_row(ledger):
    ledger.migrate()

    def write(i: int) -> None:
        for j in range(5):
            record_decision(sample_decision(reason=f"writer {i} round {j}"), KEY, ledger=ledger, emit_metrics=False)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ledger.read("decision")) == 1
    assert not ledger.spool.pending()


def test_where_the_ledger_lives(monkeypatch, tmp_path):
    for name in ("AIRFLOW_CARBON_LEDGER_URL", "AIRFLOW_CARBON_LEDGER_CONN_ID", "AIRFLOW__CARBON__LEDGER_CONN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert resolve_ledger_url() == f"sqlite:///{tmp_path / 'carbon_ledger.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_MY_LEDGER", "postgres://carbon:pw%40x@db.internal:5432/ledger")
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_CONN_ID", "my_ledger")
    url = Ledger().url
    assert url.startswith("postgresql+psycopg") and url.endswith("@db.internal:5432/ledger")
    assert "pw" not in mask_url(url)
    monkeypatch.setenv("AIRFLOW_CARBON_LEDGER_URL", "sqlite:///x.db")
    assert resolve_ledger_url() == "sqlite:///x.db"
    assert resolve_ledger_url("sqlite:///y.db") == "sqlite:///y.db"


@pytest.mark.parametrize("url, secrets, kept", [
    ("postgresql://carbon:hunter2pw@db:5432/ledger", ["hunter2pw"], "postgresql://carbon:***@db:5432/ledger"),
    ("postgresql://carbon@db/ledger?password=hunter2pw&sslmode=require", ["hunter2pw"],
     "postgresql://carbon@db/ledger?password=***&sslmode=require"),
    ("postgresql+psycopg2://carbon:pw1secret@db/ledger?sslpassword=keypass9&sslmode=verify-full&token=tok3n",
     ["pw1secret", "keypass9", "tok3n"],
     "postgresql+psycopg2://carbon:***@db/ledger?sslpassword=***&sslmode=verify-full&token=***"),
    ("postgresql://carbon:p%40ss%2Fw0rd@db/ledger", ["p%40ss", "w0rd"], "postgresql://carbon:***@db/ledger"),
    # an unencoded '@' or '?' in the password: everything up to the host's '@' is the password
    ("postgresql://carbon:p@ssw0rd@db/ledger", ["ssw0rd"], "postgresql://carbon:***@db/ledger"),
    ("postgresql://carbon:p?ssw0rd@db/ledger", ["ssw0rd"], "postgresql://carbon:***@db/ledger"),
    # an Airflow connection's URI carries nested extras JSON-encoded in __extra__
    ("postgresql://carbon@db/ledger?__extra__=%7B%22sslpassword%22%3A+%22keypass9%22%7D", ["keypass9"],
     "postgresql://carbon@db/ledger?__extra__=***"),
    ("sqlite:////var/lib/airflow/carbon_ledger.db", [], "sqlite:////var/lib/airflow/carbon_ledger.db"),
    ("sqlite:////var/lib/a:b@c/carbon_ledger.db", [], "sqlite:////var/lib/a:b@c/carbon_ledger.db"),
    ("not a url, password=hunter2pw", ["hunter2pw"], None),
])  # fmt: skip
def test_mask_url_hides_the_password_and_query_secrets(url, secrets, kept):
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked
    if kept is not None:
        assert masked == kept


def test_the_ledger_password_is_registered_with_airflows_secrets_masker(tmp_path):
    import secrets

    from airflow.sdk._shared.secrets_masker import redact

    password, key_password = f"pw-{secrets.token_hex(8)}", f"kp-{secrets.token_hex(8)}"
    led = Ledger(f"postgresql://carbon:{password}@127.0.0.1:1/ledger?sslpassword={key_password}",
                 spool_path=tmp_path / "spool.jsonl")
    assert redact(f"connect with {password} and {key_password}") == "connect with *** and ***"
    led.dispose()
