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

from embedkeeper.errors import ConfigError, DatabaseError, DimensionMismatch, SchemaMissing
from embedkeeper.models.pairs import Storage, pair_base_name, pair_tables
from embedkeeper.models.tables import SCHEMA
from embedkeeper.store import locks
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

    @property
    def full_text_index(self) -> str:
        return f"{self.base}_full_text"


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
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    with mapped_errors(f"creating the tables of {names.source}/{names.model}"):
        for table in pair_tables(names.base, key_type, dimensions, storage):
            statements: list[CreateTable | CreateIndex] = [CreateTable(table, if_not_exists=True)]
            statements += [CreateIndex(i, if_not_exists=True) for i in table.indexes]
            for statement in statements:
                # Generated from our own definitions, every identifier quoted by SQLAlchemy.
                conn.execute(str(statement.compile(dialect=dialect)))


def vector_column_type(conn: psycopg.Connection[Any], names: PairNames) -> str | None:
    """The chunks' embedding column as PostgreSQL names it (`vector(384)`); None: no table."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (names.chunks.as_string(conn),),
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class PairRecord:
    """What a pair's tables were made for (a row of embedkeeper.pairs)."""

    source_table: str
    key_type: str
    dimensions: int
    storage: str


def record_pair(conn: psycopg.Connection[Any], names: PairNames, wanted: PairRecord) -> None:
    """Record the pair, or hold the config to its record: a source name that now stands for
    another table, or a model of another size or storage, would put two kinds of vectors in
    one pair's tables. The caller owns the transaction."""
    select = (
        "SELECT source_table, key_type, dimensions, storage FROM embedkeeper.pairs"
        " WHERE source = %s AND model = %s"
    )
    with mapped_errors(f"recording the pair {names.source}/{names.model}"):
        row = conn.execute(select, (names.source, names.model)).fetchone()
        if row is None:  # a worker may only read the registry: it writes only what is new
            conn.execute(
                "INSERT INTO embedkeeper.pairs (source, model, base_name, source_table,"
                " key_type, dimensions, storage) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (source, model) DO NOTHING",
                (
                    names.source,
                    names.model,
                    names.base,
                    wanted.source_table,
                    wanted.key_type,
                    wanted.dimensions,
                    wanted.storage,
                ),
            )
            row = conn.execute(select, (names.source, names.model)).fetchone()
    assert row is not None
    recorded = PairRecord(str(row[0]), str(row[1]), int(row[2]), str(row[3]))
    pair = f'source "{names.source}", model "{names.model}"'
    if recorded.source_table != wanted.source_table:
        raise ConfigError(
            f"config: {pair}: the source is table {wanted.source_table}, but this pair's vectors"
            f" were made from table {recorded.source_table}; give the source another name in"
            " [[sources]], or point it back at its table"
        )
    if recorded.key_type != wanted.key_type:
        raise ConfigError(
            f"config: {pair}: the source's key is now {wanted.key_type}, but this pair's tables"
            f" hold {recorded.key_type} keys; give the source another name"
        )
    if (recorded.dimensions, recorded.storage) != (wanted.dimensions, wanted.storage):
        raise DimensionMismatch(
            f"{pair}: the model makes {wanted.storage}({wanted.dimensions}) vectors, but this"
            f" pair's tables hold {recorded.storage}({recorded.dimensions}); give the model"
            " another name in [[models]] to embed again beside the old vectors"
        )


def ensure_pair(conn: psycopg.Connection[Any], names: PairNames, wanted: PairRecord) -> bool:
    """The pair's tables, made if missing (returns True then), and its record checked. A role
    that may not create them gets an error that names the command to run as the owner."""
    with conn.transaction():
        # Instances starting together would race CREATE TABLE IF NOT EXISTS (a duplicate-key
        # error in the catalog): the first makes the tables, the others wait and find them.
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (locks.PAIRS, names.base)
        )
        exists = vector_column_type(conn, names) is not None
        if not exists:
            try:
                with conn.transaction():
                    create_pair_tables(
                        conn,
                        names,
                        key_type=wanted.key_type,
                        dimensions=wanted.dimensions,
                        storage=wanted.storage,
                    )
            except DatabaseError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                    raise
                raise SchemaMissing(
                    f'the tables of source "{names.source}", model "{names.model}" do not exist'
                    " and this role may not create them; run `embedkeeper migrate` as the"
                    " owner of schema embedkeeper (then the README's GRANT block)"
                ) from exc
        record_pair(conn, names, wanted)
    return not exists
