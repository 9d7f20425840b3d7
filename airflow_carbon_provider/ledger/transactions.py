"""Transactions under a per-cluster write lock, with bounded retries and a wall-clock budget.

The reservations (:mod:`~airflow_carbon_provider.ledger.reservations`) read and write one
cluster's rows in one transaction at a time, on every database the ledger supports:

* PostgreSQL: READ COMMITTED, then ``pg_advisory_xact_lock(space, hashtext(cluster))`` per
  cluster in one sorted order (so two lockers never deadlock); ``lock_timeout`` and
  ``statement_timeout`` are the remaining budget, and a new connection gives up within it.
  The lock is released by the commit, and the next transaction's statements see its rows.
* SQLite: ``BEGIN IMMEDIATE``, the database's one write lock, with ``busy_timeout`` set to
  the remaining budget (and set back to the ledger's 30 s afterwards).

Lock timeouts, deadlocks, serialization failures and dropped connections are retried, at most
:data:`MAX_ATTEMPTS` times (:data:`CONNECT_ATTEMPTS` when no connection can be made at all),
with jittered backoff, and never past the budget: then :class:`Unavailable` is raised, its
message naming the database with its password masked.
"""

from __future__ import annotations

import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from airflow_carbon_provider.ledger.config import redact_url_secrets
from airflow_carbon_provider.ledger.errors import LedgerError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

    from airflow_carbon_provider.ledger.store import Ledger

__all__ = ["CONNECT_ATTEMPTS", "MAX_ATTEMPTS", "Unavailable", "first_line", "locked_transaction"]

T = TypeVar("T")
MAX_ATTEMPTS = 5
"""Transactions one call tries at most (lock timeouts, dropped connections, deadlocks)."""
CONNECT_ATTEMPTS = 2
"""Of those, failed connections (server down): the caller plans without coordination sooner."""
_PG_LOCK_SPACE = 1_129_465_171  # first key of pg_advisory_xact_lock(int, int): reservations, per cluster


class Unavailable(Exception):
    """The database could not be used within the budget; the message is masked already."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    line = text_.splitlines()[0] if text_ else ""
    return f"{type(exc).__name__}: {line[:200]}" if line else type(exc).__name__


_local = threading.local()
_bounded: weakref.WeakSet[Any] = weakref.WeakSet()
_bounded_lock = threading.Lock()


def _bound_connects(engine: Engine) -> None:
    """Make new PostgreSQL connections of ``engine`` give up within the calling thread's budget."""
    if engine.dialect.name != "postgresql" or engine in _bounded:
        return
    with _bounded_lock:
        if engine in _bounded:
            return

        @event.listens_for(engine, "do_connect")
        def _connect_within_budget(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            limit = getattr(_local, "connect_timeout", None)
            if limit is not None:  # libpq waits whole seconds, at least 2
                configured = int(cparams.get("connect_timeout") or 0) or math.inf
                cparams["connect_timeout"] = int(max(2, min(configured, math.ceil(limit))))

        _bounded.add(engine)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _locked(conn: Connection, clusters: Sequence[str], remaining: float, work: Callable[[Connection], T],
            write: bool) -> T:
    """Run ``work`` in one transaction holding the lock of ``clusters`` (and SQLite's write lock if ``write``)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {_ms(remaining)}")
        conn.commit()
        try:
            if write or clusters:
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite leaves an explicit BEGIN alone
            result = work(conn)
            conn.commit()
            return result
        except BaseException:
            conn.rollback()
            raise
        finally:
            try:
                conn.exec_driver_sql("PRAGMA busy_timeout = 30000")  # the ledger's own default
                conn.commit()
            except SQLAlchemyError:
                pass
    if dialect == "postgresql":
        conn = conn.execution_options(isolation_level="READ COMMITTED")
    with conn.begin():
        if dialect == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_ms(remaining)}")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {_ms(remaining)}")
            for cluster in sorted(set(clusters)):  # one order for all: two lockers never deadlock
                conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:cluster))"),
                             {"space": _PG_LOCK_SPACE, "cluster": cluster})
        return work(conn)


def locked_transaction(ledger: Ledger, clusters: Sequence[str], budget: float, work: Callable[[Connection], T],
                       *, write: bool = False, attempts: int = MAX_ATTEMPTS) -> tuple[T, int]:
    """Run ``work`` under the clusters' lock, retrying lock and connection failures within ``budget`` s.

    ``write`` takes SQLite's write lock even without a cluster (a release or an expiry, which
    only lowers load, needs no cluster lock on PostgreSQL); it is implied by ``clusters``.

    Raises :class:`Unavailable` (message masked) when the budget or the attempts run out, or
    at once for an error no retry can mend.
    """
    deadline = time.monotonic() + budget
    last: BaseException | None = None
    attempt = refused = 0
    while attempt < attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        attempt += 1
        connected = False
        try:
            _bound_connects(ledger.engine)
            _local.connect_timeout = remaining
            try:
                ledger.migrate()
                with ledger.engine.connect() as conn:
                    connected = True
                    return _locked(conn, clusters, deadline - time.monotonic(), work, write), attempt
            finally:
                _local.connect_timeout = None
        except OperationalError as exc:  # down, locked, lock or statement timeout, deadlock, serialization
            last = exc
            refused += not connected
            if refused >= CONNECT_ATTEMPTS:  # a server that is not there is not back in a second
                break
        except (SQLAlchemyError, LedgerError) as exc:  # e.g. a table it may not read: retrying will not help
            last = exc
            break
        pause = min(0.05 * 2 ** attempt * (0.5 + random.random()), deadline - time.monotonic())
        if attempt < attempts and pause > 0:
            time.sleep(pause)
    why = redact_url_secrets(first_line(last), ledger.url) if last is not None else "no time left"
    raise Unavailable(f"the ledger {ledger.masked_url} could not be used within {budget:g} s "
                       f"({attempt} attempt(s)): {why}", attempt)
