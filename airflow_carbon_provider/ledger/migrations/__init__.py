"""Alembic migrations of the ledger, run programmatically (no alembic.ini)."""
