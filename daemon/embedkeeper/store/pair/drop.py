"""Dropping a (source, model) pair: its view, tables (their indexes go with them), and every row
that names it in embedkeeper's own tables, in one transaction.

What a model change leaves behind: once another model serves the source (`switch`) and the old
one is out of the config, its tables hold vectors nobody reads. The pair that serves its source
is refused here, whatever the caller says: the serving view reads its view, and dropping it
would leave the source's name pointing at nothing. The `runs` history and the `switches` rows
are kept (they are what happened); the model's registry row goes with its last pair, so the name
may later stand for a model of another size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.errors import ConfigError, DatabaseError, NotOwner
from embedkeeper.models.pairs import RelationNames
from embedkeeper.models.schema import SCHEMA
from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.serving.serving_view import serves

# The rows that name a pair, by table: what drop_pair deletes beside the registry row.
STATE_TABLES = ("sync_state", "inflight", "deferred_indexes")


class ServingPairRefused(ConfigError):
    """This pair serves its source; switch the source to another model first."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """What went: the relations (view and tables) and the rows of each state table."""

    relations: tuple[str, ...]
    rows: dict[str, int]
    model_unregistered: bool


def recorded_pairs(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Every (source, model) pair embedkeeper.pairs records, in order."""
    with mapped_errors("reading the pairs"):
        rows = conn.execute("SELECT source, model FROM embedkeeper.pairs ORDER BY 1, 2").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def drop_pair(conn: psycopg.Connection[Any], names: PairNames, serving: str | None) -> Dropped:
    """Drop the pair, or refuse: unknown to embedkeeper.pairs, or the pair `serving` names (the
    newest switch, read by the caller; checked again here against the view's own dependencies,
    under the switches' lock, so a switch cannot point the view at it meanwhile)."""
    pair = f"{names.source}/{names.model}"
    if (names.source, names.model) not in recorded_pairs(conn):
        known = ", ".join(f"{s}/{m}" for s, m in recorded_pairs(conn)) or "none"
        raise ConfigError(f"no pair {pair} in this database (pairs: {known})")
    try:
        with mapped_errors(f"dropping the pair {pair}"), conn.transaction():
            locks.take(conn, "pg_advisory_xact_lock", locks.SERVING, names.source)
            locks.take(conn, "pg_advisory_xact_lock", locks.PAIRS, names.base)
            if serving == names.model or serves(conn, names.source, names):
                raise ServingPairRefused(
                    f"{pair} serves source {names.source} (the view embedkeeper.{names.source}"
                    f" reads it): run `embedkeeper switch {names.source} OTHER_MODEL` first"
                )
            return _drop(conn, names)
    except DatabaseError as exc:
        cause = exc.__cause__
        if isinstance(cause, psycopg.errors.InsufficientPrivilege):
            raise NotOwner(
                f"dropping the pair {pair} needs the owner of its tables (the role that ran"
                f" `embedkeeper migrate`): run `embedkeeper drop {names.source} {names.model}`"
                " as that role"
            ) from exc
        if isinstance(cause, psycopg.errors.DependentObjectsStillExist):
            raise DatabaseError(
                f"an object of yours depends on the pair {pair} ({cause.diag.message_detail});"
                " drop it first (nothing was dropped)"
            ) from exc
        raise


def _drop(conn: psycopg.Connection[Any], names: PairNames) -> Dropped:
    relations = RelationNames(names.base)
    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(names.view))
    # chunks first: their foreign key reads the documents table
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}, {}, {}").format(
            names.chunks, names.failures, names.documents
        )
    )
    rows = {}
    for table in STATE_TABLES:
        cursor = conn.execute(
            sql.SQL("DELETE FROM {} WHERE source = %s AND model = %s").format(
                sql.Identifier(SCHEMA, table)
            ),
            (names.source, names.model),
        )
        rows[table] = cursor.rowcount
    conn.execute(
        "DELETE FROM embedkeeper.pairs WHERE source = %s AND model = %s",
        (names.source, names.model),
    )
    unregistered = conn.execute(
        "DELETE FROM embedkeeper.models WHERE name = %s"
        " AND NOT EXISTS (SELECT FROM embedkeeper.pairs WHERE model = %s)",
        (names.model, names.model),
    ).rowcount
    dropped = (relations.view, relations.documents, relations.chunks, relations.failures)
    return Dropped(dropped, rows, bool(unregistered))
