"""The chunks' COPY block lands in PostgreSQL exactly as psycopg's row-by-row COPY does."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector
from psycopg import sql

from embedkeeper.records import ChunkedEmbedding, Document, EmbeddedChunk
from embedkeeper.store.pass_io.chunk_copy import chunks_block

COLUMNS = "document_id, chunk, char_start, char_end, passage, embedding"
# Passages of every width the UTF-8 encoding has, an empty one, and a long one.
PASSAGES = [
    "plain ascii",
    "café crème",
    "日本語のテキスト",
    "emoji \U0001f9ea\U0001f680 and \U0001d518",
    "",
    "x" * 70_000,
]


def documents(ids: list[Any], dims: int = 5) -> list[ChunkedEmbedding]:
    rng = np.random.default_rng(7)
    out = []
    for n, doc_id in enumerate(ids):
        text = " ".join(PASSAGES[: n % len(PASSAGES) + 1])
        chunks, at = [], 0
        for seq, passage in enumerate(PASSAGES[: n % len(PASSAGES) + 1]):
            start = text.index(passage, at)
            vector = rng.standard_normal(dims).astype(np.float32)
            chunks.append(EmbeddedChunk(seq, start, start + len(passage), passage, vector))
            at = start + len(passage)
        document = Document(doc_id, text, False, hashlib.md5(text.encode()).digest())
        out.append(ChunkedEmbedding(document, "text:5:0:0:tokens", tuple(chunks), 9, False))
    return out


def load(
    conn: psycopg.Connection[Any],
    table: str,
    id_type: str,
    storage: str,
    embedded: Any,
    *,
    block: bool,
) -> list[Any]:
    name = sql.Identifier(table)
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (document_id {}, chunk integer, char_start integer,"
            " char_end integer, passage text, embedding {})"
        ).format(name, sql.SQL(id_type), sql.SQL(storage))
    )
    with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(name)) as copy:
        if block:
            data = chunks_block(embedded, id_type, storage, conn.info.encoding)
            assert data is not None
            copy.write(data)
        else:
            copy.set_types([id_type, "int4", "int4", "int4", "text", storage])
            wrap: Any = HalfVector if storage == "halfvec" else (lambda v: v)
            for e in embedded:
                for c in e.chunks:
                    copy.write_row((e.document.id, c.seq, c.start, c.end, c.text, wrap(c.vector)))
    query = sql.SQL("SELECT {} FROM {} ORDER BY document_id, chunk").format(sql.SQL(COLUMNS), name)
    return conn.execute(query).fetchall()


@pytest.mark.parametrize("storage", ["vector", "halfvec"])
@pytest.mark.parametrize(
    ("id_type", "ids"),
    [
        ("bigint", [1, -5, 2**62, 0, 77, 78, 79]),
        ("uuid", [uuid.UUID(int=n * 7919 + 1) for n in range(7)]),
        ("text", ["a", "b/é", "日本", "", "key with spaces", "\U0001f9ea", "z" * 3000]),
    ],
)
def test_block_matches_row_by_row(
    conn: psycopg.Connection[Any], id_type: str, ids: list[Any], storage: str
):
    embedded = documents(ids)
    by_block = load(conn, "by_block", id_type, storage, embedded, block=True)
    by_rows = load(conn, "by_rows", id_type, storage, embedded, block=False)
    assert len(by_block) == sum(len(e.chunks) for e in embedded) == 22
    assert [row[:5] for row in by_block] == [row[:5] for row in by_rows]
    for a, b in zip(by_block, by_rows, strict=True):
        np.testing.assert_array_equal(a[5].to_numpy(), b[5].to_numpy())
        assert a[5].to_numpy().shape == (5,)
    # The passages arrive as they were, whatever their width.
    assert {row[4] for row in by_block} == set(PASSAGES)


def test_rows_of_another_shape_go_row_by_row() -> None:
    """Vectors of two sizes, a key not of the column's type, or a non-UTF-8 client: no block,
    the caller writes rows."""
    mixed = documents([1]) + documents([2], dims=6)
    assert chunks_block(mixed, "bigint", "vector", "utf-8") is None
    assert chunks_block(documents(["a", "b"]), "bigint", "vector", "utf-8") is None
    assert chunks_block(documents([1]), "bigint", "vector", "latin-1") is None
    assert chunks_block([], "bigint", "vector", "utf-8") is None
    assert chunks_block(documents([1, 2]), "bigint", "vector", "utf-8") is not None
