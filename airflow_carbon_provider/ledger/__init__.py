"""The emissions ledger: every carbon decision and outcome, in SQL, for reports and metrics.

The public API, for the operator and anyone recording runs of their own:

* :func:`record_decision` after a decision is made (and again when it changes),
* :func:`record_outcome` once the task has run: it fetches the realised intensity,
  computes emissions, the baseline and the saving, and records them,
* :func:`flush_spool` to replay records that were spooled while the database was down.

And the reservations that coordinate planners across processes (:mod:`~airflow_carbon_provider.ledger.reservations`):
:func:`reserve` and :func:`release`, which never raise on a database failure either.

None of them ever raises on a database failure: the record is logged as one JSON line and
kept in a local spool file until the next successful write. Attributes are imported lazily,
so importing this package does not import SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerUnavailableError",
    "ReservationResult",
    "RunKey",
    "flush_spool",
    "get_ledger",
    "realised_outcome",
    "record_decision",
    "record_outcome",
    "release",
    "reserve",
    "run_key_from_context",
]

_WHERE = {
    "Ledger": "airflow_carbon_provider.ledger.store",
    "RunKey": "airflow_carbon_provider.ledger.store",
    "flush_spool": "airflow_carbon_provider.ledger.api",
    "get_ledger": "airflow_carbon_provider.ledger.store",
    "record_decision": "airflow_carbon_provider.ledger.api",
    "record_outcome": "airflow_carbon_provider.ledger.api",
    "run_key_from_context": "airflow_carbon_provider.ledger.api",
    "realised_outcome": "airflow_carbon_provider.ledger.realised",
    "ReservationResult": "airflow_carbon_provider.ledger.reservations",
    "reserve": "airflow_carbon_provider.ledger.reservations",
    "release": "airflow_carbon_provider.ledger.reservations",
    "LedgerError": "airflow_carbon_provider.ledger.errors",
    "LedgerUnavailableError": "airflow_carbon_provider.ledger.errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
