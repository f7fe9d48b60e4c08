"""The invariants every fault test ends with: nothing lost, nothing doubled, every vector true to
its document's current text, work bounded, error texts clean."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from tests.pairs import pair_table


def check_invariants(
    conn: psycopg.Connection[Any],
    *,
    model: str = "minilm",
    table: str = "docs",
    dimensions: int = 384,
    settled: bool = True,
    secrets: Iterable[str] = (),
    chunking: str | None = None,
) -> None:
    """`settled`: no worker runs any more, so every document must be done, skipped or in review
    (nothing stuck in a claim) and no advisory lock may be held. `chunking`: the fingerprint
    every record must carry (default: the one the pair records, which every writer is held
    to)."""
    source = sql.Identifier(table)
    records, chunks, failures = (
        sql.SQL(pair_table(kind, model, table)) for kind in ("documents", "chunks", "failures")
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT s.id, s.body, e.document_id IS NOT NULL,"
            " e.content_hash = decode(md5(s.body), 'hex'), f.status FROM {} s"
            " LEFT JOIN {} e ON e.document_id = s.id"
            " LEFT JOIN {} f ON f.document_id = s.id"
        ).format(source, records, failures)
    ).fetchall()
    orphans = conn.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {records} e WHERE NOT EXISTS"
            " (SELECT 1 FROM {s} s WHERE s.id = e.document_id))"
            " + (SELECT count(*) FROM {chunks} c WHERE NOT EXISTS"
            " (SELECT 1 FROM {records} e WHERE e.document_id = c.document_id))"
        ).format(s=source, records=records, chunks=chunks)
    ).fetchone()
    assert orphans == (0,), "vectors of deleted documents"
    check_whole(conn, records, chunks)
    check_passages(conn, source, records, chunks)
    check_chunking(conn, records, (table, model), chunking)
    stale = [r[0] for r in rows if r[2] and not r[3] and r[4] is None]
    if settled:
        assert stale == [], f"vectors that do not match their text: {stale[:10]}"
        lost = [
            r[0]
            for r in rows
            if r[1] is not None and r[1].strip() and not r[2] and r[4] not in ("review", "ignored")
        ]
        assert lost == [], f"documents neither embedded, skipped nor in review: {lost[:10]}"
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert locks.fetchone() == (0,), "claims still held"
    for (vector,) in conn.execute(sql.SQL("SELECT embedding FROM {}").format(chunks)):
        values = vector.to_numpy()
        assert values.shape == (dimensions,)
        assert np.all(np.isfinite(values))
        assert np.linalg.norm(values) > 0
    for (message,) in conn.execute(sql.SQL("SELECT message FROM {}").format(failures)):
        assert len(message) <= 500
        assert "\x00" not in message
        for secret in secrets:
            assert secret not in message


def check_whole(conn: psycopg.Connection[Any], records: sql.SQL, chunks: sql.SQL) -> None:
    """Never half-written: every record's chunk_count is its chunks' count, numbered 0..n-1
    (the record and all its chunks commit together, whatever kills the writer)."""
    half = conn.execute(
        sql.SQL(
            "SELECT e.document_id FROM {records} e LEFT JOIN ("
            " SELECT document_id, count(*) AS n, min(chunk) AS lo, max(chunk) AS hi"
            " FROM {chunks} GROUP BY document_id) c ON c.document_id = e.document_id"
            " WHERE coalesce(c.n, 0) <> e.chunk_count OR c.lo <> 0 OR c.hi <> c.n - 1"
            " ORDER BY 1 LIMIT 10"
        ).format(records=records, chunks=chunks)
    ).fetchall()
    assert half == [], f"records whose chunks are not all there: {[r[0] for r in half]}"


def check_passages(
    conn: psycopg.Connection[Any], source: sql.Identifier, records: sql.SQL, chunks: sql.SQL
) -> None:
    """Every chunk of a current record is its passage of the current text: text[char_start:
    char_end] (PostgreSQL's substr counts characters as Python does). A vector kept from an
    earlier text (reuse) must still sit on its passage."""
    misplaced = conn.execute(
        sql.SQL(
            "SELECT c.document_id, c.chunk FROM {chunks} c"
            " JOIN {records} e ON e.document_id = c.document_id"
            " JOIN {s} s ON s.id = c.document_id"
            " WHERE e.content_hash = decode(md5(s.body), 'hex')"
            " AND substr(s.body, c.char_start + 1, c.char_end - c.char_start) <> c.passage"
            " ORDER BY 1, 2 LIMIT 10"
        ).format(chunks=chunks, records=records, s=source)
    ).fetchall()
    assert misplaced == [], f"chunks that are not their passage of the current text: {misplaced}"


def check_chunking(
    conn: psycopg.Connection[Any],
    records: sql.SQL,
    pair: tuple[str, str],
    expected: str | None,
) -> None:
    """Every record is of the expected chunking settings, and the pair records them."""
    found = [
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT DISTINCT chunking FROM {} ORDER BY 1").format(records)
        )
    ]
    if not found:
        return
    row = conn.execute(
        "SELECT chunking FROM embedkeeper.pairs WHERE source = %s AND model = %s", pair
    ).fetchone()
    recorded = None if row is None else row[0]
    assert recorded is not None, f"records but no chunking recorded for the pair {pair}"
    expected = expected or recorded
    assert recorded == expected, f"the pair records {recorded}, not {expected}"
    assert found == [expected], f"records of other chunking settings: {found}"


def calls_bounded(calls: int, documents: int, faults: int) -> bool:
    """Embedding work stays within documents x (1 + injected faults)."""
    return calls <= documents * (1 + faults)
