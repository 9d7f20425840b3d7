"""A local JSON-lines spool for records the database could not take, replayed later.

Each line is ``{"kind": "decision"|"outcome", "key": {...}, "recorded_at": ISO, "data": {...}}``.
Appends and replays hold an exclusive lock on ``<spool>.lock``, so several processes on one
machine share a spool safely. The spool and its companion files are readable by their owner
only (0600), and a replay rewrites the spool through a temporary file made by
:func:`tempfile.mkstemp` beside it, never through a predictable path. A line that cannot be parsed is moved to ``<spool>.corrupt``
with a warning and never blocks the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    """What a replay did: lines written, lines left for later, lines set aside as corrupt."""

    def __init__(self, replayed: int = 0, remaining: int = 0, corrupt: int = 0) -> None:
        self.replayed, self.remaining, self.corrupt = replayed, remaining, corrupt

    def __repr__(self) -> str:
        return f"SpoolResult(replayed={self.replayed}, remaining={self.remaining}, corrupt={self.corrupt})"


def _valid(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in KINDS:
        return None
    key, data = record.get("key"), record.get("data")
    if not isinstance(key, dict) or not isinstance(data, dict) or not isinstance(record.get("recorded_at"), str):
        return None
    for name, kind in _KEY_FIELDS.items():
        if not isinstance(key.get(name), kind) or isinstance(key.get(name), bool):
            return None
    return record


class Spool:
    """The spool file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.corrupt_path = self.path.with_name(self.path.name + ".corrupt")

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

    def replay(self, write: Callable[[dict[str, Any]], None]) -> SpoolResult:
        """Write every spooled record in order with ``write``; stop at the first failure.

        Records written are removed; the failing one and those after it stay, in order.
        Corrupt lines go to ``<spool>.corrupt``. Exceptions from ``write`` propagate after the
        spool has been rewritten.
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
            corrupt: list[str] = []
            failure: BaseException | None = None
            for number, line in enumerate(lines, 1):
                if failure is not None:
                    remaining.append(line)
                    continue
                record = _valid(line)
                if record is None:
                    log.warning("Carbon ledger spool %s: line %d is not a valid record; moved it to %s",
                                self.path, number, self.corrupt_path)
                    corrupt.append(line)
                    continue
                try:
                    write(record)
                except Exception as exc:
                    failure = exc
                    remaining.append(line)
                    continue
                result.replayed += 1
            if corrupt:
                with os.fdopen(open_private(self.corrupt_path, os.O_WRONLY | os.O_APPEND), "a",
                               encoding="utf-8") as handle:
                    handle.write("\n".join(corrupt) + "\n")
            self._rewrite(remaining)
            result.remaining, result.corrupt = len(remaining), len(corrupt)
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
