"""Alembic environment: run by `embedkeeper migrate`, which passes an open connection and the
document_id type in config.attributes (see commands/migrate.py)."""

from __future__ import annotations

from sqlalchemy import text

from alembic import context
from embedkeeper.models import SCHEMA, metadata
from embedkeeper.store import locks

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table_schema=SCHEMA,
    include_schemas=True,
    include_name=lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
)
with context.begin_transaction():
    # Two instances migrating at once: the second waits, then finds the schema at head.
    key = locks.SINGLE_KEY_SQL.format(space=":key")
    connection.execute(text(f"SELECT pg_advisory_xact_lock({key})"), {"key": locks.MIGRATE})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
    context.run_migrations()
