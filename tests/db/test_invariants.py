"""The fault tests' invariants can fail: a half-written document (a record whose chunks are not
all there, or not numbered 0..n-1) and a record of other chunking settings are caught."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair
from tests.conftest import insert_docs
from tests.invariants import check_invariants

CHUNKING = "text:254:32:1024:tokens"


def write(
    conn: psycopg.Connection[Any], chunks: list[int], chunk_count: int, chunking: str
) -> None:
    """One document, its record saying `chunk_count` chunks of `chunking`, and the chunks
    numbered as `chunks` says."""
    names = PairNames.of("docs", "minilm")
    ensure_pair(conn, names, PairRecord("public.docs", "bigint", 384, "vector"))
    conn.execute("UPDATE embedkeeper.pairs SET chunking = %s", (CHUNKING,))
    (doc,) = insert_docs(conn, ["some text"])
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (document_id, content_hash, chunking, chunk_count, token_count,"
            " truncated) VALUES (%s, decode(md5('some text'), 'hex'), %s, %s, 3, false)"
        ).format(names.documents),
        (doc, chunking, chunk_count),
    )
    for seq in chunks:
        conn.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, 0, 4, 'some', %s)").format(names.chunks),
            (doc, seq, np.eye(384, dtype=np.float32)[0]),
        )


def test_a_whole_document_of_the_pairs_settings_passes(conn):
    write(conn, [0, 1], 2, CHUNKING)
    check_invariants(conn)
    check_invariants(conn, chunking=CHUNKING)


@pytest.mark.parametrize(
    ("chunks", "chunk_count"),
    [([0], 2), ([0, 1, 2], 2), ([1, 2], 2), ([], 1)],
    ids=["a chunk missing", "a chunk too many", "not numbered from 0", "no chunk at all"],
)
def test_a_half_written_document_is_caught(conn, chunks, chunk_count):
    write(conn, chunks, chunk_count, CHUNKING)
    with pytest.raises(AssertionError, match="records whose chunks are not all there"):
        check_invariants(conn)


def test_a_record_of_other_chunking_settings_is_caught(conn):
    write(conn, [0], 1, "none")
    with pytest.raises(AssertionError, match="records of other chunking settings"):
        check_invariants(conn)
