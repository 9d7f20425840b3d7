"""Provider metadata that Airflow discovers through the ``apache_airflow_provider`` entry point.

Generated from the hook classes by ``python -m airflow_carbon_provider.hooks._provider_info``:
do not edit by hand. Airflow 3.2+ builds the connection forms from "conn-fields" and
"ui-field-behaviour" and skips the hooks' form methods; generating both from the same
declarations keeps them equal.
"""

from __future__ import annotations

from typing import Any

from airflow_carbon_provider import PREVIOUS_VERSIONS, __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata in the schema Airflow's ProvidersManager reads."""
    return {
        "package-name": "airflow-carbon-provider",
        "name": "Carbon-aware scheduling",
        "description": "Run Kubernetes and batch tasks on the greenest configured cluster, in the lowest-carbon window that still meets their deadline.",
        "versions": [__version__, *PREVIOUS_VERSIONS],
        "integrations": [
            {
                "integration-name": "Carbon-aware scheduling",
                "external-doc-url": "https://github.com/airflow-carbon-provider/airflow-carbon-provider",
                "tags": [
                    "software",
                ],
            },
        ],
        "operators": [
            {
                "integration-name": "Carbon-aware scheduling",
                "python-modules": [
                    "airflow_carbon_provider.operators.carbon_aware_pod",
                ],
            },
        ],
        "sensors": [
            {
                "integration-name": "Carbon-aware scheduling",
                "python-modules": [
                    "airflow_carbon_provider.sensors.carbon_window",
                ],
            },
        ],
        "triggers": [
            {
                "integration-name": "Carbon-aware scheduling",
                "python-modules": [
                    "airflow_carbon_provider.triggers.carbon_window",
                ],
            },
        ],
        "extra-links": [
            "airflow_carbon_provider.links.carbon.CarbonDecisionLink",
        ],
        "hooks": [
            {
                "integration-name": "Carbon-aware scheduling",
                "python-modules": [
                    "airflow_carbon_provider.hooks.carbontrace",
                    "airflow_carbon_provider.hooks.electricitymaps",
                    "airflow_carbon_provider.hooks.ukcarbonintensity",
                    "airflow_carbon_provider.hooks.watttime",
                ],
            },
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_carbon_provider.hooks.carbontrace.CarbonTraceHook",
                "hook-name": "Carbon trace replay",
                "connection-type": "carbontrace",
                "conn-fields": {
                    "path": {
                        "label": "Trace file",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Normalized CSV (timestamp_utc,zone,gco2_per_kwh); empty: the trace bundled with the package.",
                    },
                    "forecast": {
                        "label": "Forecast model",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "perfect",
                        },
                        "description": "perfect, noisy:<MAPE percent>[:<seed>] (e.g. noisy:10:1) or archive:<file>.",
                    },
                    "replay_start": {
                        "label": "Replay start",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "The trace instant (ISO-8601 UTC) that the anchor replays; empty: the trace's start.",
                    },
                    "anchor": {
                        "label": "Anchor",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "2024-01-01T00:00:00Z",
                        },
                        "description": "The wall-clock instant (ISO-8601 UTC) that replays the replay start.",
                    },
                    "loop": {
                        "label": "Loop",
                        "schema": {
                            "type": [
                                "boolean",
                                "null",
                            ],
                            "default": True,
                        },
                        "description": "Wrap around in whole-day laps instead of running out.",
                    },
                    "horizon": {
                        "label": "Forecast horizon",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "48h",
                        },
                        "description": "How far forecasts reach, e.g. '48h'.",
                    },
                    "signal_kind": {
                        "label": "Signal kind",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "average",
                            "enum": [
                                "average",
                                "marginal",
                            ],
                        },
                        "description": "What the trace measures: average, or marginal (e.g. a WattTime MOER trace).",
                    },
                    "max_staleness": {
                        "label": "Maximum data age",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
                    },
                    "cache_ttl": {
                        "label": "Cache lifetime",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [
                        "schema",
                        "port",
                        "host",
                        "login",
                        "password",
                        "extra",
                    ],
                    "relabeling": {},
                    "placeholders": {},
                },
            },
            {
                "hook-class-name": "airflow_carbon_provider.hooks.electricitymaps.ElectricityMapsHook",
                "hook-name": "Electricity Maps",
                "connection-type": "electricitymaps",
                "conn-fields": {
                    "emission_factor_type": {
                        "label": "Emission factor type",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "lifecycle",
                            "enum": [
                                "lifecycle",
                                "direct",
                            ],
                        },
                        "description": "lifecycle (the API's default, includes upstream emissions) or direct (combustion only).",
                    },
                    "disable_estimations": {
                        "label": "Disable estimations",
                        "schema": {
                            "type": [
                                "boolean",
                                "null",
                            ],
                            "default": False,
                        },
                        "description": "Ask the API to leave estimated values out.",
                    },
                    "horizon_hours": {
                        "label": "Forecast horizon (hours)",
                        "schema": {
                            "type": [
                                "integer",
                                "null",
                            ],
                            "default": 24,
                        },
                        "description": "Default forecast horizon: 6, 24, 48 or 72, as the plan allows.",
                    },
                    "test_zone": {
                        "label": "Zone for 'Test'",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "DE",
                        },
                        "description": "The zone the connection test asks for (free keys may cover a single zone).",
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {
                            "type": [
                                "number",
                                "null",
                            ],
                            "default": 30,
                        },
                        "description": "Seconds to wait for one HTTP answer before it counts as a timeout.",
                    },
                    "max_retries": {
                        "label": "Retries",
                        "schema": {
                            "type": [
                                "integer",
                                "null",
                            ],
                            "default": 3,
                        },
                        "description": "Retries after a timeout, a 5xx or a short Retry-After, with exponential backoff.",
                    },
                    "max_staleness": {
                        "label": "Maximum data age",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
                    },
                    "cache_ttl": {
                        "label": "Cache lifetime",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [
                        "schema",
                        "port",
                        "login",
                        "extra",
                    ],
                    "relabeling": {
                        "password": "API key (auth-token)",
                        "host": "API base URL",
                    },
                    "placeholders": {
                        "host": "https://api.electricitymaps.com",
                    },
                },
            },
            {
                "hook-class-name": "airflow_carbon_provider.hooks.ukcarbonintensity.UKCarbonIntensityHook",
                "hook-name": "UK Carbon Intensity (NESO)",
                "connection-type": "ukcarbonintensity",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {
                            "type": [
                                "number",
                                "null",
                            ],
                            "default": 30,
                        },
                        "description": "Seconds to wait for one HTTP answer before it counts as a timeout.",
                    },
                    "max_retries": {
                        "label": "Retries",
                        "schema": {
                            "type": [
                                "integer",
                                "null",
                            ],
                            "default": 3,
                        },
                        "description": "Retries after a timeout, a 5xx or a short Retry-After, with exponential backoff.",
                    },
                    "max_staleness": {
                        "label": "Maximum data age",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
                    },
                    "cache_ttl": {
                        "label": "Cache lifetime",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [
                        "schema",
                        "port",
                        "login",
                        "password",
                        "extra",
                    ],
                    "relabeling": {
                        "host": "API base URL",
                    },
                    "placeholders": {
                        "host": "https://api.carbonintensity.org.uk",
                    },
                },
            },
            {
                "hook-class-name": "airflow_carbon_provider.hooks.watttime.WattTimeHook",
                "hook-name": "WattTime",
                "connection-type": "watttime",
                "conn-fields": {
                    "signal_type": {
                        "label": "Signal type",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                            "default": "co2_moer",
                            "enum": [
                                "co2_moer",
                                "co2_aoer",
                            ],
                        },
                        "description": "co2_moer: marginal emission rate (forecasts and history); co2_aoer: average (history only).",
                    },
                    "horizon_hours": {
                        "label": "Forecast horizon (hours)",
                        "schema": {
                            "type": [
                                "integer",
                                "null",
                            ],
                            "default": 24,
                        },
                        "description": "Default forecast horizon, 1 to 72 hours.",
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "schema": {
                            "type": [
                                "number",
                                "null",
                            ],
                            "default": 30,
                        },
                        "description": "Seconds to wait for one HTTP answer before it counts as a timeout.",
                    },
                    "max_retries": {
                        "label": "Retries",
                        "schema": {
                            "type": [
                                "integer",
                                "null",
                            ],
                            "default": 3,
                        },
                        "description": "Retries after a timeout, a 5xx or a short Retry-After, with exponential backoff.",
                    },
                    "max_staleness": {
                        "label": "Maximum data age",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Oldest current data or forecast accepted, e.g. '2h'. Older data raises StaleDataError.",
                    },
                    "cache_ttl": {
                        "label": "Cache lifetime",
                        "schema": {
                            "type": [
                                "string",
                                "null",
                            ],
                        },
                        "description": "Override how long answers are cached, e.g. '5m'; '0s' turns caching off.",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [
                        "schema",
                        "port",
                        "extra",
                    ],
                    "relabeling": {
                        "login": "Username",
                        "host": "API base URL",
                    },
                    "placeholders": {
                        "host": "https://api.watttime.org",
                    },
                },
            },
        ],
    }
