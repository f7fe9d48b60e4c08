"""Pruning: the vectors and failures of documents that are gone, blank or out of scope.

Housekeeping that one instance does for all: a transaction-scoped advisory lock lets one instance
prune a model at a time, and the others skip it (None: the one pruning covers them). When a pass
prunes, and which of these it runs, is the plan's decision (sync/plan.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.source.queries import SourceQueries


def prune_all(conn: psycopg.Connection[Any], queries: SourceQueries, model: str) -> int | None:
    """Everything that is no longer a document to embed: deleted, blank, or out of `where`."""
    return _locked(conn, queries, queries.prune(), model, "pruning vectors of deleted documents")


def prune_deleted(conn: psycopg.Connection[Any], queries: SourceQueries, model: str) -> int | None:
    """Only documents whose key is gone (reads the source's key index, not its rows): the prune
    after deletes, when rows that changed were pruned by prune_changed."""
    return _locked(
        conn, queries, queries.prune_deleted(), model, "pruning vectors of deleted documents"
    )


def prune_changed(
    conn: psycopg.Connection[Any], queries: SourceQueries, model: str, since: datetime
) -> int:
    """Documents changed since `since` that went blank or out of scope (no lock: it deletes
    only what the walk's own rows say, and a peer doing the same deletes the same rows)."""
    with mapped_errors("pruning vectors of changed documents"):
        row = conn.execute(queries.prune_changed(), {"model": model, "since": since}).fetchone()
    return int(row[0]) if row else 0


def _locked(
    conn: psycopg.Connection[Any],
    queries: SourceQueries,
    statement: sql.Composed,
    model: str,
    doing: str,
) -> int | None:
    with mapped_errors(doing), conn.transaction():
        pair = locks.pair_key(queries.source.source_name, model)
        if not locks.take(conn, "pg_try_advisory_xact_lock", locks.PRUNE, pair):
            return None
        row = conn.execute(statement, {"model": model}).fetchone()
    return int(row[0]) if row else 0
