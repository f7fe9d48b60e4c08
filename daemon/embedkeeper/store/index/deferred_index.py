"""Keeping a model's vector indexes out of the way of a big backfill (`backfill --defer-index`).

Every insert into a live HNSW index walks the graph, so a large backfill crawls (a few hundred rows
per second on two cores). `backfill --defer-index` drops the model's vector indexes first and
rebuilds them at the end, which builds the graph once, in bulk, with `maintenance_work_mem` and
parallel workers. Nothing is lost if the process dies in between: each index's `pg_get_indexdef`
is written to embedkeeper.deferred_indexes in the transaction that drops it, and deleted in the one
that rebuilds it (vector_index.restore_indexes), so at every commit either the index or its record
exists.

For as long as the indexes are down, the backfill holds a shared advisory lock on the model's
index key (vector_index.INDEX_LOCK); a rebuild needs the key exclusively, so of several deferring
backfills of one model the last one out rebuilds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.errors import DatabaseUnavailable, EmbedkeeperError
from embedkeeper.logs import event
from embedkeeper.store import locks
from embedkeeper.store.db import connect, mapped_errors
from embedkeeper.store.index.index_build import BuildSettings
from embedkeeper.store.index.vector_index import (
    INDEX_LOCK,
    IndexTarget,
    list_indexes,
    owner_needed,
    rebuildable,
    restore_indexes,
)

# Every index event is logged under one name, as it was before deferral had a module of its own.
log = logging.getLogger("embedkeeper.store.index.vector_index")

LARGE_BACKFILL = 10_000  # pending documents above which a live index earns a hint


def note_live_index(conn: psycopg.Connection[Any], target: IndexTarget, todo: int) -> None:
    """A hint when a large backfill is about to write into a live vector index."""
    if todo < LARGE_BACKFILL:
        return
    live = [i.name for i in list_indexes(conn, target) if i.state == "live"]
    if live:
        event(
            log,
            logging.INFO,
            "live_vector_index",
            model=target.model,
            indexes=",".join(live),
            pending=todo,
            hint="inserts into a live HNSW index are slow: consider backfill --defer-index",
        )


@contextmanager
def indexes_deferred(
    url: str, target: IndexTarget, settings: BuildSettings, *, timeout_s: float = 10.0
) -> Iterator[list[str]]:
    """Drop the model's vector indexes for the block (recorded first), rebuild them after it.

    A second interrupt (KeyboardInterrupt) skips the rebuild: the records stay for the next run.
    """
    conn = connect(url, timeout_s=timeout_s)
    try:
        with mapped_errors("locking the model's index"):
            locks.take(conn, "pg_advisory_lock_shared", INDEX_LOCK, target.key)
        dropped = _record_and_drop(conn, target)
        try:
            yield dropped
        except Exception:
            _rebuild_quietly(url, conn, target, settings, timeout_s)
            raise
        _release_and_rebuild(url, conn, target, settings, timeout_s)
    finally:
        conn.close()


def _record_and_drop(conn: psycopg.Connection[Any], target: IndexTarget) -> list[str]:
    model = target.model
    live = [i for i in list_indexes(conn, target) if i.state == "live"]
    for index in live:
        if not rebuildable(target, index.definition):  # it could not be rebuilt from a record
            event(log, logging.WARNING, "index_kept", model=model, index=index.name)
    live = [i for i in live if rebuildable(target, i.definition)]
    with owner_needed("dropping"), conn.transaction():
        for index in live:
            conn.execute(
                "INSERT INTO embedkeeper.deferred_indexes (index_name, source, model, definition)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (index_name) DO NOTHING",
                (index.name, target.source, model, index.definition),
            )
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS embedkeeper.{}").format(sql.Identifier(index.name))
            )
    names = [i.name for i in live]
    event(log, logging.INFO, "index_deferred", model=model, indexes=",".join(names) or "none")
    return names


def _release_and_rebuild(
    url: str,
    conn: psycopg.Connection[Any],
    target: IndexTarget,
    settings: BuildSettings,
    timeout_s: float,
) -> None:
    try:
        with mapped_errors("unlocking the model's index"):
            locks.take(conn, "pg_advisory_unlock_shared", INDEX_LOCK, target.key)
    except DatabaseUnavailable:  # the session, and its lock, are gone: rebuild on a new one
        with connect(url, timeout_s=timeout_s) as fresh:
            restore_indexes(fresh, target, settings)
        return
    restore_indexes(conn, target, settings)


def _rebuild_quietly(
    url: str,
    conn: psycopg.Connection[Any],
    target: IndexTarget,
    settings: BuildSettings,
    timeout_s: float,
) -> None:
    """On the way out of a failed backfill: rebuild if we can; if not, the record stays."""
    try:
        _release_and_rebuild(url, conn, target, settings, timeout_s)
    except EmbedkeeperError as exc:
        event(log, logging.WARNING, "index_rebuild_failed", model=target.model, detail=str(exc))
