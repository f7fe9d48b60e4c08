"""Start-up checks: everything that can be wrong with the database, the source or a model is
found here, before anything is written, and reported as one line that names the fix."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.config import ModelConfig, SourceConfig
from embedkeeper.config.values import quote_for_display
from embedkeeper.errors import DimensionMismatch, SchemaMissing, SourceNotFound
from embedkeeper.logs import event
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.source.source_sql import SourceSql

log = logging.getLogger(__name__)

HEAD_REVISION = "0012"  # tests/db/test_schema.py checks this against alembic's head
KEY_FAMILIES = {
    "smallint": "bigint",
    "integer": "bigint",
    "bigint": "bigint",
    "text": "text",
    "character varying": "text",
    "uuid": "uuid",
}


@dataclass(frozen=True, slots=True)
class SourceInfo:
    key_family: str  # bigint, text or uuid: the type embeddings.document_id must have
    columns: dict[str, str]  # name -> type


def _types(
    conn: psycopg.Connection[Any], source: SourceConfig
) -> dict[str, tuple[str, str]] | None:
    found = conn.execute(
        "SELECT to_regclass(CASE WHEN %(schema)s::text IS NULL THEN quote_ident(%(table)s)"
        " ELSE quote_ident(%(schema)s) || '.' || quote_ident(%(table)s) END)::oid",
        {"schema": source.schema, "table": source.table},
    ).fetchone()
    if found is None or found[0] is None:
        return None
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory FROM pg_attribute a"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (found[0],),
    ).fetchall()
    return {r[0]: (r[1].removesuffix("[]"), r[2]) for r in rows}


def inspect_source(conn: psycopg.Connection[Any], source: SourceConfig) -> SourceInfo:
    with mapped_errors("inspecting the source table"):
        types = _types(conn, source)
    name = source.display_name
    if types is None:
        raise SourceNotFound(
            f"table {name} does not exist (or is not visible to this role); "
            "set [source] table, e.g. table = 'public.documents'"
        )
    key_type, _ = _column(types, name, source.id_column, "id_column")
    if key_type not in KEY_FAMILIES:
        raise SourceNotFound(
            f'key column "{source.id_column}" of {name} is {key_type}; embedkeeper needs an '
            "integer, bigint, text or uuid key: set [source] id_column to such a column"
        )
    if not source.text_expression:  # an expression is checked on the query (_check_filter)
        text_type, category = _column(types, name, source.text_column, "text_column")
        if category != "S":
            raise SourceNotFound(
                f'text column "{source.text_column}" of {name} is {text_type}, not text; '
                "set [source] text_column to a text or varchar column, or use text_expression"
            )
    if source.updated_at_column:
        updated_type, category = _column(types, name, source.updated_at_column, "updated_at_column")
        if category != "D":
            raise SourceNotFound(
                f'updated_at column "{source.updated_at_column}" of {name} is {updated_type}; '
                "set [source] updated_at_column to a timestamp column, or remove it"
            )
        with mapped_errors("looking for an index on updated_at_column"):
            _warn_unless_indexed(conn, source)
    return SourceInfo(KEY_FAMILIES[key_type], {c: t for c, (t, _) in types.items()})


def _warn_unless_indexed(conn: psycopg.Connection[Any], source: SourceConfig) -> None:
    """A scheduled pass walks the updated_at column's index; without one it reads the table."""
    row = conn.execute(
        """
        SELECT c.relkind IN ('r', 'p') AND NOT EXISTS (
                   SELECT 1 FROM pg_index AS i
                   JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = c.oid AND a.attname = %(column)s)
        FROM pg_class AS c
        WHERE c.oid = to_regclass(CASE WHEN %(schema)s::text IS NULL THEN quote_ident(%(table)s)
                           ELSE quote_ident(%(schema)s) || '.' || quote_ident(%(table)s) END)
        """,
        {"schema": source.schema, "table": source.table, "column": source.updated_at_column},
    ).fetchone()
    if row and row[0]:
        columns = ", ".join(
            quote_for_display(c) for c in (source.updated_at_column or "", source.id_column)
        )
        event(
            log,
            logging.WARNING,
            "updated_at_not_indexed",
            table=source.display_name,
            column=source.updated_at_column,
            hint=f"CREATE INDEX ON {source.display_name} ({columns})",
        )


def _column(types: dict[str, tuple[str, str]], table: str, col: str, key: str) -> tuple[str, str]:
    """(type, category) of a column, or an error that lists the columns and the likely fix."""
    if col in types:
        return types[col]
    listing = ", ".join(quote_for_display(c) for c in types)
    hint = ""
    near = [c for c in types if c.lower() == col.lower()]
    if near and near[0] != near[0].lower():
        hint = f"; mixed-case names need quotes, e.g. '\"{near[0]}\"'"
    elif near:
        hint = f"; did you mean {near[0]} (unquoted: PostgreSQL folds it to lower case)?"
    raise SourceNotFound(
        f'table {table} has no column "{col}"; set [source] {key} (columns: {listing}){hint}'
    )


