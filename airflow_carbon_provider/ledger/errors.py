"""Errors of the ledger and the report (standard library only: the CLI imports them at start-up)."""

from __future__ import annotations

__all__ = ["LedgerError", "LedgerUnavailableError", "RecordRejectedError", "ReportError"]


class LedgerError(Exception):
    """Raised for a ledger that cannot be configured or used."""


class LedgerUnavailableError(LedgerError):
    """Raised when the ledger database cannot be reached; the message masks any password.

    :param url: the ledger URL with its password masked.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class RecordRejectedError(LedgerError):
    """Raised for a record the ledger can never store, whatever the database does.

    A date that is not one (``2026-02-30``), a number that is not one, a value the database
    refuses (too long for its column). Retrying cannot help, so the record is set aside in the
    spool's ``.rejected`` file with this message as the reason, and the writes after it go on.
    """


class ReportError(LedgerError):
    """Raised for report input that cannot be used (unknown group, bad date, bad objective)."""
