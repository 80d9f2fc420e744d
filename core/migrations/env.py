"""Alembic environment: the URL comes from settings (or the caller), never from an ini file."""

from __future__ import annotations

from alembic import context

from core.db import get_engine
from core.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True)  # batch mode: SQLite can't ALTER most things
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # DB_STATEMENT_TIMEOUT_SECONDS guards the running platform; a migration that rewrites
                # a large table may take longer (LOCAL: pooled connections keep the timeout).
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
