"""A source's serving view: `embedkeeper.<source>`, the name an application searches, showing
one of the source's pairs (its *serving* model).

Each pair's own view is named after its model (`embedkeeper.documents__minilm`), so a new model
meant a new name in every application's SQL at the moment its pair was complete. The serving
view reads the serving pair's view (current chunks only, `where` applied) with the same columns,
and `embedkeeper switch` points it at another pair.

The swap is CREATE OR REPLACE VIEW, which keeps the view's identity (its OID, grants and any
view of the user's built on it) and takes an ACCESS EXCLUSIVE lock until the transaction
commits: a query that started before it reads the old pair to its end, one that starts after
it reads the new, and each statement plans against one definition, so a reader sees the old
pair's rows or the new's, never none and never both. DROP and CREATE would lose the grants, and
a reader could meet the gap between them.

CREATE OR REPLACE VIEW keeps each column's name and type, so the view's `embedding` is the
pair's type without its size (`vector`, not `vector(384)`): pairs of 384 and 768 dimensions take
turns behind one view. The cast is a relabel PostgreSQL sees through, so `ORDER BY embedding
<=> $1` still uses the serving pair's HNSW index. What cannot change in place is refused with the
way out: `vector` against `halfvec` storage, and a `full_text` column one pair has and the other
lacks (`migrate` gives every pair of a source the same).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.errors import DatabaseError, NotOwner, SchemaMissing
from embedkeeper.models.schema import SCHEMA
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames, vector_column_type

# The embedding column's type without its size, by the pair's storage: a fixed list, so no
# catalog text is ever pasted into a statement.
UNSIZED = {"vector": sql.SQL("vector"), "halfvec": sql.SQL("halfvec")}


class ServingViewError(DatabaseError):
    """The serving view cannot show this pair; run `embedkeeper migrate`."""


def serving_view(source: str) -> sql.Identifier:
    """The serving view of a source, in SQL (its name: models/pairs.py serving_name_problem)."""
    return sql.Identifier(SCHEMA, source)


def view_columns(conn: psycopg.Connection[Any], view: sql.Identifier) -> list[str]:
    """The columns of a view (or any relation) in order; [] when it does not exist."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (view.as_string(conn),),
    ).fetchall()
    return [str(row[0]) for row in rows]


def point_serving_view(conn: psycopg.Connection[Any], source: str, names: PairNames) -> None:
    """Make the source's serving view, or replace it, to show the pair's view. The caller owns
    the transaction (a switch records itself in the same one)."""
    pair = f"{names.source}/{names.model}"
    columns = view_columns(conn, names.view)
    column_type = vector_column_type(conn, names) or ""
    storage = column_type.partition("(")[0]
    if not columns or storage not in UNSIZED:
        raise SchemaMissing(
            f"the pair {pair} has no view or tables to serve; run `embedkeeper migrate`"
        )
    select = [
        sql.SQL("v.{col}::{type} AS {col}").format(col=sql.Identifier(c), type=UNSIZED[storage])
        if c == "embedding"
        else sql.SQL("v.{}").format(sql.Identifier(c))
        for c in columns
    ]
    statement = sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM {pair} AS v"
    ).format(view=serving_view(source), columns=sql.SQL(", ").join(select), pair=names.view)
    try:
        with mapped_errors(f"making the serving view embedkeeper.{source}"), conn.transaction():
            conn.execute(statement)  # in a savepoint: the messages below read the catalog
    except DatabaseError as exc:
        explained = _explained(conn, source, pair, exc, (columns, storage))
        if explained is exc:
            raise
        raise explained from exc


def _explained(
    conn: psycopg.Connection[Any],
    source: str,
    pair: str,
    exc: DatabaseError,
    wanted: tuple[list[str], str],
) -> DatabaseError:
    """The error of a CREATE OR REPLACE VIEW that failed, with its way out."""
    cause = exc.__cause__
    if isinstance(cause, psycopg.errors.InvalidTableDefinition):  # a column cannot change
        columns, storage = wanted
        shown = view_columns(conn, serving_view(source))
        return ServingViewError(
            f"the serving view embedkeeper.{source} cannot show {pair} in place: its columns"
            f" ({', '.join(shown)}; embedding {_served_type(conn, source)}) differ from the"
            f" pair's ({', '.join(columns)}; embedding {storage}): {_first_line(cause)}; run"
            " `embedkeeper migrate` so that every pair of the source has the same full_text"
            " column (a vector pair and a halfvec pair cannot take turns behind one view)"
        )
    if isinstance(cause, psycopg.errors.WrongObjectType):
        return ServingViewError(
            f"embedkeeper.{source} exists and is not a view, so it cannot be the serving view of"
            f' source "{source}"; give the source another name ([[sources]] name)'
        )
    if isinstance(cause, psycopg.errors.InsufficientPrivilege):
        return NotOwner(
            f"replacing the serving view embedkeeper.{source} needs its owner (the role that ran"
            " `embedkeeper migrate`): run this command as that role"
        )
    return exc


def serves(conn: psycopg.Connection[Any], source: str, names: PairNames) -> bool:
    """Whether the source's serving view reads this pair's view, by the catalog's record of
    what the view depends on (not by the switches table: this asks what readers see now)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_rewrite r"
        " JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid"
        " WHERE r.ev_class = to_regclass(%s) AND d.refclassid = 'pg_class'::regclass"
        " AND d.refobjid = to_regclass(%s))",
        (serving_view(source).as_string(conn), names.view.as_string(conn)),
    ).fetchone()
    return bool(row and row[0])


def _served_type(conn: psycopg.Connection[Any], source: str) -> str:
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
        (serving_view(source).as_string(conn),),
    ).fetchone()
    return "none" if row is None else str(row[0])


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def drop_serving_view_of(conn: psycopg.Connection[Any], names: PairNames) -> bool:
    """Drop the source's serving view if it reads this pair's view (which must go: `migrate`
    changing its full_text column); True then, and the caller makes it again. The caller owns
    the transaction."""
    if not view_columns(conn, serving_view(names.source)) or not serves(conn, names.source, names):
        return False
    conn.execute(sql.SQL("DROP VIEW {}").format(serving_view(names.source)))
    return True
