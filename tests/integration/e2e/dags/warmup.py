"""A DAG that does nothing: the e2e tests time one run of it to size how far ahead the replayed moment goes."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

with DAG(dag_id="e2e_warmup", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task
    def noop() -> str:
        """Return at once: the run's duration is all set-up."""
        return "ok"

    noop()
