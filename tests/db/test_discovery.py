"""Discovery: new, stale, deleted, out-of-scope and blank documents, with the real model."""

from __future__ import annotations

import numpy as np
import pytest

from embedkeeper.backends.null import NullBackend
from embedkeeper.sync.plan import PassOptions
from tests.conftest import MINILM_ENTRY, insert_docs, one_pass, source_config, vectors
from tests.pairs import CHUNKS

REGULAR = PassOptions(
    trigger="schedule", stale_by="updated_at", retry_failed_now=False, changes_only=False
)
REGULAR_NO_UPDATED_AT = PassOptions(
    trigger="schedule", stale_by="none", retry_failed_now=False, changes_only=False
)
SWEEP = PassOptions.sweep()


def run(app, options=REGULAR):
    return one_pass(app, options)


def row_of(conn, doc_id):
    return conn.execute(
        "SELECT content_hash, source_updated_at, token_count, truncated, embedded_at"
        " FROM embedkeeper.docs__minilm_documents WHERE document_id = %s",
        (doc_id,),
    ).fetchone()


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_update_with_updated_at_is_re_embedded(conn, db_url, make_app, minilm):
    insert_docs(conn, ["The cat sat on the mat.", "Tea is brewed from leaves."])
    app = make_app(source_config(db_url, updated_at_column="updated_at"))
    run(app)
    conn.execute(
        "UPDATE docs SET body = 'Rust has a borrow checker.', updated_at = now() + '1s'"
        " WHERE id = 1"
    )

    second = run(app)

    assert second.stats.ok == 1
    stored = vectors(conn)[1]
    expected = minilm.model.encode("Rust has a borrow checker.", normalize_embeddings=True)
    assert cosine(stored, expected) >= 0.999
    md5 = conn.execute("SELECT decode(md5(body), 'hex') FROM docs WHERE id = 1").fetchone()[0]
    assert row_of(conn, 1)[0] == md5


def test_updated_at_moving_without_a_text_change_embeds_nothing(conn, db_url, make_app, backend):
    insert_docs(conn, ["unchanged text"])
    app = make_app(source_config(db_url, updated_at_column="updated_at"))
    run(app)
    before = row_of(conn, 1)
    backend.calls.clear()
    conn.execute("UPDATE docs SET updated_at = now() + '1 hour' WHERE id = 1")

    run(app)

    after = row_of(conn, 1)
    assert backend.calls == []
    assert after[1] > before[1]  # the new updated_at is recorded
    assert after[4] == before[4]  # the vector was not rewritten


def test_an_edit_without_updated_at_is_found_by_the_hash_sweep_only(
    conn, db_url, make_app, backend
):
    insert_docs(conn, ["first version"])
    app = make_app(source_config(db_url))
    run(app, REGULAR_NO_UPDATED_AT)
    conn.execute("UPDATE docs SET body = 'second version' WHERE id = 1")

    assert run(app, REGULAR_NO_UPDATED_AT).stats.ok == 0
    assert app.coverage(conn, app.pair(app.config.models[0])).stale == 1
    assert run(app, SWEEP).stats.ok == 1
    assert app.coverage(conn, app.pair(app.config.models[0])).stale == 0


def test_deleted_and_out_of_scope_documents_lose_their_vectors(conn, db_url, make_app):
    insert_docs(conn, ["keep me", "delete me", "hide me", "blank me"])
    app = make_app(source_config(db_url, where="body NOT LIKE 'hide%'"))
    run(app)
    assert sorted(vectors(conn)) == [1, 2, 4]
    conn.execute("DELETE FROM docs WHERE id = 2")
    conn.execute("UPDATE docs SET body = '   ' WHERE id = 4")

    result = run(app)

    assert result.deleted == 2
    assert sorted(vectors(conn)) == [1]
    runs = conn.execute("SELECT docs_deleted FROM embedkeeper.runs ORDER BY id").fetchall()
    assert runs[-1] == (2,)


def test_null_and_blank_text_is_skipped_not_failed(conn, db_url, make_app, backend):
    insert_docs(conn, [None, "", " \t\n ", "real text"])
    app = make_app(source_config(db_url))

    first = run(app, SWEEP)
    second = run(app, SWEEP)

    assert sorted(vectors(conn)) == [4]
    assert (first.stats.ok, first.stats.failed, second.stats.ok) == (1, 0, 0)
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_failures").fetchone() == (0,)
    figures = app.coverage(conn, app.pair(app.config.models[0]))
    assert (figures.skipped, figures.pending, figures.coverage_percent) == (3, 0, 100.0)


