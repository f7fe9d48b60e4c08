"""A (source, model) pair's tables: typed keys side by side, a typed vector column with a plain
HNSW index a search uses without a cast, names that never collide."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pgvector import HalfVector

from embedkeeper.models.pairs import MAX_NAME, pair_base_name
from embedkeeper.store.pair.tables import PairNames, create_pair_tables, vector_column_type


def column_type(conn, table, column: str) -> str:
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attname = %s",
        (table.as_string(conn), column),
    ).fetchone()
    return row[0]


def test_pairs_with_bigint_text_and_uuid_keys_live_side_by_side(conn):
    pairs = {
        "bigint": PairNames.of("articles", "minilm"),
        "text": PairNames.of("pages", "minilm"),
        "uuid": PairNames.of("tickets", "minilm"),
    }
    with conn.transaction():
        for key_type, names in pairs.items():
            create_pair_tables(conn, names, key_type=key_type, dimensions=384)
    for key_type, names in pairs.items():
        for table in (names.documents, names.chunks, names.failures):
            assert column_type(conn, table, "document_id") == key_type
        assert vector_column_type(conn, names) == "vector(384)"
    ticket = uuid.uuid4()
    conn.execute(
        "INSERT INTO embedkeeper.tickets__minilm_documents (document_id, content_hash, chunking,"
        " chunk_count, token_count, truncated) VALUES (%s, 'x', 'none', 1, 1, false)",
        (ticket,),
    )
    conn.execute(
        "INSERT INTO embedkeeper.tickets__minilm_chunks VALUES (%s, 0, 0, 5, 'hello', %s)",
        (ticket, np.ones(384, dtype=np.float32)),
    )
    with pytest.raises(Exception, match="expected 384 dimensions"):
        conn.execute(
            "INSERT INTO embedkeeper.articles__minilm_chunks VALUES (1, 0, 0, 5, 'x', %s)",
            (np.ones(3, dtype=np.float32),),
        )


def test_creating_twice_changes_nothing(conn):
    names = PairNames.of("docs", "minilm")
    create_pair_tables(conn, names, key_type="bigint", dimensions=384)
    conn.execute(
        "INSERT INTO embedkeeper.docs__minilm_failures (document_id, attempts,"
        " error_class, message, status) VALUES (1, 1, 'X', 'm', 'review')"
    )
    create_pair_tables(conn, names, key_type="bigint", dimensions=384)
    assert conn.execute("SELECT count(*) FROM embedkeeper.docs__minilm_failures").fetchone() == (1,)


def test_halfvec_storage_takes_a_plain_hnsw_index_that_a_search_uses_without_a_cast(conn):
    """The statements `nearest` and `by_words` run, explained: the pair's HNSW index serves the
    vector's order with no cast, its GIN index the words."""
    from psycopg import sql

    from embedkeeper.store.pair.full_text import set_full_text
    from embedkeeper.store.search.nearest import explain_nearest, words_statement
    from embedkeeper.store.source.queries import PairQueries
    from tests.conftest import source_config

    names = PairNames.of("docs", "big")
    create_pair_tables(conn, names, key_type="bigint", dimensions=3072, storage="halfvec")
    set_full_text(conn, names, "english")
    assert vector_column_type(conn, names) == "halfvec(3072)"
    rng = np.random.default_rng(1)
    conn.execute(
        "INSERT INTO public.docs (id, body) SELECT g, 'passage ' || g FROM generate_series(0, 49) g"
    )
    conn.execute(
        "INSERT INTO embedkeeper.docs__big_documents (document_id, content_hash, chunking,"
        " chunk_count, token_count, truncated) SELECT id, decode(md5(body), 'hex'), 'none', 1, 1,"
        " false FROM public.docs"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO embedkeeper.docs__big_chunks VALUES (%s, 0, 0, 1, %s, %s)",
            [(i, f"passage {i}", HalfVector(rng.standard_normal(3072))) for i in range(50)],
        )
    conn.execute(
        "CREATE INDEX docs__big_hnsw ON embedkeeper.docs__big_chunks"
        " USING hnsw (embedding halfvec_cosine_ops)"
    )
    conn.execute("ANALYZE")
    conn.execute("SET enable_seqscan = off")  # 50 rows: reading them whole would win on cost
    conn.execute("SET enable_sort = off")
    pair = PairQueries(source_config().source, "bigint", names)
    query = rng.standard_normal(3072).astype(np.float32)

    vector_plan = explain_nearest(conn, pair, query, 5)
    conn.execute("RESET enable_sort")  # the words' rows are sorted by rank: that is their plan
    conn.execute("SET enable_indexscan = off")  # 50 rows: the key's index and a filter would do
    statement, params = words_statement(pair, query, "where are the zebras?", "english", 5)
    words_plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + statement, params))

    assert "Index Scan using docs__big_hnsw on docs__big_chunks" in vector_plan
    assert "Order By: (embedding <=> " in vector_plan
    assert "::halfvec" not in vector_plan.split("Order By:")[0]  # the column as it is, no cast
    assert "Bitmap Index Scan on docs__big_full_text" in words_plan