def check_pgvector(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        raise SchemaMissing(
            "the pgvector extension is not installed in this database; run `embedkeeper migrate` "
            "(it runs CREATE EXTENSION vector; the server needs pgvector installed)"
        )


def schema_revision(conn: psycopg.Connection[Any]) -> str | None:
    if conn.execute("SELECT to_regclass('embedkeeper.alembic_version')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT version_num FROM embedkeeper.alembic_version").fetchone()
    return str(row[0]) if row else None


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """pgvector, and embedkeeper's schema at head."""
    with mapped_errors("checking the database"):
        check_pgvector(conn)
        revision = schema_revision(conn)
        if revision != HEAD_REVISION:
            state = "missing" if revision is None else f"at revision {revision}"
            raise SchemaMissing(
                f"embedkeeper's schema is {state}, this version needs {HEAD_REVISION}; "
                "run `embedkeeper migrate`"
            )


def check_database(conn: psycopg.Connection[Any], source: SourceConfig) -> SourceSql:
    """pgvector, embedkeeper's schema at head, the source table and its columns, the key type."""
    check_schema(conn)
    info = inspect_source(conn, source)
    queries = SourceSql(source, info.key_family)
    _check_filter(conn, queries)
    return queries


TEXT_TYPES = {"text", "character varying", "character", "citext", "name"}


def _check_filter(conn: psycopg.Connection[Any], queries: SourceSql) -> None:
    """Run the source query with LIMIT 0: a bad `where` or `text_expression`, or a missing
    privilege, shows up now; so does an expression that does not produce text."""
    statement = sql.SQL("SELECT {id}, {text} FROM {documents} AS s LIMIT 0").format(
        id=queries.id, text=queries.text, documents=queries.documents
    )
    which = (
        "[source] where / text_expression" if queries.source.text_expression else "[source] where"
    )
    try:
        with conn.transaction():
            cursor = conn.execute(statement, {})
            text_oid = cursor.description[1].type_code if cursor.description else None
            type_name = conn.execute("SELECT format_type(%s, NULL)", (text_oid,)).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SourceNotFound(
            f"this role cannot read {queries.source.display_name}: {exc.diag.message_primary}; "
            "GRANT SELECT on it to the role in [database] url"
        ) from exc
    except (psycopg.errors.SyntaxError, psycopg.errors.UndefinedFunction) as exc:
        raise SourceNotFound(
            f"{which} is not valid SQL: {exc.diag.message_primary}; fix {which}"
        ) from exc
    except psycopg.errors.UndefinedColumn as exc:
        raise SourceNotFound(f"{which}: {exc.diag.message_primary}; fix {which}") from exc
    produced = type_name[0] if type_name else None
    if queries.source.text_expression and produced not in TEXT_TYPES:
        raise SourceNotFound(
            f"[source] text_expression produces {produced}, not text; decode it, e.g. "
            "convert_from(body_bytes, 'UTF8')"
        )


def check_model(conn: psycopg.Connection[Any], model: ModelConfig, actual_dims: int) -> None:
    """The configured dimensions must be the model's, and those of the vectors already stored."""
    if model.dimensions is not None and actual_dims != model.dimensions:
        raise DimensionMismatch(
            f'[[models]] "{model.name}" says dimensions = {model.dimensions} but model '
            f'"{model.model}" makes {actual_dims}-d vectors; set dimensions = {actual_dims}'
        )
    check_registry(conn, model, actual_dims)


def check_registry(conn: psycopg.Connection[Any], model: ModelConfig, dims: int) -> None:
    """Vectors already stored under this model name must have these dimensions."""
    stored = registered_dimensions(conn, model)
    if stored is not None and stored != dims:
        raise DimensionMismatch(
            f'model name "{model.name}" already holds {stored}-d vectors but its model makes '
            f"{dims}; give [[models]] a new name (or drop its pairs' tables in the schema "
            "embedkeeper and delete its row from embedkeeper.models)"
        )


def registered_dimensions(conn: psycopg.Connection[Any], model: ModelConfig) -> int | None:
    """The dimensions the model's vectors already have in this database (another pair of it
    made them), or None: a new pair of a known model needs no model loaded to make its tables."""
    with mapped_errors("reading the model registry"):
        row = conn.execute(
            "SELECT dimensions FROM embedkeeper.models WHERE name = %s", (model.name,)
        ).fetchone()
    return None if row is None else int(row[0])


def register_model(conn: psycopg.Connection[Any], model: ModelConfig, dims: int) -> None:
    with mapped_errors("registering the model"):
        conn.execute(
            "INSERT INTO embedkeeper.models (name, dimensions, backend, model_ref)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (model.name, dims, model.backend, model.model),
        )
    event(log, logging.DEBUG, "model_registered", model=model.name, dimensions=dims)
