"""Full text beside the vectors, on the real database: a source's `full_text` gives its pair's
chunks a generated tsvector with a GIN index, `migrate`'s set_full_text adds, replaces and drops
it to follow the config (the view follows), words find what the vector ranks low, and the
source's `where` holds on the words' side too."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

from embedkeeper.errors import ConfigError
from embedkeeper.store.pair.full_text import full_text_config, set_full_text
from embedkeeper.store.pair.view import replace_view
from embedkeeper.store.search.hybrid import hybrid_nearest
from embedkeeper.store.search.nearest import FULL_TEXT, VECTOR, by_words, nearest
from tests.conftest import insert_docs, one_pass, source_config
from tests.pairs import made_pair

# Thirty passages about bread, and one about comets that names a word no bread passage holds.
BREAD = [f"Bread {i} rises because yeast ferments the sugars in the dough." for i in range(30)]
COMET = "A comet's tail points away from the sun; the Zyxwvut survey counted them."


def view_columns(conn: psycopg.Connection, view: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " ORDER BY attnum",
        (view,),
    )
    return [r[0] for r in rows]


def embedded(make_app, conn, db_url, **source):
    conn.execute("ALTER TABLE public.docs ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    ids = insert_docs(conn, [*BREAD, COMET])
    app = make_app(source_config(db_url, **source))
    one_pass(app)
    return app, ids


def test_a_new_pair_of_a_full_text_source_gets_the_column_its_index_and_the_view(
    make_app, conn, db_url
):
    app, ids = embedded(make_app, conn, db_url, full_text="english")
    names = app.pair(app.config.models[0]).names
    assert full_text_config(conn, names) == "english"
    assert "full_text" in view_columns(conn, "embedkeeper.docs__minilm")
    index = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (names.full_text_index,)
    ).fetchone()
    assert index is not None
    assert "USING gin (full_text)" in index[0]
    # PostgreSQL filled it for every chunk the pass wrote (COPY included): the comet's words.
    words = conn.execute(
        "SELECT full_text::text FROM embedkeeper.docs__minilm_chunks WHERE document_id = %s",
        (ids[-1],),
    ).fetchone()
    assert words is not None
    assert "'zyxwvut'" in words[0]
    assert "'comet'" in words[0]


def test_words_find_what_the_vector_ranks_low_and_fusion_puts_it_first(
    make_app, conn, db_url, minilm
):
    app, ids = embedded(make_app, conn, db_url, full_text="english")
    queries = app.pair(app.config.models[0]).statements
    question = "Who ran the Zyxwvut survey?"  # as `search` sends it
    vector = minilm.model.encode(question, normalize_embeddings=True)

    by_vector = nearest(conn, queries, vector, 3)
    found = by_words(conn, queries, vector, question, "english", 10)
    hybrid = hybrid_nearest(conn, queries, vector, question, "english", 3)

    assert len(by_vector) == 3
    # No passage holds every word ("run" is in none): the passage holding most of them first.
    assert found[0].document_id == ids[-1]
    assert found[0].found_by == (FULL_TEXT,)
    assert hybrid[0].document_id == ids[-1]
    assert hybrid[0].text == COMET
    # Its distance is its cosine distance, as a vector search reports it; its score the RRF's.
    exact = nearest(conn, queries, vector, len(ids))
    assert hybrid[0].distance == pytest.approx(
        next(h.distance for h in exact if h.document_id == ids[-1]), abs=1e-5
    )
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_a_question_as_people_type_it_finds_the_passage_by_its_words(
    make_app, conn, db_url, minilm
):
    """websearch_to_tsquery of the whole question wants every word: 'find' & 'size' & 'termin'
    & 'window', which the passage that answers it does not hold."""
    conn.execute("ALTER TABLE public.docs ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    texts = [
        "Get the size of the terminal window.",
        "Return the number of items in a container.",
        "Open a new window of the browser.",
        "The size of a file in bytes, as stat reports it.",
    ]
    ids = insert_docs(conn, texts)
    app = make_app(source_config(db_url, full_text="english"))
    one_pass(app)
    queries = app.pair(app.config.models[0]).statements
    question = "How can I find out the size of the terminal window?"
    vector = minilm.model.encode(question, normalize_embeddings=True)

    found = by_words(conn, queries, vector, question, "english", 10)

    # Three of its words first; then passages that hold one (size; window), none of the rest.
    assert found[0].document_id == ids[0]
    assert sorted(h.document_id for h in found[1:]) == [ids[2], ids[3]]
    # A passage that holds every word comes first, whatever the counts.
    every = by_words(conn, queries, vector, "terminal window size", "english", 10)
    assert every[0].document_id == ids[0]
    # The search's own syntax is taken as written: a phrase, a word left out.
    phrase = by_words(conn, queries, vector, '"terminal window" -browser', "english", 10)
    assert [h.document_id for h in phrase] == [ids[0]]
    without = by_words(conn, queries, vector, "window -terminal", "english", 10)
    assert [h.document_id for h in without] == [ids[2]]


def test_a_result_both_lists_hold_ranks_above_those_only_one_holds(make_app, conn, db_url, minilm):
    app, ids = embedded(make_app, conn, db_url, full_text="english")
    queries = app.pair(app.config.models[0]).statements
    # A question about comets and bread: the comet is near by meaning and holds the words.
    vector = minilm.model.encode("comet tails and bread", normalize_embeddings=True)
    hybrid = hybrid_nearest(conn, queries, vector, "comet tail", "english", 5, chunks=True)
    assert (hybrid[0].document_id, hybrid[0].chunk) == (ids[-1], 0)
    assert set(hybrid[0].found_by) == {VECTOR, FULL_TEXT}
    assert all(h.found_by == (VECTOR,) for h in hybrid[1:])


def test_the_sources_where_holds_on_the_words_side(make_app, conn, db_url, minilm):
    app, ids = embedded(make_app, conn, db_url, full_text="english", where="NOT deleted")
    conn.execute("UPDATE public.docs SET deleted = true WHERE id = %s", (ids[-1],))
    queries = made_pair(app, conn).statements
    vector = minilm.model.encode("Zyxwvut survey", normalize_embeddings=True)
    assert by_words(conn, queries, vector, "Zyxwvut survey", "english", 10) == []
    hybrid = hybrid_nearest(conn, queries, vector, "Zyxwvut survey", "english", 40)
    assert ids[-1] not in [h.document_id for h in hybrid]
    assert len(hybrid) == len(BREAD)


def test_migrate_adds_replaces_and_drops_the_column_of_a_pair_that_holds_chunks(
    make_app, conn, db_url
):
    app, ids = embedded(make_app, conn, db_url, full_text="")  # off: no column
    names = app.pair(app.config.models[0]).names
    queries = made_pair(app, conn).statements
    assert full_text_config(conn, names) is None
    assert "full_text" not in view_columns(conn, "embedkeeper.docs__minilm")

    assert set_full_text(conn, names, "english") == "full text (english) added"
    replace_view(conn, queries)
    filled = conn.execute(
        "SELECT count(*) FILTER (WHERE full_text @@ to_tsquery('english', 'ferment')),"
        " count(*) FROM embedkeeper.docs__minilm_chunks"
    ).fetchone()
    assert filled == (len(BREAD), len(ids))  # every existing chunk, "ferments" stemmed
    assert view_columns(conn, "embedkeeper.docs__minilm")[-1] == "full_text"
    assert set_full_text(conn, names, "english") is None  # already so: nothing done

    assert set_full_text(conn, names, "simple") == "full text english -> simple"
    replace_view(conn, queries)
    assert full_text_config(conn, names) == "simple"
    stems = conn.execute(
        "SELECT count(*) FROM embedkeeper.docs__minilm_chunks"
        " WHERE full_text @@ to_tsquery('simple', 'ferment')"
    ).fetchone()
    assert stems == (0,)  # "simple" does not stem: the column was made again

    assert set_full_text(conn, names, None) == "full text (simple) dropped"
    replace_view(conn, queries)
    assert full_text_config(conn, names) is None
    assert "full_text" not in view_columns(conn, "embedkeeper.docs__minilm")
    count = conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm").fetchone()
    assert count == (len(ids),)  # the chunks themselves untouched


def test_an_unknown_text_search_configuration_names_those_the_database_has(make_app, conn, db_url):
    app, _ = embedded(make_app, conn, db_url, full_text="")
    names = app.pair(app.config.models[0]).names
    with pytest.raises(ConfigError) as caught:
        set_full_text(conn, names, "klingon")
    message = str(caught.value)
    assert 'full_text = "klingon"' in message
    assert "english" in message
    assert "simple" in message
    assert full_text_config(conn, names) is None


def test_a_chunk_is_ranked_with_the_words_of_the_chunk_before_it(make_app, conn, db_url, minilm):
    """A content-defined chunk often starts at the answer, while the words of the question it
    answers end the chunk before (a FAQ's question, a changelog entry's heading): the answer
    ranks above passages that hold one of the question's words more often. Chunks written as a
    pass leaves them (records of the current text), so where the cuts fall is the test's."""
    faq = [
        "Questions and answers about the frobnitz daemon.",
        "Q: Why does the frobnitz daemon refuse to start after an upgrade?",
        "A stale lock file is left behind in /run by the old version during an upgrade; delete"
        " it and the service comes back.",
    ]
    upgrades = [f"Upgrade {i}: the notes of upgrade {i} list each upgrade." for i in range(6)]
    app = make_app(source_config(db_url, full_text="english"))
    pair = app.pair(app.config.models[0])
    app.ensure_tables(conn, pair, 384)
    documents = [("\n\n".join(faq), faq), *((text, [text]) for text in upgrades)]
    with conn.cursor() as cur:
        for doc, (text, passages) in enumerate(documents, start=1):
            cur.execute("INSERT INTO public.docs (id, body) VALUES (%s, %s)", (doc, text))
            cur.execute(
                "INSERT INTO embedkeeper.docs__minilm_documents (document_id, content_hash,"
                " chunking, chunk_count, token_count, truncated)"
                " VALUES (%s, %s, 'x', %s, 0, false)",
                (doc, hashlib.md5(text.encode()).digest(), len(passages)),
            )
            for chunk, passage in enumerate(passages):
                start = text.index(passage)
                vector = minilm.model.encode(passage, normalize_embeddings=True)
                cur.execute(
                    "INSERT INTO embedkeeper.docs__minilm_chunks VALUES (%s, %s, %s, %s, %s, %s)",
                    (doc, chunk, start, start + len(passage), passage, vector),
                )
    question = "frobnitz daemon won't start after upgrade"
    vector = minilm.model.encode(question, normalize_embeddings=True)

    found = by_words(conn, pair.statements, vector, question, "english", 10)

    ranked = [(h.document_id, h.chunk) for h in found]
    # The answer holds one of the words ("upgrade"), once; each of the others holds it 4 times.
    assert ranked.index((1, 2)) < min(ranked.index((doc, 0)) for doc in range(2, 8))
    assert ranked[:2] == [(1, 1), (1, 2)]  # the question (every word), then its answer
