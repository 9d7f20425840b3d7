"""The ledger store: engine, migrations on first use, idempotent upserts, queries.

Writes are upserts keyed by (dag_id, run_id, task_id, map_index, try_number) through
``INSERT ... ON CONFLICT DO UPDATE`` on SQLite and PostgreSQL (a select-then-write
elsewhere); a write never replaces a row recorded later than itself, so a spool replayed
late cannot roll a record back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, create_engine, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from airflow_carbon_provider.ledger.config import (
    default_spool_path,
    mask_url,
    register_url_secrets,
    resolve_ledger_url,
)
from airflow_carbon_provider.ledger.errors import RecordRejectedError
from airflow_carbon_provider.ledger.models import KEY_COLUMNS, DecisionRecord, OutcomeRecord, UTCDateTime
from airflow_carbon_provider.ledger.secrets import redact_text
from airflow_carbon_provider.ledger.spool import Spool, file_lock

__all__ = ["Ledger", "RunKey", "get_ledger"]

log = logging.getLogger(__name__)
UTC = timezone.utc
MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 7_316_022_461  # pg_advisory_xact_lock key that serialises ledger migrations
_TABLES: dict[str, Table] = {
    "decision": DecisionRecord.__table__,  # type: ignore[dict-item]
    "outcome": OutcomeRecord.__table__,  # type: ignore[dict-item]
}


@dataclass(frozen=True)
class RunKey:
    """Identify one task try: the ledger's idempotency key."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1

    def as_dict(self) -> dict[str, Any]:
        """Return the key as a plain dict."""
        return asdict(self)


