"""Alembic environment for the ledger: runs on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from airflow_carbon_provider.ledger.models import Base

VERSION_TABLE = "carbon_ledger_alembic_version"


def run_migrations_online() -> None:
    """Run the migrations on ``config.attributes["connection"]`` (or a fresh engine from the URL)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            context.config.attributes["connection"] = conn
            run_migrations_online()
        engine.dispose()
        return
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - offline SQL generation is not offered
    raise SystemExit("the carbon ledger migrations run online only")
run_migrations_online()