ODD_PAIRS = [
    ("Docs", "minilm"),
    ("docs", "MiniLM"),
    ("docs", "mini-lm"),
    ("docs", "minilm" + "x" * 80),
    ("docs", "minilm" + "x" * 81),
    ("dö cs", "minilm"),
    ("docs_", "_minilm"),
    ("docs", "__minilm"),
    ("do__cs", "minilm"),
    ("a" * 20, "b" * 31),
]
# A model named after another's relation: (docs, minilm_chunks) would make a view
# docs__minilm_chunks, the chunks table of (docs, minilm).
SUFFIXED_PAIRS = [
    ("docs", "minilm_chunks"),
    ("docs", "minilm_documents"),
    ("docs", "minilm_failures"),
    ("docs", "minilm_chunking"),
    ("docs", "minilm_hnsw"),
    ("docs", "minilm_full_text"),
    ("docs", "minilm_chunks_pkey"),
    ("docs", "minilm_documents_pkey"),
    ("docs_chunks", "minilm"),
]


def catalog_names(conn) -> set[str]:
    """Every relation (table, view, index) and constraint in schema embedkeeper, by name; not
    the NOT NULL constraints PostgreSQL 18 names after their table and column itself."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'embedkeeper'"
        " UNION ALL SELECT con.conname FROM pg_constraint con"
        " JOIN pg_namespace n ON n.oid = con.connamespace"
        " WHERE n.nspname = 'embedkeeper' AND con.contype <> 'n'"
    ).fetchall()
    return {row[0] for row in rows}


def make_everything(conn, names: PairNames) -> None:
    """All that a pair may get: its tables, full-text column and index, view, HNSW index."""
    from psycopg import sql

    from embedkeeper.store.pair.full_text import set_full_text
    from embedkeeper.store.pair.view import replace_view
    from embedkeeper.store.source.queries import PairQueries
    from tests.conftest import source_config

    with conn.transaction():
        create_pair_tables(conn, names, key_type="bigint", dimensions=3)
    set_full_text(conn, names, "english")
    replace_view(conn, PairQueries(source_config().source, "bigint", names))
    conn.execute(
        sql.SQL("CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops)").format(
            sql.Identifier(names.hnsw_index), names.chunks
        )
    )


def test_pair_names_are_plain_when_they_can_be_and_never_collide_or_overflow():
    assert pair_base_name("docs", "minilm") == "docs__minilm"
    pairs = [("docs", "minilm"), *ODD_PAIRS, *SUFFIXED_PAIRS]
    every = [name for s, m in pairs for name in PairNames.of(s, m).relations.every_name()]
    assert len(set(every)) == len(every)  # no name of one pair is a name of another
    assert all(len(name) <= MAX_NAME for name in every)
    bases = [PairNames.of(s, m).base for s, m in pairs]
    assert all(b == b.lower() and b.replace("_", "").isalnum() for b in bases)


def test_every_relation_and_constraint_of_two_pairs_is_their_own_in_the_database(conn):
    """Made in the database, in an order where a name taken first would hide the later pair's
    object (CREATE ... IF NOT EXISTS) or refuse it: each pair gets exactly the names
    PairNames lists, none of which another pair has."""
    made: dict[tuple[str, str], set[str]] = {}
    for source, model in [("docs", "minilm"), *SUFFIXED_PAIRS, *ODD_PAIRS]:
        before = catalog_names(conn)
        make_everything(conn, PairNames.of(source, model))
        made[source, model] = catalog_names(conn) - before
    first = made["docs", "minilm"]
    for pair, names in made.items():
        assert len(names) == len(first), f"{pair}: {sorted(names)}"
    for (source, model), names in made.items():
        assert names == set(PairNames.of(source, model).relations.every_name())


def test_a_pair_is_recorded_once_and_a_config_that_moves_it_is_refused_naming_both(conn):
    from embedkeeper.errors import ConfigError, DimensionMismatch
    from embedkeeper.store.pair.tables import PairRecord, record_pair

    names = PairNames.of("articles", "minilm")
    made = PairRecord("public.articles", "bigint", 384, "vector")
    record_pair(conn, names, made)
    record_pair(conn, names, made)  # the same config again: nothing changes
    rows = conn.execute(
        "SELECT source, model, base_name, source_table, dimensions FROM embedkeeper.pairs"
    ).fetchall()
    assert rows == [("articles", "minilm", "articles__minilm", "public.articles", 384)]
    with pytest.raises(ConfigError) as moved:
        record_pair(conn, names, PairRecord("public.pages", "bigint", 384, "vector"))
    message = str(moved.value)
    assert "table public.pages" in message
    assert "made from table public.articles" in message
    with pytest.raises(ConfigError, match="key is now text"):
        record_pair(conn, names, PairRecord("public.articles", "text", 384, "vector"))
    with pytest.raises(DimensionMismatch, match=r"halfvec\(768\).*vector\(384\)"):
        record_pair(conn, names, PairRecord("public.articles", "bigint", 768, "halfvec"))
    record_pair(
        conn, PairNames.of("pages", "minilm"), PairRecord("public.pages", "text", 384, "vector")
    )
    assert conn.execute("SELECT count(*) FROM embedkeeper.pairs").fetchone() == (2,)
