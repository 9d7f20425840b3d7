"""Provider metadata that Airflow discovers through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_carbon_provider import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the schema Airflow's ProvidersManager reads."""
    return {
        "package-name": "airflow-carbon-provider",
        "name": "Carbon-aware scheduling",
        "description": (
            "Run Kubernetes and batch tasks on the greenest configured cluster, in the "
            "lowest-carbon window that still meets their deadline."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Carbon-aware scheduling",
                "external-doc-url": "https://github.com/airflow-carbon-provider/airflow-carbon-provider",
                "tags": ["software"],
            }
        ],
    }
