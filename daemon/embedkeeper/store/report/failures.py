"""The review queue: list documents that failed, re-queue them, or ignore them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from psycopg import sql

from embedkeeper.errors import UsageError
from embedkeeper.store.db import mapped_errors


@dataclass(frozen=True, slots=True)
class PairFailures:
    """One (source, model) pair's failures table."""

    model: str
    table: sql.Composable
    id_type: str


@dataclass(frozen=True, slots=True)
class Failure:
    model: str
    document_id: object
    attempts: int
    status: str
    error_class: str
    message: str
    first_seen: datetime
    last_seen: datetime
    next_retry_at: datetime | None


def parse_ids(ids: list[str], id_type: str) -> list[Any]:
    """Document ids from the command line, in the key's type, so a typo is a usage error."""
    parse: Callable[[str], Any] = {"bigint": int, "uuid": UUID}.get(id_type, str)
    try:
        return [parse(i) for i in ids]
    except ValueError as exc:
        raise UsageError(
            f"document ids must be of the source key's type ({id_type}): {exc}"
        ) from exc


def _filters(ids: list[str], id_type: str) -> tuple[sql.Composable, dict[str, Any]]:
    if not ids:
        return sql.SQL("TRUE"), {}
    return (
        sql.SQL("document_id = ANY(%(ids)s::{}[])").format(sql.SQL(id_type)),
        {"ids": parse_ids(ids, id_type)},
    )


def list_failures(
    conn: psycopg.Connection[Any], pair: PairFailures, ids: list[str], every: bool
) -> list[Failure]:
    where, params = _filters(ids, pair.id_type)
    statuses = ["review", "retry", "ignored"] if every else ["review"]
    query = sql.SQL(
        "SELECT %(model)s, document_id, attempts, status, error_class, message, first_seen,"
        " last_seen, next_retry_at FROM {} WHERE {} AND status = ANY(%(st)s)"
        " ORDER BY last_seen DESC, document_id"
    ).format(pair.table, where)
    with mapped_errors("listing failures"):
        rows = conn.execute(query, {**params, "st": statuses, "model": pair.model}).fetchall()
    return [Failure(*row) for row in rows]


def retry_failures(conn: psycopg.Connection[Any], pair: PairFailures, ids: list[str]) -> int:
    """Put documents in review (or ignored) back in the queue with a fresh attempt count."""
    return _move(
        conn,
        pair,
        _filters(ids, pair.id_type),
        "status = 'retry', attempts = 0, next_retry_at = now()",
        ("review", "ignored"),
        "re-queuing failures",
    )


def ignore_failures(conn: psycopg.Connection[Any], pair: PairFailures, ids: list[str]) -> int:
    """Stop retrying these documents and drop them from coverage's failed count."""
    return _move(
        conn,
        pair,
        _filters(ids, pair.id_type),
        "status = 'ignored', next_retry_at = NULL",
        ("review", "retry"),
        "ignoring failures",
    )


def _move(
    conn: psycopg.Connection[Any],
    pair: PairFailures,
    selection: tuple[sql.Composable, dict[str, Any]],
    assignments: LiteralString,
    from_statuses: tuple[str, ...],
    doing: str,
) -> int:
    """One UPDATE of the selected failures that are in one of `from_statuses`."""
    where, params = selection
    query = sql.SQL("UPDATE {} SET {} WHERE {} AND status = ANY(%(from)s)").format(
        pair.table, sql.SQL(assignments), where
    )
    with mapped_errors(doing):
        return conn.execute(query, {**params, "from": list(from_statuses)}).rowcount
