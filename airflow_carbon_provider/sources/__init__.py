"""Carbon-intensity data sources: one module per provider, no Airflow imports.

Each module holds pure request builders and response parsers (decoded JSON in, core
:class:`~airflow_carbon_provider.core.signals.IntensitySeries` out) shared by a thin
synchronous client on ``requests`` and a thin asynchronous one on ``aiohttp``;
:mod:`~airflow_carbon_provider.sources._http` holds the shared timeout and retry policy.
"""

from __future__ import annotations
