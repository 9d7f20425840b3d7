"""Gate any task, not only pods, on the low-carbon window: here a Python embedding refresh."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from airflow_carbon_provider.sensors.carbon_window import CarbonWindowSensor

with DAG(
    dag_id="example_carbon_window_sensor",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"expected_duration": "2h", "max_delay": "8h"},
    tags=["example", "carbon-aware"],
) as dag:
    # [START howto_sensor_carbon_window]
    window = CarbonWindowSensor(
        task_id="wait_for_low_carbon",
        zone="GB",
        expected_duration="{{ params.expected_duration }}",
        max_delay="{{ params.max_delay }}",
        min_saving_pct=5,
    )

    @task
    def refresh_embeddings(decision: dict) -> str:
        """Do the flexible work; the sensor's decision says when and at what intensity."""
        return f"refreshed at {decision['actual_start']} ({decision['expected_intensity']} gCO2eq/kWh expected)"

    refresh_embeddings(window.output)
    # [END howto_sensor_carbon_window]
