"""A pair's writes: a document's record and all its chunks replaced in one transaction, fenced
by the document's current text; a reader never sees old and new chunks mixed."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector

from embedkeeper.errors import EmbedkeeperError
from embedkeeper.records import ChunkedEmbedding, Document, EmbeddedChunk
from embedkeeper.store.db import connect
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair
from embedkeeper.store.pass_io.chunk_writer import ChunkWriter
from tests.conftest import insert_docs, source_config

DIMS = 8
FINGERPRINT = "text:254:32:1024:tokens"


def md5(text: str) -> bytes:
    return hashlib.md5(text.encode()).digest()


def embedded(
    doc_id: Any, text: str, pieces: list[str], seed: int = 0, chunking: str = FINGERPRINT
) -> ChunkedEmbedding:
    """The document cut into `pieces` (each a substring of text), with distinct vectors."""
    rng = np.random.default_rng(seed)
    chunks, at = [], 0
    for seq, piece in enumerate(pieces):
        start = text.index(piece, at)
        chunks.append(
            EmbeddedChunk(
                seq, start, start + len(piece), piece, rng.standard_normal(DIMS).astype("f4")
            )
        )
        at = start
    document = Document(doc_id, text, False, md5(text))
    return ChunkedEmbedding(document, chunking, tuple(chunks), 40, False)


def pair(
    conn: psycopg.Connection[Any], source: str, key_type: str, storage: str = "vector"
) -> PairNames:
    """The pair's tables, made and recorded as `migrate` makes them."""
    names = PairNames.of(source, "minilm")
    ensure_pair(conn, names, PairRecord(f"public.{source}", key_type, DIMS, storage))
    return names


def chunk_rows(conn: psycopg.Connection[Any], names: PairNames, doc_id: Any) -> list[Any]:
    return conn.execute(
        psycopg.sql.SQL(
            "SELECT chunk, char_start, char_end, passage, embedding FROM {} WHERE document_id = %s"
            " ORDER BY chunk"
        ).format(names.chunks),
        (doc_id,),
    ).fetchall()


def test_a_document_is_written_whole_and_a_shorter_rewrite_leaves_no_old_chunk(conn):
    names = pair(conn, "docs", "bigint")
    writer = ChunkWriter(conn, Pair.of(source_config().source, source_config().models[0], "bigint"))
    long_text = "alpha beta. gamma delta. epsilon zeta."
    (doc,) = insert_docs(conn, [long_text])
    conn.execute(
        psycopg.sql.SQL(
            "INSERT INTO {} (document_id, attempts, error_class, message, status)"
            " VALUES (%s, 1, 'X', 'm', 'retry')"
        ).format(names.failures),
        (doc,),
    )
    first = embedded(doc, long_text, ["alpha beta.", "gamma delta.", "epsilon zeta."])
    assert writer.replace([first]) == [doc]
    rows = chunk_rows(conn, names, doc)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (c.seq, c.start, c.end, c.text) for c in first.chunks
    ]
    assert all(long_text[r[1] : r[2]] == r[3] for r in rows)
    for row, chunk in zip(rows, first.chunks, strict=True):
        np.testing.assert_array_equal(row[4].to_numpy(), chunk.vector)
    record = conn.execute(
        psycopg.sql.SQL("SELECT content_hash, chunking, chunk_count, token_count FROM {}").format(
            names.documents
        )
    ).fetchone()
    assert record == (md5(long_text), FINGERPRINT, 3, 40)
    failures = psycopg.sql.SQL("SELECT count(*) FROM {}").format(names.failures)
    assert conn.execute(failures).fetchone() == (0,)

    short_text = "alpha beta."
    conn.execute("UPDATE public.docs SET body = %s WHERE id = %s", (short_text, doc))
    assert writer.replace([embedded(doc, short_text, ["alpha beta."], seed=1)]) == [doc]
    assert [r[0] for r in chunk_rows(conn, names, doc)] == [0]


def test_a_document_edited_while_it_was_embedded_gets_nothing(conn):
    names = pair(conn, "docs", "bigint")
    writer = ChunkWriter(conn, Pair.of(source_config().source, source_config().models[0], "bigint"))
    old, new = "first text. second part.", "edited meanwhile."
    a, b = insert_docs(conn, [old, "kept. too."])
    writer.replace([embedded(a, old, ["first text.", "second part."])])
    conn.execute("UPDATE public.docs SET body = %s WHERE id = %s", (new, a))
    late = embedded(a, old, ["first text."], seed=2)  # embedded from the old text
    assert writer.replace([late, embedded(b, "kept. too.", ["kept.", "too."])]) == [b]
    # The old record (now stale: its hash is the old text's) and its two chunks are untouched.
    assert [r[3] for r in chunk_rows(conn, names, a)] == ["first text.", "second part."]
    conn.execute("DELETE FROM public.docs WHERE id = %s", (b,))
    assert writer.replace([embedded(b, "kept. too.", ["kept."])]) == []


