"""Pruning: the vectors and failures of documents that are gone, blank or out of scope.

Housekeeping that one instance does for all: a transaction-scoped advisory lock lets one instance
prune a model at a time, and the others skip it (None: the one pruning covers them). When a pass
prunes, and which of these it runs, is the plan's decision (sync/plan.py).

A record's chunks are deleted by `delete_gone` after the record, in the same transaction but a
statement of its own: no foreign key cascades (its per-row check cost every chunk written more
than the row itself), and a statement after the records' delete sees what a writer committed
while the prune waited for a record's lock, which a second CTE of the same statement would not.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair


def prune_all(conn: psycopg.Connection[Any], pair: Pair) -> int | None:
    """Everything that is no longer a document to embed: deleted, blank, or out of `where`."""
    return _locked(conn, pair, pair.statements.prune(), "pruning vectors of deleted documents")


def prune_deleted(conn: psycopg.Connection[Any], pair: Pair) -> int | None:
    """Only documents whose key is gone (reads the source's key index, not its rows): the prune
    after deletes, when rows that changed were pruned by prune_changed."""
    return _locked(
        conn, pair, pair.statements.prune_deleted(), "pruning vectors of deleted documents"
    )


def prune_changed(conn: psycopg.Connection[Any], pair: Pair, since: datetime) -> int:
    """Documents changed since `since` that went blank or out of scope (no lock: it deletes
    only what the walk's own rows say, and a peer doing the same deletes the same rows)."""
    with mapped_errors("pruning vectors of changed documents"):
        params = {"model": pair.model_name, "since": since}
        return delete_gone(conn, pair, pair.statements.prune_changed(), params)


def delete_gone(
    conn: psycopg.Connection[Any], pair: Pair, statement: sql.Composed, params: dict[str, Any]
) -> int:
    """Run one of the pair's prune statements (which delete records and failures and return
    the records' ids), then delete those records' chunks; returns the records deleted."""
    with conn.transaction():
        row = conn.execute(statement, params).fetchone()
        ids = row[0] if row and row[0] else []
        if ids:
            conn.execute(pair.statements.delete_chunks(), {"ids": ids})
    return len(ids)


def _locked(
    conn: psycopg.Connection[Any], pair: Pair, statement: sql.Composed, doing: str
) -> int | None:
    with mapped_errors(doing), conn.transaction():
        key = locks.pair_key(pair.source_name, pair.model_name)
        if not locks.take(conn, "pg_try_advisory_xact_lock", locks.PRUNE, key):
            return None
        return delete_gone(conn, pair, statement, {"model": pair.model_name})
