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
        row = conn.execute(
            pair.statements.prune_changed(), {"model": pair.model_name, "since": since}
        ).fetchone()
    return int(row[0]) if row else 0


def _locked(
    conn: psycopg.Connection[Any], pair: Pair, statement: sql.Composed, doing: str
) -> int | None:
    with mapped_errors(doing), conn.transaction():
        key = locks.pair_key(pair.source_name, pair.model_name)
        if not locks.take(conn, "pg_try_advisory_xact_lock", locks.PRUNE, key):
            return None
        row = conn.execute(statement, {"model": pair.model_name}).fetchone()
    return int(row[0]) if row else 0