def _parse_instant(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _column_value(column: Any, value: Any) -> Any:
    if isinstance(column.type, UTCDateTime):
        return _parse_instant(value)
    if value is None:
        return None
    if column.type.python_type is bool:
        return bool(value)
    if column.type.python_type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{type(value).__name__} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    if column.type.python_type is str:
        return str(value)
    return value


def to_columns(kind: str, key: dict[str, Any], data: dict[str, Any], recorded_at: datetime) -> dict[str, Any]:
    """Return the column values for one record: queried fields as columns, the whole record as details.

    Raises :class:`~airflow_carbon_provider.ledger.errors.RecordRejectedError` for a value no
    database could store (a date that is not one, a number that is not one), naming the field.
    """
    table = _TABLES[kind]
    missing = [name for name in KEY_COLUMNS if name not in key]
    if missing:
        raise RecordRejectedError(f"{kind} record without {', '.join(missing)} in its key")
    values: dict[str, Any] = {name: key[name] for name in KEY_COLUMNS}
    values["recorded_at"] = recorded_at
    skip = {"id", "recorded_at", "details", *KEY_COLUMNS}
    for column in table.columns:
        if column.name in skip or column.name not in data:
            continue
        try:
            values[column.name] = _column_value(column, data[column.name])
        except (ValueError, TypeError, OverflowError) as exc:
            shown = redact_text(repr(data[column.name]))[:80]
            raise RecordRejectedError(f"{kind} field {column.name} = {shown} cannot be stored: {exc}") from None
    if kind == "decision":  # the planner's ``signal``; a decision without one (fail-open) is unknown
        from airflow_carbon_provider.ledger.realised import signal_kind_of

        values["signal_kind"] = signal_kind_of(data.get("signal_kind") or data.get("signal"))
    elif values.get("signal_kind") is not None:
        from airflow_carbon_provider.ledger.realised import signal_kind_of

        values["signal_kind"] = signal_kind_of(values["signal_kind"])
    values["details"] = data
    return values


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else ""
    return redact_text(f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__)


def _with_driver(url: str) -> str:
    """Name an installed PostgreSQL driver in a bare ``postgresql://`` (or ``postgres://``) URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        return url
    import importlib.util

    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_engines: dict[str, Engine] = {}


class Ledger:
    """The ledger at ``url`` (see :func:`~airflow_carbon_provider.ledger.config.resolve_ledger_url`).

    :param url: a SQLAlchemy URL; default: from configuration, else SQLite under ``AIRFLOW_HOME``.
    :param spool_path: where records wait while the database is down.
    :param connect_timeout: seconds to wait for a PostgreSQL connection before spooling.
    """

    def __init__(self, url: str | None = None, *, spool_path: Path | str | None = None,
                 connect_timeout: int = 5) -> None:
        self.url = _with_driver(resolve_ledger_url(url))
        register_url_secrets(self.url)
        self.spool = Spool(Path(spool_path) if spool_path else default_spool_path())
        self.connect_timeout = connect_timeout

    @property
    def masked_url(self) -> str:
        """Return the URL with its password and secret query values masked (safe to log and show)."""
        return mask_url(self.url)

    def sqlite_file(self) -> Path | None:
        """Return the file of a SQLite ledger (None for another database, in memory, or a ``file:`` URI)."""
        try:
            url = make_url(self.url)
        except Exception:
            return None
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        if str(url.query.get("uri", "")).lower() in ("true", "1") or url.database.startswith("file:"):
            return None
        return Path(url.database).expanduser()

    @property
    def engine(self) -> Engine:
        """Return the (process-wide, per URL) engine."""
        engine = _engines.get(self.url)
        if engine is None:
            url = make_url(self.url)
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if url.get_backend_name() == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": self.connect_timeout}
            elif url.get_backend_name() == "sqlite":
                kwargs["connect_args"] = {"timeout": 30}
                if url.database and url.database != ":memory:":
                    Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, **kwargs)
            _engines[self.url] = engine
        return engine

    def dispose(self) -> None:
        """Close the pooled connections of this URL's engine."""
        engine = _engines.pop(self.url, None)
        if engine is not None:
            engine.dispose()

    # -- schema ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _migration_file_lock(self) -> Iterator[None]:
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            with file_lock(Path(url.database + ".migrate.lock")):
                yield
        else:
            yield

    def migrate(self) -> None:
        """Bring the schema to the newest revision (alembic upgrade head), once per process.

        Concurrent first uses are serialised: an advisory lock on PostgreSQL, a file lock
        beside a SQLite file.
        """
        if self.url in _migrated:
            return
        from alembic import command
        from alembic.config import Config

        with _migrate_lock:
            if self.url in _migrated:
                return
            with self._migration_file_lock(), self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                quiet = logging.getLogger("alembic.runtime.migration")
                level = quiet.level
                quiet.setLevel(logging.WARNING)  # "Context impl ..." on every first use is noise
                try:
                    command.upgrade(cfg, "head")
                finally:
                    quiet.setLevel(level)
            _migrated.add(self.url)

    # -- writes ----------------------------------------------------------------------------

    def write(self, kind: str, key: dict[str, Any], data: dict[str, Any], recorded_at: datetime) -> None:
        """Upsert one record (raises the database's error; :mod:`~.api` turns that into a spool).

        Raises :class:`~airflow_carbon_provider.ledger.errors.RecordRejectedError`, before
        touching the database when it can, for a record that no retry could store.
        """
        values = to_columns(kind, key, data, recorded_at)
        self.migrate()
        try:
            with self.engine.begin() as conn:
                self._upsert(conn, _TABLES[kind], values)
        except (DataError, IntegrityError) as exc:  # this record's values, not the database's health
            raise RecordRejectedError(f"the database refused the {kind} record: {_first_line(exc.orig)}") from exc
        except StatementError as exc:
            if isinstance(exc, DBAPIError):  # from the driver: the database may be down, keep the record
                raise
            # raised while binding this record's values (e.g. JSON it cannot encode): never storable
            raise RecordRejectedError(f"the {kind} record cannot be stored: {_first_line(exc.orig)}") from exc

    def write_spooled(self, record: dict[str, Any]) -> None:
        """Upsert one record read back from the spool."""
        try:
            recorded_at = _parse_instant(record.get("recorded_at"))
        except (ValueError, TypeError, OverflowError) as exc:
            shown = redact_text(repr(record.get("recorded_at")))[:80]
            raise RecordRejectedError(f"recorded_at = {shown} is not an ISO-8601 instant: {exc}") from None
        if recorded_at is None:
            raise RecordRejectedError("recorded_at is empty")
        self.write(record["kind"], record["key"], record["data"], recorded_at)

    def _upsert(self, conn: Connection, table: Table, values: dict[str, Any]) -> None:
        changes = [name for name in values if name not in KEY_COLUMNS]
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = insert(table).values(**values)
            stmt = stmt.on_conflict_do_update(
                index_elements=list(KEY_COLUMNS),
                set_={name: stmt.excluded[name] for name in changes},
                where=table.c.recorded_at <= stmt.excluded.recorded_at,
            )
            conn.execute(stmt)
            return
        where = and_(*(table.c[name] == values[name] for name in KEY_COLUMNS))  # pragma: no cover - other DBs
        existing = conn.execute(select(table.c.recorded_at).where(where)).first()  # pragma: no cover
        if existing is None:  # pragma: no cover
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(**values))
                return
            except IntegrityError:
                pass
        conn.execute(  # pragma: no cover
            update(table).where(where, table.c.recorded_at <= values["recorded_at"]).values(
                **{name: values[name] for name in changes})
        )

    # -- reads -----------------------------------------------------------------------------

    def read(self, kind: str, *, dag_id: str | None = None, task_id: str | None = None) -> list[dict[str, Any]]:
        """Return every record of ``kind`` (optionally for one DAG or task) as dicts of columns."""
        self.migrate()
        table = _TABLES[kind]
        query = select(table)
        if dag_id:
            query = query.where(table.c.dag_id == dag_id)
        if task_id:
            query = query.where(table.c.task_id == task_id)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(table.c.id))]


def get_ledger(url: str | None = None, *, spool_path: Path | str | None = None) -> Ledger:
    """Return the configured ledger (reads configuration now)."""
    return Ledger(url, spool_path=spool_path)