def test_pairs_with_text_and_bigint_keys_and_halfvec_share_one_session(conn):
    conn.execute("CREATE TABLE public.pages (slug text PRIMARY KEY, content text)")
    conn.execute("INSERT INTO public.pages VALUES ('intro', 'hello there. general.')")
    (doc,) = insert_docs(conn, ["one. two."])
    pages = pair(conn, "pages", "text", storage="halfvec")
    docs = pair(conn, "docs", "bigint")
    page_source = source_config(table="public.pages", id_column="slug", text_column="content")
    page_writer = ChunkWriter(conn, Pair.of(page_source.source, page_source.models[0], "text"))
    doc_writer = ChunkWriter(
        conn, Pair.of(source_config().source, source_config().models[0], "bigint")
    )
    page = embedded("intro", "hello there. general.", ["hello there.", "general."])
    assert page_writer.replace([page]) == ["intro"]
    assert doc_writer.replace([embedded(doc, "one. two.", ["one.", "two."])]) == [doc]
    stored = chunk_rows(conn, pages, "intro")
    assert isinstance(stored[0][4], HalfVector)
    np.testing.assert_allclose(stored[1][4].to_numpy(), page.chunks[1].vector, rtol=1e-3)
    assert len(chunk_rows(conn, docs, doc)) == 2


def test_a_concurrent_reader_sees_the_old_chunks_or_the_new_never_a_mix(conn, db_url):
    names = pair(conn, "docs", "bigint")
    writer = ChunkWriter(conn, Pair.of(source_config().source, source_config().models[0], "bigint"))
    versions = {
        "A": ("Aa. Ab. Ac.", ["Aa.", "Ab.", "Ac."]),
        "B": ("Ba. Bb. Bc. Bd. Be.", ["Ba.", "Bb.", "Bc.", "Bd.", "Be."]),
    }
    (doc,) = insert_docs(conn, [versions["A"][0]])
    writer.replace([embedded(doc, *versions["A"])])
    seen: set[tuple[Any, ...]] = set()
    done = threading.Event()
    reading = threading.Event()  # the reader has read once: the rewrites may start

    def read() -> None:
        query = psycopg.sql.SQL(
            "SELECT array_agg(DISTINCT left(passage, 1)), count(*) FROM {} WHERE document_id = %s"
        ).format(names.chunks)
        with connect(db_url) as reader:
            while True:
                last = done.is_set()  # one read more after the rewrites: their final state
                row = reader.execute(query, (doc,)).fetchone()
                assert row is not None
                seen.add((tuple(row[0]), row[1]))
                reading.set()
                if last:
                    return

    thread = threading.Thread(target=read)
    thread.start()
    assert reading.wait(30)
    try:
        for round_ in range(61):  # ends on B: the reader has seen A before the first
            label = "B" if round_ % 2 == 0 else "A"
            text, pieces = versions[label]
            conn.execute("UPDATE public.docs SET body = %s WHERE id = %s", (text, doc))
            assert writer.replace([embedded(doc, text, pieces, seed=round_)]) == [doc]
    finally:
        done.set()
        thread.join()
    assert seen <= {(("A",), 3), (("B",), 5)}
    assert len(seen) == 2  # A before the rewrites, B after them, and never anything else


def test_a_writer_of_other_chunking_settings_stops_naming_both_and_writes_nothing(conn):
    """Two daemons of different settings on one pair (a rolling deploy): the pair's recorded
    settings win, the other writer stops before it writes, instead of each re-embedding what
    the other wrote."""
    names = pair(conn, "docs", "bigint")
    docs = Pair.of(source_config().source, source_config().models[0], "bigint")
    a, b = insert_docs(conn, ["first. text.", "second. text."])
    # The pair was made without settings: the first writer's are recorded.
    assert ChunkWriter(conn, docs).replace([embedded(a, "first. text.", ["first."])])
    other = "text:126:32:1024:tokens"
    late = embedded(b, "second. text.", ["second."], chunking=other)
    again = embedded(a, "first. text.", ["first.", "text."], chunking=other)
    with pytest.raises(EmbedkeeperError) as error:
        ChunkWriter(conn, docs).replace([late, again])
    assert type(error.value).__name__ == "ChunkingMismatch"
    assert error.value.exit_code == 1
    assert str(error.value) == (
        'source "docs", model "minilm": this process chunks with text:126:32:1024:tokens,'
        " but the pair's chunks are made with text:254:32:1024:tokens; run `embedkeeper"
        " migrate` with the new settings to adopt them (every document is embedded again),"
        " or run this process with the pair's settings"
    )
    records = psycopg.sql.SQL("SELECT document_id, chunking, chunk_count FROM {}")
    assert conn.execute(records.format(names.documents)).fetchall() == [(a, FINGERPRINT, 1)]
    assert [r[3] for r in chunk_rows(conn, names, a)] == ["first."]
    assert chunk_rows(conn, names, b) == []
