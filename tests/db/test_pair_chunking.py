"""A pair's chunking settings: recorded in embedkeeper.pairs, adopted only by `migrate` (the
operator's act of changing them), and the fence every writer checks, so two processes of
different settings never re-embed each other's documents in turn."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from embedkeeper.chunking.for_model import model_chunking
from embedkeeper.commands.migrate import make_pairs
from embedkeeper.errors import EmbedkeeperError
from embedkeeper.records import ChunkedEmbedding, Document, EmbeddedChunk
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import PairNames, PairRecord, ensure_pair
from embedkeeper.store.pass_io.chunk_writer import ChunkWriter
from tests.conftest import insert_docs, source_config
from tests.db.test_chunk_writer import md5

NULLM = {"name": "nullm", "backend": "null", "dimensions": 8}


def config(url: str, **model: Any) -> Any:
    return source_config(url, models=[{**NULLM, **model}])


def recorded(conn: psycopg.Connection[Any], model: str = "nullm") -> Any:
    row = conn.execute(
        "SELECT chunking FROM embedkeeper.pairs WHERE source = 'docs' AND model = %s", (model,)
    ).fetchone()
    return None if row is None else row[0]


def one_chunk(doc_id: int, text: str, chunking: str) -> ChunkedEmbedding:
    chunk = EmbeddedChunk(0, 0, len(text), text, np.eye(8, dtype=np.float32)[0])
    return ChunkedEmbedding(Document(doc_id, text, False, md5(text)), chunking, (chunk,), 3, False)


def records(conn: psycopg.Connection[Any], names: PairNames) -> list[Any]:
    statement = sql.SQL("SELECT document_id, chunking FROM {} ORDER BY 1")
    return conn.execute(statement.format(names.documents)).fetchall()


def test_migrate_records_the_settings_and_adopts_new_ones_which_fence_the_old_writers(
    conn, db_url, capsys
):
    old, new = config(db_url, chunk_tokens=100), config(db_url, chunk_tokens=80)
    old_print, new_print = (model_chunking(c.models[0]).fingerprint for c in (old, new))
    assert old_print.startswith("text:cdc1:100:1024:chars;v=")
    assert new_print.startswith("text:cdc1:80:1024:chars;v=")
    names = PairNames.of("docs", "nullm")
    pair = Pair.of(old.source, old.models[0], "bigint")
    a, b = insert_docs(conn, ["first text", "second text"])

    make_pairs(old)
    assert recorded(conn) == old_print
    assert ChunkWriter(conn, pair).replace([one_chunk(a, "first text", old_print)])

    make_pairs(new)  # the operator adopts the new settings
    assert recorded(conn) == new_print
    # the pair's line (the source's serving view has the last)
    said = capsys.readouterr().out.splitlines()[-2]
    assert said.endswith(
        f"; chunking {new_print} (was {old_print}): every document is embedded again"
    )
    with pytest.raises(EmbedkeeperError, match=f"chunks with {old_print}, but .* {new_print}"):
        ChunkWriter(conn, pair).replace([one_chunk(b, "second text", old_print)])
    assert records(conn, names) == [(a, old_print)]
    assert ChunkWriter(conn, pair).replace([one_chunk(b, "second text", new_print)])
    assert records(conn, names) == [(a, old_print), (b, new_print)]

    make_pairs(new)  # the same settings again: nothing said, nothing changed
    assert "chunking" not in capsys.readouterr().out
    assert recorded(conn) == new_print


def test_a_pass_start_check_refuses_other_settings_and_lets_an_unrecorded_pair_go(conn):
    from embedkeeper.store.pair.tables import check_pair_chunking

    names = PairNames.of("docs", "nullm")
    ensure_pair(conn, names, PairRecord("public.docs", "bigint", 8, "vector"))
    check_pair_chunking(conn, names, "text:100:32:1024:chars")  # unrecorded: the writer adopts
    assert recorded(conn) is None
    conn.execute("UPDATE embedkeeper.pairs SET chunking = 'text:50:32:1024:chars'")
    check_pair_chunking(conn, names, "text:50:32:1024:chars")
    with pytest.raises(EmbedkeeperError, match="chunks with text:100:32:1024:chars, but"):
        check_pair_chunking(conn, names, "text:100:32:1024:chars")


def test_migrate_adopts_records_of_the_old_none_fingerprint_once(conn, db_url):
    """Before the "none" fingerprint named the window, every whole-text record said "none". A
    pair from then (no recorded settings) whose model still says chunking = "none" keeps its
    vectors: migrate labels those records with the config's window, once."""
    minilm = {"name": "minilm", "dimensions": 384, "chunking": "none", "max_tokens": 128}
    settings = source_config(db_url, models=[minilm])
    names = PairNames.of("docs", "minilm")
    ensure_pair(conn, names, PairRecord("public.docs", "bigint", 384, "vector"))
    a, b, c = insert_docs(conn, ["one", "two", "three"])
    insert = sql.SQL(
        "INSERT INTO {} (document_id, content_hash, chunking, chunk_count, token_count,"
        " truncated) VALUES (%s, %s, %s, 1, 1, false)"
    ).format(names.documents)
    conn.execute(insert, (a, md5("one"), "none"))
    conn.execute(insert, (b, md5("two"), "text:126:32:1024:tokens"))

    make_pairs(settings)
    whole_print = model_chunking(settings.models[0]).fingerprint
    assert whole_print.startswith("none:128;v=")
    assert recorded(conn, "minilm") == whole_print
    assert records(conn, names) == [(a, whole_print), (b, "text:126:32:1024:tokens")]

    conn.execute(insert, (c, md5("three"), "none"))  # a record of some other window
    make_pairs(settings)
    assert records(conn, names)[-1] == (c, "none")


