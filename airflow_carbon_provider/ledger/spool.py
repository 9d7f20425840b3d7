"""A local JSON-lines spool for records the database could not take, replayed later.

Each line is ``{"kind": "decision"|"outcome", "key": {...}, "recorded_at": ISO, "data": {...}}``.
Appends and replays hold an exclusive lock on ``<spool>.lock``, so several processes on one
machine share a spool safely. A line that cannot be parsed, or a record the ledger refuses
whatever the database does (:class:`~airflow_carbon_provider.ledger.errors.RecordRejectedError`:
a date that is not one, a value too long for its column), is moved to ``<spool>.rejected``
with the reason and a warning, and never blocks the lines after it. The spool and its
companion files are readable by their owner only (0600), and a replay rewrites the spool
through a temporary file made by :func:`tempfile.mkstemp` beside it, never through a
predictable path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_carbon_provider.ledger.errors import RecordRejectedError
from airflow_carbon_provider.ledger.secrets import redact_text

__all__ = ["Spool", "SpoolResult"]

log = logging.getLogger(__name__)

KINDS = ("decision", "outcome")
_KEY_FIELDS = {"dag_id": str, "run_id": str, "task_id": str, "map_index": int, "try_number": int}

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
    fcntl = None  # type: ignore[assignment]


PRIVATE = 0o600
"""The mode of the spool, its lock and its quarantine: the owner's only."""


def open_private(path: Path, flags: int) -> int:
    """Open ``path`` with ``flags`` (plus O_CREAT), created 0600; tighten a looser existing file.

    Return the file descriptor. A file left group- or world-readable by an older version is
    made private on its next use.
    """
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, PRIVATE)
    except OSError:  # not our file to change (another owner): use it as it is
        pass
    return fd


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created 0600 if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(open_private(path, os.O_RDWR | os.O_APPEND), "a+") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class SpoolResult:
    """What a replay did: lines written, lines left for later, lines set aside as rejected."""

    def __init__(self, replayed: int = 0, remaining: int = 0, rejected: int = 0) -> None:
        self.replayed, self.remaining, self.rejected = replayed, remaining, rejected

    @property
    def corrupt(self) -> int:
        """Return the lines set aside (the name this count had before ``rejected``)."""
        return self.rejected

    def __repr__(self) -> str:
        return f"SpoolResult(replayed={self.replayed}, remaining={self.remaining}, rejected={self.rejected})"


_INVALID = "not a valid record (expected JSON with kind, key, recorded_at and data)"


def _valid(line: str) -> tuple[dict[str, Any] | None, str]:
    """Return (the record, "") or (None, why the line is not a record)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None, f"{_INVALID}: not JSON"
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        return None, f"{_INVALID}: kind is not one of {', '.join(KINDS)}"
    key, data = record.get("key"), record.get("data")
    if not isinstance(key, dict) or not isinstance(data, dict) or not isinstance(record.get("recorded_at"), str):
        return None, f"{_INVALID}: key, data or recorded_at missing or of the wrong type"
    for name, kind in _KEY_FIELDS.items():
        if not isinstance(key.get(name), kind) or isinstance(key.get(name), bool):
            return None, f"{_INVALID}: key {name} is not a {kind.__name__}"
    return record, ""


class Spool:
    """The spool file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line."""
        line = json.dumps(record, sort_keys=True, default=str)
        with file_lock(self.lock_path):
            with os.fdopen(open_private(self.path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def pending(self) -> int:
        """Return how many lines wait in the spool."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                return sum(1 for line in handle if line.strip())
        except FileNotFoundError:
            return 0

    def reject(self, line: str, reason: str) -> None:
        """Set ``line`` aside in ``<spool>.rejected`` (0600) with ``reason``, for a person to look at."""
        with file_lock(self.lock_path):
            self._reject([(line, reason)])

    def _reject(self, lines: list[tuple[str, str]]) -> None:
        now = datetime.now(timezone.utc).isoformat()
        entries = [json.dumps({"rejected_at": now, "reason": redact_text(reason)[:500], "line": line})
                   for line, reason in lines]
        with os.fdopen(open_private(self.rejected_path, os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8") as handle:
            handle.write("\n".join(entries) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def replay(self, write: Callable[[dict[str, Any]], None]) -> SpoolResult:
        """Write every spooled record in order with ``write``; stop at the first failure.

        Records written are removed; the failing one and those after it stay, in order. A
        line that is not a record, or that ``write`` rejects with
        :class:`~airflow_carbon_provider.ledger.errors.RecordRejectedError`, goes to
        ``<spool>.rejected`` with the reason and the replay goes on. Other exceptions from
        ``write`` (the database is down) propagate after the spool has been rewritten.
        """
        result = SpoolResult()
        if not self.path.exists():
            return result
        with file_lock(self.lock_path):
            try:
                with open(self.path, encoding="utf-8", errors="replace") as handle:
                    lines = [line.rstrip("\n") for line in handle if line.strip()]
            except FileNotFoundError:
                return result
            remaining: list[str] = []
            rejected: list[tuple[str, str]] = []
            failure: BaseException | None = None
            for number, line in enumerate(lines, 1):
                if failure is not None:
                    remaining.append(line)
                    continue
                record, why = _valid(line)
                if record is not None:
                    try:
                        write(record)
                    except RecordRejectedError as exc:
                        why = str(exc)
                    except Exception as exc:
                        failure = exc
                        remaining.append(line)
                        continue
                    else:
                        result.replayed += 1
                        continue
                log.warning("Carbon ledger spool %s: line %d rejected, %s; moved it to %s", self.path, number,
                            redact_text(why)[:300], self.rejected_path)
                rejected.append((line, why))
            if rejected:
                self._reject(rejected)
            self._rewrite(remaining)
            result.remaining, result.rejected = len(remaining), len(rejected)
        if failure is not None:
            raise failure
        return result

    def _rewrite(self, lines: list[str]) -> None:
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        # mkstemp: a fresh name, O_EXCL and mode 0600, so nobody can plant the path beforehand
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
