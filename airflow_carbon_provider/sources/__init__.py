"""Carbon-intensity data sources: one module per provider, no Airflow imports, no I/O.

Each module holds pure request builders and response parsers (decoded JSON in, core
:class:`~airflow_carbon_provider.core.signals.IntensitySeries` out) and one flow per endpoint:
a generator that yields :class:`~airflow_carbon_provider.sources._http.ApiRequest` values and
receives :class:`~airflow_carbon_provider.sources._http.ApiResponse` values
(:mod:`~airflow_carbon_provider.sources._flow`). Two drivers run any flow, one on
``requests`` and one on ``aiohttp`` (:mod:`~airflow_carbon_provider.sources._drivers`);
:mod:`~airflow_carbon_provider.sources._http` holds the shared timeout and retry policy.
"""

from __future__ import annotations
