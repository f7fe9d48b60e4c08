"""The runs table: one row per pass per (source, model) pair, with its counts and throughput."""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg

from embedkeeper.records import RunStats
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair


def start_run(conn: psycopg.Connection[Any], pair: Pair, trigger: str) -> int:
    """A run row for a pass of this pair, its process named (host, pid, database session)."""
    close_abandoned_runs(conn)
    row = conn.execute(
        "INSERT INTO embedkeeper.runs (source, model, trigger, host, pid, backend_pid)"
        " VALUES (%s, %s, %s, %s, %s, pg_backend_pid()) RETURNING id",
        (pair.source_name, pair.model_name, trigger, socket.gethostname(), os.getpid()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def close_abandoned_runs(conn: psycopg.Connection[Any]) -> int:
    """Runs whose session is gone (their process was killed) will never finish: say so."""
    return conn.execute(
        "UPDATE embedkeeper.runs SET status = 'abandoned', finished_at = now()"
        " WHERE status = 'running'"
        " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = runs.backend_pid)"
    ).rowcount


def adopt_run(conn: psycopg.Connection[Any], run_id: int) -> None:
    """After a reconnect, the run lives in the new session."""
    conn.execute(
        "UPDATE embedkeeper.runs SET backend_pid = pg_backend_pid(), status = 'running'"
        " WHERE id = %s",
        (run_id,),
    )


def finish_run(
    conn: psycopg.Connection[Any],
    run_id: int,
    stats: RunStats,
    *,
    status: str,
    deleted: int = 0,
    error: str | None = None,
) -> None:
    """The run's outcome and counts: `tokens` and `chunks_embedded` are what the model was sent,
    `chunks_reused` and `tokens_reused` what the documents kept of their stored vectors."""
    conn.execute(
        "UPDATE embedkeeper.runs SET status = %s, finished_at = now(), docs_ok = %s,"
        " docs_failed = %s, docs_skipped = %s, docs_deleted = %s, tokens = %s,"
        " chunks_embedded = %s, chunks_reused = %s, tokens_reused = %s,"
        " docs_per_s = %s, tokens_per_s = %s, error = %s WHERE id = %s",
        (
            status,
            stats.ok,
            stats.failed,
            stats.skipped,
            deleted,
            stats.tokens,
            stats.chunks,
            stats.reused_chunks,
            stats.reused_tokens,
            round(stats.docs_per_s, 3),
            round(stats.tokens_per_s, 3),
            error,
            run_id,
        ),
    )


PRUNE = (
    "DELETE FROM embedkeeper.runs WHERE id IN ("
    " SELECT id FROM embedkeeper.runs WHERE finished_at < now() - make_interval(secs => %s)"
    " ORDER BY finished_at LIMIT %s)"
)


def prune_runs(conn: psycopg.Connection[Any], keep_s: float, *, batch: int = 10_000) -> int:
    """Delete finished runs older than `keep_s`, oldest first, in batches of `batch` rows (each
    its own short statement on an autocommit connection, so a first prune of a long history
    holds no lock for long). Each batch is a range at the old end of runs_finished_idx: the cost
    follows the rows deleted, not the history kept. Running rows (no finish time) are kept."""
    pruned = 0
    while True:
        with mapped_errors("pruning embedkeeper.runs"):
            deleted = conn.execute(PRUNE, (keep_s, batch)).rowcount
        pruned += deleted
        if deleted < batch:
            return pruned
