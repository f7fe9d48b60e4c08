"""A (source, model) pair's tables: typed keys side by side, a typed vector column with a plain
HNSW index a search uses without a cast, names that never collide."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from pgvector import HalfVector

from embedkeeper.models.pairs import MAX_NAME, SUFFIXES, pair_base_name
from embedkeeper.store.pair_tables import PairNames, create_pair_tables, vector_column_type


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
    names = PairNames.of("docs", "big")
    create_pair_tables(conn, names, key_type="bigint", dimensions=3072, storage="halfvec")
    assert vector_column_type(conn, names) == "halfvec(3072)"
    rng = np.random.default_rng(1)
    conn.execute(
        "INSERT INTO embedkeeper.docs__big_documents (document_id, content_hash, chunking,"
        " chunk_count, token_count, truncated) SELECT g, 'x', 'none', 1, 1, false"
        " FROM generate_series(0, 49) AS g"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO embedkeeper.docs__big_chunks VALUES (%s, 0, 0, 1, 'p', %s)",
            [(i, HalfVector(rng.standard_normal(3072))) for i in range(50)],
        )
    conn.execute(
        "CREATE INDEX docs__big_hnsw ON embedkeeper.docs__big_chunks"
        " USING hnsw (embedding halfvec_cosine_ops)"
    )
    conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT document_id FROM embedkeeper.docs__big_chunks"
            " ORDER BY embedding <=> %s LIMIT 5",
            (HalfVector(rng.standard_normal(3072)),),
        )
    )
    assert "Index Scan using docs__big_hnsw" in plan


def test_pair_names_are_plain_when_they_can_be_and_never_collide_or_overflow():
    assert pair_base_name("docs", "minilm") == "docs__minilm"
    odd = [
        ("Docs", "minilm"),
        ("docs", "MiniLM"),
        ("docs", "mini-lm"),
        ("docs", "minilm" + "x" * 80),
        ("docs", "minilm" + "x" * 81),
        ("dö cs", "minilm"),
        ("docs_", "_minilm"),
        ("docs", "__minilm"),
        ("do__cs", "minilm"),
    ]
    bases = {pair_base_name(s, m) for s, m in odd} | {"docs__minilm"}
    assert len(bases) == len(odd) + 1
    longest = max(len(s) for s in SUFFIXES)
    assert all(len(b) + longest <= MAX_NAME for b in bases)
    assert all(b == b.lower() and b.replace("_", "").isalnum() for b in bases)


def test_a_pair_is_recorded_once_and_a_config_that_moves_it_is_refused_naming_both(conn):
    from embedkeeper.errors import ConfigError, DimensionMismatch
    from embedkeeper.store.pair_tables import PairRecord, record_pair

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
