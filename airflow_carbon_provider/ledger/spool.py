"""A local JSON-lines spool for records the database could not take, replayed later.

Each line is ``{"kind": "decision"|"outcome", "key": {...}, "recorded_at": ISO, "data": {...}}``.
Appends and replays hold an exclusive lock on ``<spool>.lock``, so several processes on one
machine share a spool safely. A line that cannot be parsed is moved to ``<spool>.corrupt``
with a warning and never blocks the others.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
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
            with open(self.path, "a", encoding="utf-8") as handle:
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
                with open(self.corrupt_path, "a", encoding="utf-8") as handle:
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
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