def test_huge_text_is_truncated_like_sentence_transformers(conn, db_url, make_app, minilm):
    opening = "Embedding models read only the start of a long text. "
    huge = opening + "lorem ipsum dolor sit amet " * 200_000  # about 5 MB
    insert_docs(conn, [huge])
    app = make_app(source_config(db_url, models=[{**MINILM_ENTRY, "chunking": "none"}]))

    run(app, SWEEP)

    stored = vectors(conn)[1]
    direct = minilm.model.encode(huge[:20_000], normalize_embeddings=True)
    assert cosine(stored, direct) >= 0.999
    _, _, token_count, truncated, _ = row_of(conn, 1)
    assert (token_count, truncated) == (256, True)


def test_a_huge_text_is_chunked_up_to_max_chunks_and_flagged(conn, db_url, make_app, minilm):
    sections = [f"Section {i}. " + "lorem ipsum dolor sit amet " * 40 for i in range(5_000)]
    huge = "\n\n".join(sections)  # about 5.5 MB
    insert_docs(conn, [huge])
    entry = {**MINILM_ENTRY, "max_chunks": 6}
    app = make_app(source_config(db_url, models=[entry]))

    run(app, SWEEP)

    chunks = conn.execute(
        f"SELECT chunk, char_start, char_end, passage, embedding FROM {CHUNKS} ORDER BY chunk"  # noqa: S608
    ).fetchall()
    assert [c[0] for c in chunks] == list(range(6))
    for _, start, end, passage, vector in chunks:
        assert huge[start:end] == passage
        direct = minilm.model.encode(passage, normalize_embeddings=True)
        assert cosine(vector.to_numpy(), direct) >= 0.999  # each chunk fits the window whole
    assert chunks[0][1] == 0
    assert chunks[-1][2] < len(huge)
    _, _, token_count, truncated, _ = row_of(conn, 1)
    assert truncated is True  # max_chunks cut it: flagged
    assert 6 * 96 <= token_count <= 6 * 256  # each chunk fits the window, past the low bound


def test_odd_unicode_is_embedded(conn, db_url, make_app, minilm):
    texts = [
        "zero\u200bwidth\u200djoiner",
        "שלום עולם مرحبا",
        "東京の天気は晴れ",
        "🚀🔥 e\u0301moji",
        "\ufeffbom and \U0001f600",
    ]
    ids = insert_docs(conn, texts)
    app = make_app(source_config(db_url))

    run(app, SWEEP)

    stored = vectors(conn)
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    for doc_id, expected in zip(ids, direct, strict=True):
        assert cosine(stored[doc_id], expected) >= 0.999


def test_a_short_text_records_its_token_count(conn, db_url, make_app, minilm):
    insert_docs(conn, ["four words right here"])
    app = make_app(source_config(db_url))
    run(app, SWEEP)
    expected = len(minilm.model.tokenizer("four words right here")["input_ids"])
    assert row_of(conn, 1)[2:4] == (expected, False)


def test_a_where_filter_may_name_columns_that_embedkeepers_tables_also_have(conn, db_url, make_app):
    conn.execute(
        "CREATE TABLE articles (id bigint PRIMARY KEY, body text, status text, model text,"
        " message text, attempts int)"
    )
    conn.execute(
        "INSERT INTO articles VALUES (1, 'published one', 'published', 'x', 'm', 1),"
        " (2, 'draft two', 'draft', 'x', 'm', 1), (3, '100% done', 'published', 'x', 'm', 1)"
    )
    config = source_config(db_url, table="articles", where="status = 'published' AND model = 'x'")
    app = make_app(config)

    run(app, SWEEP)

    assert sorted(vectors(conn, source="articles")) == [1, 3]
    figures = app.coverage(conn, app.pair(app.config.models[0]))
    assert (figures.total, figures.embedded) == (2, 2)
    conn.execute("UPDATE articles SET status = 'draft' WHERE id = 3")
    assert run(app, SWEEP).deleted == 1


