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

import logging
import os
import sys
from pathlib import Path
from urllib.parse import unquote, unquote_plus

from airflow_carbon_provider.ledger.errors import LedgerError
from airflow_carbon_provider.ledger.secrets import is_secret_key, redact_text

__all__ = [
    "airflow_home",
    "conf_get",
    "default_spool_path",
    "mask_url",
    "redact_url_secrets",
    "register_url_secrets",
    "resolve_ledger_url",
    "url_secrets",
]

log = logging.getLogger(__name__)

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


MASK = "***"


def _split_userinfo(url: str) -> tuple[str, str, str] | None:
    """Return (``scheme://user``, password, ``host...``) of ``url``, or None if it has no password.

    The password runs to the last ``@`` before the query, so an unencoded ``@`` or ``/`` in
    it is hidden whole (SQLAlchemy's parser would stop at the first ``@`` and show the rest
    as the host). Without an ``@`` before the query, the last ``@`` anywhere ends it (a ``?``
    in the password).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, cut)
    if at < 0:
        at = rest.rfind("@")
    if at < 0:
        return None
    user, colon, password = rest[:at].partition(":")
    if not colon or "/" in user:  # no password, or a path such as sqlite:////a:b@c.db
        return None
    return f"{scheme}://{user}", password, rest[at + 1:]


def _query_is_secret(key: str, value: str) -> bool:
    # the value too: an Airflow connection's URI nests extras as JSON in ``__extra__``
    return is_secret_key(unquote_plus(key)) or is_secret_key(unquote_plus(value))


def mask_url(url: str) -> str:
    """Return ``url`` safe to show: its password and secret-looking query values replaced by ``***``.

    ``postgresql://carbon:pw@db/ledger?sslpassword=k&sslmode=require`` becomes
    ``postgresql://carbon:***@db/ledger?sslpassword=***&sslmode=require``. Query keys such as
    ``password``, ``sslpassword``, ``token``, ``secret`` or ``api_key`` are masked; so is any
    value that itself names one (JSON-encoded extras). Text that is not a URL is redacted as
    log text is.
    """
    parts = _split_userinfo(url)
    if parts is not None:
        url = f"{parts[0]}:{MASK}@{parts[2]}"
    base, question, query = url.partition("?")
    if question:
        query, hashmark, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            key, equals, value = pair.partition("=")
            pairs.append(f"{key}={MASK}" if equals and _query_is_secret(key, value) else pair)
        url = f"{base}?{'&'.join(pairs)}{hashmark}{fragment}"
    if "://" not in url:
        url = redact_text(url)
    return url


def url_secrets(url: str) -> list[str]:
    """Return the secrets in ``url``: its password (as written and decoded) and secret query values."""
    found: list[str] = []
    parts = _split_userinfo(url)
    if parts is not None:
        found += [parts[1], unquote(parts[1])]
    for pair in url.partition("?")[2].partition("#")[0].split("&"):
        key, equals, value = pair.partition("=")
        if equals and value and _query_is_secret(key, value):
            found += [value, unquote_plus(value)]
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # not a SQLAlchemy URL, or SQLAlchemy absent: the string's own parts will do
        password = None
    if password:
        found.append(str(password))
    return [s for s in dict.fromkeys(found) if s]


def redact_url_secrets(text: str, url: str) -> str:
    """Return ``text`` (a driver's error message, say) without the secrets of ``url``.

    Besides each secret, a password written with an unencoded ``@`` is masked where a driver
    echoes its tail as the host name (``could not translate host name "ss@db"``).
    """
    text = redact_text(text)
    parts = _split_userinfo(url)
    if parts is not None:
        tail = parts[1]
        while "@" in tail:
            tail = tail.split("@", 1)[1]
            text = text.replace(f"{tail}@", f"{MASK}@")
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


MIN_MASKED = 5
"""Airflow's default ``[logging] min_length_masked_secret``."""
_registered: set[str] = set()


def register_url_secrets(url: str) -> None:
    """Tell Airflow's secrets masker, where this process has Airflow, about the secrets in ``url``.

    Then a log line that repeats one (a driver's error message, say) is masked by Airflow's
    own log handling too. Never raises.
    """
    if "airflow" not in sys.modules:  # no Airflow logging in this process: nothing to tell
        return
    # Airflow will not mask shorter ones and warns instead: a line on the CLI's stderr each time
    secrets = [s for s in url_secrets(url) if len(s) >= MIN_MASKED and s not in _registered]
    if not secrets:
        return
    _registered.update(secrets)
    import importlib
    import warnings

    functions = set()
    for module in ("airflow.sdk.log", "airflow._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker",
                   "airflow.utils.log.secrets_masker"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mask_secret = importlib.import_module(module).mask_secret
        except Exception:  # this Airflow version has not got that module
            continue
        if mask_secret in functions:
            continue
        functions.add(mask_secret)
        for secret in secrets:
            try:
                mask_secret(secret)
            except Exception as exc:  # masking is defence in depth; never fail a task for it
                log.debug("Carbon ledger: secret not registered with %s: %s", module, type(exc).__name__)