def test_migrate_relabels_settings_recorded_before_they_named_the_vectors_settings(conn, db_url):
    """A pair recorded before the fingerprint ended in ";v=" (the vectors' settings), with
    settings otherwise the config's, is relabelled: its documents are not embedded again."""
    minilm = {"name": "minilm", "dimensions": 384, "chunking": "none", "max_tokens": 128}
    settings = source_config(db_url, models=[minilm])
    names = PairNames.of("docs", "minilm")
    ensure_pair(conn, names, PairRecord("public.docs", "bigint", 384, "vector"))
    conn.execute("UPDATE embedkeeper.pairs SET chunking = 'none:128'")
    a, b = insert_docs(conn, ["one", "two"])
    insert = sql.SQL(
        "INSERT INTO {} (document_id, content_hash, chunking, chunk_count, token_count,"
        " truncated) VALUES (%s, %s, %s, 1, 1, false)"
    ).format(names.documents)
    conn.execute(insert, (a, md5("one"), "none:128"))
    conn.execute(insert, (b, md5("two"), "none:256"))  # of another window: stays stale

    make_pairs(settings)

    whole_print = model_chunking(settings.models[0]).fingerprint
    assert recorded(conn, "minilm") == whole_print
    assert records(conn, names) == [(a, whole_print), (b, "none:256")]


def test_a_pass_of_other_settings_stops_with_the_mismatch_and_writes_nothing(conn, db_url):
    from embedkeeper.app import open_app
    from embedkeeper.backends.null import NullBackend
    from tests.conftest import one_pass

    old, new = config(db_url, chunk_tokens=100), config(db_url, chunk_tokens=80)
    insert_docs(conn, ["one text", "two text"])
    make_pairs(old)
    app = open_app(new, backend_factory=NullBackend)
    try:
        with pytest.raises(EmbedkeeperError) as error:
            one_pass(app)
    finally:
        app.close()
    assert type(error.value).__name__ == "ChunkingMismatch"
    assert "this process chunks with text:cdc1:80:1024:chars;v=" in str(error.value)
    assert records(conn, PairNames.of("docs", "nullm")) == []
