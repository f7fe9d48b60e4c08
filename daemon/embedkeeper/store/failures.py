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


def _filters(
    model: str | None, ids: list[str], id_type: str
) -> tuple[sql.Composable, dict[str, Any]]:
    clauses: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {}
    if model is not None:
        clauses.append(sql.SQL("model = %(model)s"))
        params["model"] = model
    if ids:
        clauses.append(sql.SQL("document_id = ANY(%(ids)s::{}[])").format(sql.SQL(id_type)))
        params["ids"] = parse_ids(ids, id_type)
    return sql.SQL(" AND ").join(clauses), params


def list_failures(
    conn: psycopg.Connection[Any], id_type: str, model: str | None, ids: list[str], every: bool
) -> list[Failure]:
    where, params = _filters(model, ids, id_type)
    statuses = ["review", "retry", "ignored"] if every else ["review"]
    query = sql.SQL(
        "SELECT model, document_id, attempts, status, error_class, message, first_seen,"
        " last_seen, next_retry_at FROM embedkeeper.failures WHERE {} AND status = ANY(%(st)s)"
        " ORDER BY model, last_seen DESC, document_id"
    ).format(where)
    with mapped_errors("listing failures"):
        rows = conn.execute(query, {**params, "st": statuses}).fetchall()
    return [Failure(*row) for row in rows]


def retry_failures(
    conn: psycopg.Connection[Any], id_type: str, model: str | None, ids: list[str]
) -> int:
    """Put documents in review (or ignored) back in the queue with a fresh attempt count."""
    return _move(
        conn,
        _filters(model, ids, id_type),
        "status = 'retry', attempts = 0, next_retry_at = now()",
        ("review", "ignored"),
        "re-queuing failures",
    )


def ignore_failures(
    conn: psycopg.Connection[Any], id_type: str, model: str | None, ids: list[str]
) -> int:
    """Stop retrying these documents and drop them from coverage's failed count."""
    return _move(
        conn,
        _filters(model, ids, id_type),
        "status = 'ignored', next_retry_at = NULL",
        ("review", "retry"),
        "ignoring failures",
    )


def _move(
    conn: psycopg.Connection[Any],
    selection: tuple[sql.Composable, dict[str, Any]],
    assignments: LiteralString,
    from_statuses: tuple[str, ...],
    doing: str,
) -> int:
    """One UPDATE of the selected failures that are in one of `from_statuses`."""
    where, params = selection
    query = sql.SQL(
        "UPDATE embedkeeper.failures SET {} WHERE {} AND status = ANY(%(from)s)"
    ).format(sql.SQL(assignments), where)
    with mapped_errors(doing):
        return conn.execute(query, {**params, "from": list(from_statuses)}).rowcount