@pytest.mark.chaos
def test_a_50_mb_text_and_a_million_lines_stay_within_bounded_memory(conn, db_url, make_app):
    import tracemalloc

    conn.execute("INSERT INTO docs (id, body) VALUES (1, repeat('word ', 10000000))")  # 50 MB
    conn.execute(
        "INSERT INTO docs (id, body) SELECT 2, string_agg('line ' || g, E'\\n')"
        " FROM generate_series(1, 1000000) g"
    )
    # chunking "none": one window each (the chunked path is the next test's, with max_chunks)
    app = make_app(source_config(db_url, models=[{**MINILM_ENTRY, "chunking": "none"}]))
    tracemalloc.start()
    try:
        run(app, SWEEP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sorted(vectors(conn)) == [1, 2]
    assert peak < 50_000_000  # Python-side allocations: the texts are never fetched whole
    truncated = conn.execute(
        "SELECT bool_and(truncated) FROM embedkeeper.docs__minilm_documents"
    ).fetchone()
    assert truncated == (True,)


@pytest.mark.chaos
def test_text_decoded_from_bytea_by_a_text_expression(conn, db_url, make_app, minilm):
    conn.execute(
        "CREATE TABLE blobs (id bigint PRIMARY KEY, body_bytes bytea, model text,"
        " updated_at timestamptz NOT NULL DEFAULT now())"
    )
    texts = ["Ünïcode in bytes", "東京 in bytes", "emoji 🚀 in bytes"]
    for i, text in enumerate(texts, start=1):
        conn.execute("INSERT INTO blobs (id, body_bytes) VALUES (%s, %s)", (i, text.encode()))
    config = source_config(
        db_url, table="blobs", text_column=None, text_expression="convert_from(body_bytes, 'UTF8')"
    )
    app = make_app(config)

    run(app, SWEEP)

    stored = vectors(conn, source="blobs")
    direct = minilm.model.encode(texts, normalize_embeddings=True)
    for doc_id, expected in zip([1, 2, 3], direct, strict=True):
        assert cosine(stored[doc_id], expected) >= 0.999
    conn.execute("UPDATE blobs SET body_bytes = convert_to('changed', 'UTF8') WHERE id = 2")
    assert app.coverage(conn, app.pair(app.config.models[0])).stale == 1
    assert run(app, SWEEP).stats.ok == 1


def test_a_text_expression_that_does_not_produce_text_is_refused(conn, db_url, make_app):
    from embedkeeper.errors import SourceNotFound

    conn.execute("CREATE TABLE blobs (id bigint PRIMARY KEY, body_bytes bytea)")
    config = source_config(db_url, table="blobs", text_column=None, text_expression="body_bytes")
    with pytest.raises(SourceNotFound, match=r"produces bytea, not text; decode it"):
        make_app(config)


def test_a_50_mb_text_is_read_and_chunked_in_bounded_memory(conn, db_url, make_app):
    """The claim reads a text only as far as max_chunks chunks can reach, so a 50 MB document
    never sits in the process whole: the pass's own allocations stay a small fraction of it."""
    import tracemalloc

    huge = "\n\n".join(f"Paragraph {i}. " + "words of the text " * 50 for i in range(55_000))
    assert len(huge) > 50_000_000
    insert_docs(conn, [huge, "a short one"])
    del huge
    entry = {"name": "null", "backend": "null", "dimensions": 384, "max_chunks": 16}
    config = source_config(db_url, models=[entry])
    app = make_app(config, NullBackend(config.models[0]))

    tracemalloc.start()
    try:
        run(app, SWEEP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 20_000_000  # a fraction of the 50 MB text
    rows = conn.execute(
        "SELECT document_id, chunk_count, truncated FROM embedkeeper.docs__null_documents"
        " ORDER BY 1"
    ).fetchall()
    assert rows == [(1, 16, True), (2, 1, False)]


def test_a_where_filter_with_a_percent_sign_is_embedded_and_counted(make_app, conn, db_url):
    """`%` in `[source] where` (modulo, LIKE) is doubled for the parameter parser, so every
    statement holding it must be sent with parameters: the write's upsert and the coverage of
    a pair not made yet were sent without, and PostgreSQL got `id %% 2` (a syntax error)."""
    ids = insert_docs(conn, [f"text number {i}" for i in range(6)])
    app = make_app(source_config(db_url, where="id % 2 = 0"))
    pair = app.pair(app.config.models[0])
    before = app.coverage(conn, pair)  # no tables yet: counted from the source alone
    assert (before.total, before.pending) == (3, 3)

    one_pass(app)

    after = app.coverage(conn, pair)
    assert (after.total, after.embedded, after.pending) == (3, 3, 0)
    assert sorted(vectors(conn)) == [i for i in ids if i % 2 == 0]
