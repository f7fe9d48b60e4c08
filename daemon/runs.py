"""The runs table: one row per pass per model, with its counts and throughput."""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg

from daemon.pipeline import RunStats


def start_run(conn: psycopg.Connection[Any], model: str, trigger: str) -> int:
    row = conn.execute(
        "INSERT INTO embedkeeper.runs (model, trigger, host, pid) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (model, trigger, socket.gethostname(), os.getpid()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(
    conn: psycopg.Connection[Any],
    run_id: int,
    stats: RunStats,
    *,
    status: str,
    deleted: int = 0,
    error: str | None = None,
) -> None:
    conn.execute(
        "UPDATE embedkeeper.runs SET status = %s, finished_at = now(), docs_ok = %s,"
        " docs_failed = %s, docs_skipped = %s, docs_deleted = %s, tokens = %s,"
        " docs_per_s = %s, tokens_per_s = %s, error = %s WHERE id = %s",
        (
            status,
            stats.ok,
            stats.failed,
            stats.skipped,
            deleted,
            stats.tokens,
            round(stats.docs_per_s, 3),
            round(stats.tokens_per_s, 3),
            error,
            run_id,
        ),
    )
