"""Where the ledger lives and how it is configured (Airflow config section ``[carbon]``, env vars).

Resolution order for the database:

1. an explicit URL (``--ledger-url``, or ``url=`` in the API);
2. ``AIRFLOW_CARBON_LEDGER_URL``: any SQLAlchemy URL;
3. an Airflow connection id from ``AIRFLOW_CARBON_LEDGER_CONN_ID`` or ``[carbon] ledger_conn_id``
   (``AIRFLOW__CARBON__LEDGER_CONN_ID``): a ``postgres`` connection, or any whose URI SQLAlchemy reads;
4. SQLite at ``$AIRFLOW_HOME/carbon_ledger.db``.

The spool file is ``AIRFLOW_CARBON_LEDGER_SPOOL`` or ``[carbon] ledger_spool``, by default
``$AIRFLOW_HOME/carbon_ledger_spool.jsonl``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from airflow_carbon_provider.ledger.errors import LedgerError

__all__ = [
    "airflow_home",
    "conf_get",
    "default_spool_path",
    "mask_url",
    "resolve_ledger_url",
]

SECTION = "carbon"
URL_ENV = "AIRFLOW_CARBON_LEDGER_URL"
CONN_ENV = "AIRFLOW_CARBON_LEDGER_CONN_ID"
SPOOL_ENV = "AIRFLOW_CARBON_LEDGER_SPOOL"


def airflow_home() -> Path:
    """Return ``$AIRFLOW_HOME`` (default ``~/airflow``, as Airflow itself)."""
    return Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()


def conf_get(key: str) -> str | None:
    """Return ``[carbon] key`` from Airflow's config, or ``AIRFLOW__CARBON__KEY``; None if unset."""
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if env is not None:
        return env.strip() or None
    try:
        from airflow.configuration import conf
    except Exception:  # Airflow absent or its config unreadable: environment only
        return None
    try:
        value = conf.get(SECTION, key, fallback=None)
    except Exception:
        return None
    return str(value).strip() or None if value is not None else None


def default_spool_path() -> Path:
    """Return the spool file for records that could not be written."""
    configured = os.environ.get(SPOOL_ENV) or conf_get("ledger_spool")
    return Path(configured).expanduser() if configured else airflow_home() / "carbon_ledger_spool.jsonl"


_SCHEMES = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}


def _url_from_connection(conn_id: str) -> str:
    conn = None
    errors = []
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        errors.append(exc)
        try:
            from airflow.models.connection import Connection

            conn = Connection.get_connection_from_secrets(conn_id)
        except Exception as exc2:
            errors.append(exc2)
    if conn is None:
        raise LedgerError(
            f"ledger connection {conn_id!r} cannot be read ({type(errors[-1]).__name__}); define it in Airflow "
            f"or set {URL_ENV}"
        )
    uri = conn.get_uri()
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise LedgerError(f"ledger connection {conn_id!r} has no usable URI; give it a type such as postgres")
    scheme = _SCHEMES.get(scheme.replace("-", "_"), scheme.replace("-", "_"))
    return f"{scheme}://{rest}"


def resolve_ledger_url(url: str | None = None) -> str:
    """Return the SQLAlchemy URL of the ledger (see the module docstring for the order)."""
    if url:
        return url
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    conn_id = os.environ.get(CONN_ENV) or conf_get("ledger_conn_id")
    if conn_id:
        return _url_from_connection(conn_id)
    return f"sqlite:///{airflow_home() / 'carbon_ledger.db'}"


_PASSWORD = re.compile(r"(://[^:/@]*:)([^@]*)(@)")


def mask_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``."""
    return _PASSWORD.sub(r"\1***\3", url)
