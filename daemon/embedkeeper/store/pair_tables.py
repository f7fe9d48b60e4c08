"""Creating a (source, model) pair's tables, and naming them in SQL.

The definitions live with the other tables in embedkeeper.models (models/pairs.py); they depend
on the config, so `migrate` creates them here rather than through an alembic revision. The DDL is
compiled by SQLAlchemy, which quotes every identifier; the statements that use the tables quote
them with psycopg.sql through PairNames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.models.pairs import Storage, pair_base_name, pair_tables
from embedkeeper.models.tables import SCHEMA
from embedkeeper.store.db import mapped_errors


@dataclass(frozen=True, slots=True)
class PairNames:
    source: str
    model: str
    base: str  # every table of the pair starts with it

    @classmethod
    def of(cls, source: str, model: str) -> PairNames:
        return cls(source, model, pair_base_name(source, model))

    def _table(self, suffix: str) -> sql.Identifier:
        return sql.Identifier(SCHEMA, f"{self.base}{suffix}")

    @property
    def documents(self) -> sql.Identifier:
        return self._table("_documents")

    @property
    def chunks(self) -> sql.Identifier:
        return self._table("_chunks")

    @property
    def failures(self) -> sql.Identifier:
        return self._table("_failures")

    @property
    def view(self) -> sql.Identifier:
        """What a user searches: the chunks joined to the source."""
        return self._table("")

    @property
    def hnsw_index(self) -> str:
        return f"{self.base}_hnsw"


def create_pair_tables(
    conn: psycopg.Connection[Any],
    names: PairNames,
    *,
    key_type: str,
    dimensions: int,
    storage: Storage = "vector",
) -> None:
    """Create the pair's tables where they do not exist; the caller owns the transaction."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    with mapped_errors(f"creating the tables of {names.source}/{names.model}"):
        for table in pair_tables(names.base, key_type, dimensions, storage):
            ddl = str(CreateTable(table, if_not_exists=True).compile(dialect=dialect))
            # Generated from our own definitions, every identifier quoted by SQLAlchemy.
            conn.execute(ddl)


def vector_column_type(conn: psycopg.Connection[Any], names: PairNames) -> str | None:
    """The chunks' embedding column as PostgreSQL names it (`vector(384)`); None: no table."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (names.chunks.as_string(conn),),
    ).fetchone()
    return None if row is None else str(row[0])
