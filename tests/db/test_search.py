"""The search statement on the real database: nearest first, the source's `where` applied (a
soft-deleted document is never returned), the pair's own HNSW index used whatever its opclass,
a filter that rejects most rows still fills k through pgvector's iterative scan, one walk of
the index per search, and only chunks of the text a document holds now."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from embedkeeper.store.index.index_build import BuildSettings, HnswParams
from embedkeeper.store.index.vector_index import create_index
from embedkeeper.store.search.nearest import explain_nearest, nearest
from tests.conftest import insert_docs, one_pass, source_config, vectors
from tests.pairs import made_pair

TOPICS = [
    "PostgreSQL keeps table rows in heap pages of eight kilobytes.",
    "The daemon sleeps between passes and wakes on a schedule.",
    "Bread rises because yeast ferments the sugars in the dough.",
    "A comet's tail always points away from the sun.",
    "Vacuum reclaims the space that dead tuples leave behind.",
]


def embed_all(make_app, conn, db_url, where: str | None = None, **source):
    conn.execute("ALTER TABLE public.docs ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    config = source_config(db_url, where=where, **source)
    app = make_app(config)
    one_pass(app)
    return app


def test_the_nearest_document_comes_first_at_its_cosine_distance(make_app, conn, db_url, minilm):
    ids = insert_docs(conn, TOPICS)
    app = embed_all(make_app, conn, db_url)
    query = minilm.model.encode("how does yeast make bread rise?", normalize_embeddings=True)
    hits = nearest(conn, made_pair(app, conn).statements, query, 3)
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
    hits = nearest(conn, made_pair(app, conn).statements, query, 10)
    assert ids[2] not in [h.document_id for h in hits]
    assert len(hits) == len(TOPICS) - 1


def build_index(conn, app, opclass: str = "cosine") -> None:
    """The pair's HNSW index, as `embedkeeper index create --opclass` builds it; and the
    planner told what it would find at scale: the tables here are so small that reading
    them whole and sorting would win on cost alone (the settings stay for the session)."""
    target = app.index_target(conn, app.pair(app.config.models[0]))
    create_index(conn, target, HnswParams(opclass=opclass), BuildSettings())
    conn.execute("ANALYZE")
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_sort = off")


def test_with_an_hnsw_index_a_selective_where_still_fills_k(make_app, conn, db_url, minilm):
    texts = [f"{TOPICS[i % len(TOPICS)]} Note {i}." for i in range(600)]
    ids = insert_docs(conn, texts)
    app = embed_all(make_app, conn, db_url, where="NOT deleted")
    # Only every 20th document stays visible: 30 of 600.
    conn.execute("UPDATE public.docs SET deleted = (id % 20 <> 0)")
    build_index(conn, app)
    query = minilm.model.encode("comets and the sun", normalize_embeddings=True)
    pair = app.pair(app.config.models[0]).statements

    plan = explain_nearest(conn, pair, query, 10)
    hits = nearest(conn, pair, query, 10)

    assert "Index Scan using docs__minilm_hnsw on docs__minilm_chunks" in plan
    assert len(hits) == 10  # not the 2 or so that ef_search's 40 candidates would hold
    assert all(int(str(h.document_id)) % 20 == 0 for h in hits)
    visible = {i for i in ids if i % 20 == 0}
    stored = vectors(conn)
    exact = sorted(visible, key=lambda i: -float(np.dot(stored[i], query)))[:10]
    assert len(set(exact) & {h.document_id for h in hits}) >= 8


def load_clusters(
    conn, app, documents: int, per_document: int, drawn_to_first: int = 0
) -> np.ndarray:
    """Synthetic chunks written as a pass leaves them (records with the current text's hash):
    each document's chunks close together around a point of their own, unit vectors.

    `drawn_to_first` documents after the first have their point at a set cosine from the
    first's (0.95, 0.87, ... in steps of 0.08): their order by distance from document 1 is then
    wide and known (random points in 384 dimensions are all about equally far apart, so an
    approximate index may rank them either way), and their clusters are linked in the graph."""
    app.ensure_tables(conn, app.pair(app.config.models[0]), 384)
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((documents, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    first = centres[0].copy()
    for n in range(1, drawn_to_first + 1):
        own = centres[n] - (centres[n] @ first) * first  # the part at right angles to the first
        cosine = 0.95 - 0.08 * (n - 1)
        centres[n] = cosine * first + np.sqrt(1 - cosine**2) * own / np.linalg.norm(own)
    centres *= np.sqrt(384)  # the scale of the noise below is relative to this
    with conn.cursor() as cur:
        for doc in range(1, documents + 1):
            text = f"document {doc}"
            cur.execute("INSERT INTO public.docs (id, body) VALUES (%s, %s)", (doc, text))
            cur.execute(
                "INSERT INTO embedkeeper.docs__minilm_documents (document_id, content_hash,"
                " chunking, chunk_count, token_count, truncated)"
                " VALUES (%s, %s, 'x', %s, 0, false)",
                (doc, hashlib.md5(text.encode()).digest(), per_document),
            )
        chunks = centres.repeat(per_document, axis=0)
        chunks += 0.05 * rng.standard_normal(chunks.shape).astype(np.float32)
        chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
        cur.executemany(
            "INSERT INTO embedkeeper.docs__minilm_chunks VALUES (%s, %s, 0, 1, 'p', %s)",
            [(i // per_document + 1, i % per_document, v) for i, v in enumerate(chunks)],
        )
    return chunks


@pytest.mark.parametrize("opclass", ["l2", "ip"])
def test_an_l2_or_ip_index_serves_the_search_which_still_ranks_by_cosine(
    make_app, conn, db_url, opclass
):
    app = make_app(source_config(db_url))
    chunks = load_clusters(conn, app, documents=200, per_document=2)
    build_index(conn, app, opclass)
    pair = app.pair(app.config.models[0]).statements
    query = chunks[17] + 0.01  # near document 9's chunks
    query /= np.linalg.norm(query)

    plan = explain_nearest(conn, pair, query, 10, chunks=True)
    hits = nearest(conn, pair, query, 10, chunks=True)

    operator = {"l2": "<->", "ip": "<#>"}[opclass]
    assert "Index Scan using docs__minilm_hnsw on docs__minilm_chunks" in plan
    assert f"Order By: (embedding {operator}" in plan
    cosine = 1.0 - chunks @ query
    exact = [(int(i) // 2 + 1, int(i) % 2) for i in np.argsort(cosine)[:10]]
    assert [(h.document_id, h.chunk) for h in hits] == exact
    for hit, (doc, chunk) in zip(hits, exact, strict=True):
        assert hit.distance == pytest.approx(cosine[(doc - 1) * 2 + chunk], abs=1e-5)


def test_documents_with_many_chunks_are_found_in_one_walk_of_the_index(make_app, conn, db_url):
    """k documents whose chunks fill the first pages: the cursor reads on, where the search
    once ran the whole scan again with four times the limit."""
    app = make_app(source_config(db_url))
    # Documents 2 to 10 drawn toward document 1, in that order: with 40 clusters of random
    # points the third to tenth were near ties that HNSW (approximate) ranked either way, even
    # at ef_search 400 (CI, twice). The test is about the walk, not the index's recall.
    chunks = load_clusters(conn, app, documents=40, per_document=30, drawn_to_first=9)
    build_index(conn, app)
    pair = app.pair(app.config.models[0]).statements
    index = conn.execute("SELECT 'embedkeeper.docs__minilm_hnsw'::regclass::oid").fetchone()[0]
    query = chunks[0]

    with conn.transaction():  # the scans of this transaction, counted before it ends
        hits = nearest(conn, pair, query, 10)
        scans = conn.execute("SELECT pg_stat_get_xact_numscans(%s)", (index,)).fetchone()[0]

    by_document = (1.0 - chunks @ query).reshape(40, 30).min(axis=1)
    assert [int(i) + 1 for i in np.argsort(by_document)[:10]] == list(range(1, 11))
    assert [h.document_id for h in hits] == list(range(1, 11))
    # each by a chunk of its own cluster (an approximate index may miss its very best one)
    assert [h.distance for h in hits] == pytest.approx(list(by_document[:10]), abs=0.02)
    assert scans == 1


@pytest.mark.parametrize("updated_at_column", [None, "updated_at"])
@pytest.mark.parametrize("indexed", [False, True], ids=["exact scan", "hnsw index"])
def test_a_document_edited_after_embedding_is_not_served_until_embedded_again(
    make_app, conn, db_url, minilm, updated_at_column, indexed
):
    """Without an updated_at column the text's hash decides; with one, a row whose updated_at
    moved is hashed (the others are taken as current unhashed). With an index the test sits
    under the ranking's LIMIT, without one over the rows the sort yields: both leave it out
    and still fill k."""
    ids = insert_docs(conn, TOPICS)
    app = embed_all(make_app, conn, db_url, updated_at_column=updated_at_column)
    if indexed:
        build_index(conn, app)
    conn.execute(
        "UPDATE public.docs SET body = 'Rye bread rises more slowly than wheat.',"
        " updated_at = now() + interval '1 second' WHERE id = %s",
        (ids[2],),
    )
    pair = app.pair(app.config.models[0]).statements
    query = minilm.model.encode("how does yeast make bread rise?", normalize_embeddings=True)

    hits = nearest(conn, pair, query, 10)
    in_view = conn.execute("SELECT DISTINCT document_id FROM embedkeeper.docs__minilm").fetchall()

    assert ids[2] not in [h.document_id for h in hits]  # its chunks index the old text
    assert len(hits) == len(TOPICS) - 1
    k = len(TOPICS) - 2
    nearest_chunks = nearest(conn, pair, query, k, chunks=True)
    assert ids[2] not in [h.document_id for h in nearest_chunks]
    assert len(nearest_chunks) == k
    assert sorted(row[0] for row in in_view) == [i for i in ids if i != ids[2]]
    one_pass(app)
    again = nearest(conn, pair, query, 1)
    assert again[0].document_id == ids[2]
    assert again[0].text == "Rye bread rises more slowly than wheat."


def test_the_scan_candidate_list_holds_for_one_search_and_is_bounded(conn):
    """ef_search is set for the search's transaction only, within pgvector's bound of 1000."""
    from embedkeeper.store.search.nearest import EF_SEARCH, _search_settings

    def shown() -> str:
        return str(conn.execute("SHOW hnsw.ef_search").fetchone()[0])

    conn.execute("LOAD 'vector'")
    default = shown()
    with conn.transaction():
        _search_settings(conn, EF_SEARCH)
        assert shown() == str(EF_SEARCH)
    assert shown() == default == "40"
    with conn.transaction():
        _search_settings(conn, 5000)
        assert shown() == "1000"
