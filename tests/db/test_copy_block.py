"""The numpy-built COPY block lands in PostgreSQL exactly as psycopg's row-by-row COPY does."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from psycopg import sql

from embedkeeper.records import Document, Embedded
from embedkeeper.store.copy_block import copy_block
from tests.fakes import unit_vector

COLUMNS = "document_id, embedding, content_hash, source_updated_at, token_count, truncated"


def batch(ids, updated_at):
    out = []
    for n, doc_id in enumerate(ids):
        text = f"text {n}"
        doc = Document(
            id=doc_id,
            text=text,
            cut=False,
            content_hash=hashlib.md5(text.encode()).digest(),
            updated_at=updated_at(n),
        )
        out.append(Embedded(doc, unit_vector(text), token_count=n * 7, truncated=n % 2 == 1))
    return out


def load(conn, table, id_type, embedded, *, block):
    name = sql.Identifier(table)
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (document_id {}, embedding vector, content_hash bytea,"
            " source_updated_at timestamptz, token_count integer, truncated boolean)"
        ).format(name, sql.SQL(id_type))
    )
    with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)) as copy:
        if block:
            data = copy_block(embedded, id_type)
            assert data is not None
            copy.write(data)
        else:
            copy.set_types([id_type, "vector", "bytea", "timestamptz", "int4", "bool"])
            for e in embedded:
                d = e.document
                copy.write_row(
                    (d.id, e.vector, d.content_hash, d.updated_at, e.token_count, e.truncated)
                )
    query = sql.SQL("SELECT {} FROM {} ORDER BY document_id").format(sql.SQL(COLUMNS), name)
    return conn.execute(query).fetchall()


@pytest.mark.parametrize(
    ("id_type", "ids", "updated_at"),
    [
        ("bigint", [1, 2**40, -5, 9_000_000_000_000], lambda n: None),
        (
            "bigint",
            [3, 1, 2],
            lambda n: datetime(2026, 11, 23, 1, 2, 3, 456789, tzinfo=UTC) - timedelta(days=n),
        ),
        (
            "uuid",
            [uuid.UUID(int=n * 7919 + 1) for n in range(5)],
            lambda n: datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=5))),
        ),
    ],
)
def test_a_block_lands_like_rows(conn, id_type, ids, updated_at):
    embedded = batch(ids, updated_at)

    by_block = load(conn, "by_block", id_type, embedded, block=True)
    by_rows = load(conn, "by_rows", id_type, embedded, block=False)

    assert len(by_block) == len(ids)
    for a, b in zip(by_block, by_rows, strict=True):
        assert a[0] == b[0]
        assert np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
        assert a[2:] == b[2:]


def test_rows_of_different_shapes_go_row_by_row():
    mixed_times = batch([1, 2], lambda n: None if n else datetime.now(UTC))
    naive = batch([1], lambda n: datetime(2026, 1, 1))
    text_keys = batch(["a", "b"], lambda n: None)
    assert copy_block(mixed_times, "bigint") is None
    assert copy_block(naive, "bigint") is None
    assert copy_block(text_keys, "text") is None
    assert copy_block([], "bigint") is None
