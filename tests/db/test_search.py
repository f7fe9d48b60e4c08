"""The search statement on the real database: nearest first, the source's `where` applied (a
soft-deleted document is never returned), the HNSW index used, and a filter that rejects most
rows still fills k through pgvector's iterative scan."""

from __future__ import annotations

import numpy as np

from embedkeeper.store.search import nearest
from tests.conftest import insert_docs, one_pass, source_config, vectors

TOPICS = [
    "PostgreSQL keeps table rows in heap pages of eight kilobytes.",
    "The daemon sleeps between passes and wakes on a schedule.",
    "Bread rises because yeast ferments the sugars in the dough.",
    "A comet's tail always points away from the sun.",
    "Vacuum reclaims the space that dead tuples leave behind.",
]


def embed_all(make_app, conn, db_url, where: str | None = None):
    conn.execute("ALTER TABLE public.docs ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    config = source_config(db_url, where=where)
    app = make_app(config)
    one_pass(app)
    return app


def test_the_nearest_document_comes_first_at_its_cosine_distance(make_app, conn, db_url, minilm):
    ids = insert_docs(conn, TOPICS)
    app = embed_all(make_app, conn, db_url)
    query = minilm.model.encode("how does yeast make bread rise?", normalize_embeddings=True)
    hits = nearest(conn, app.ready_pair(conn, app.config.models[0]), query, 3)
    assert hits[0].document_id == ids[2]
    assert hits[0].text == TOPICS[2]
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    stored = vectors(conn)
    for hit in hits:
        expected = 1.0 - float(np.dot(stored[hit.document_id], query))
        assert abs(hit.distance - expected) < 1e-5


def test_a_soft_deleted_document_is_never_returned_even_before_a_pass_prunes_it(
    make_app, conn, db_url, minilm
):
    ids = insert_docs(conn, TOPICS)
    app = embed_all(make_app, conn, db_url, where="NOT deleted")
    conn.execute("UPDATE public.docs SET deleted = true WHERE id = %s", (ids[2],))
    assert ids[2] in vectors(conn)  # its vector is still stored
    query = minilm.model.encode(TOPICS[2], normalize_embeddings=True)
    hits = nearest(conn, app.ready_pair(conn, app.config.models[0]), query, 10)
    assert ids[2] not in [h.document_id for h in hits]
    assert len(hits) == len(TOPICS) - 1


def test_with_an_hnsw_index_a_selective_where_still_fills_k(make_app, conn, db_url, minilm):
    texts = [f"{TOPICS[i % len(TOPICS)]} Note {i}." for i in range(600)]
    ids = insert_docs(conn, texts)
    app = embed_all(make_app, conn, db_url, where="NOT deleted")
    # Only every 20th document stays visible: 30 of 600.
    conn.execute("UPDATE public.docs SET deleted = (id % 20 <> 0)")
    conn.execute(
        "CREATE INDEX embeddings_minilm_hnsw ON embedkeeper.embeddings"
        " USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE model = 'minilm'"
    )
    conn.execute("ANALYZE embedkeeper.embeddings")
    conn.execute("SET enable_seqscan = off")  # a table this small would be read whole
    query = minilm.model.encode("comets and the sun", normalize_embeddings=True)
    hits = nearest(conn, app.ready_pair(conn, app.config.models[0]), query, 10)
    assert len(hits) == 10  # not the 2 or so that ef_search's 40 candidates would hold
    assert all(int(str(h.document_id)) % 20 == 0 for h in hits)
    visible = {i for i in ids if i % 20 == 0}
    stored = vectors(conn)
    exact = sorted(visible, key=lambda i: -float(np.dot(stored[i], query)))[:10]
    assert len(set(exact) & {h.document_id for h in hits}) >= 8


def test_the_scan_candidate_list_holds_for_one_search_and_is_bounded(conn):
    """ef_search is set for the search's transaction only, within pgvector's bound of 1000."""
    from embedkeeper.store.search import EF_SEARCH, _iterative_scan

    def shown() -> str:
        return str(conn.execute("SHOW hnsw.ef_search").fetchone()[0])

    conn.execute("LOAD 'vector'")
    default = shown()
    with conn.transaction():
        _iterative_scan(conn, EF_SEARCH)
        assert shown() == str(EF_SEARCH)
    assert shown() == default == "40"
    with conn.transaction():
        _iterative_scan(conn, 5000)
        assert shown() == "1000"
