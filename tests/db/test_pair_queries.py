"""The source's statements over a (source, model) pair's own tables: the same coverage and prune
as on the shared tables, with no `model` column to pick (issue 13: the storage switch)."""

from __future__ import annotations

import hashlib

from psycopg import sql

from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import PairNames, create_pair_tables
from embedkeeper.store.report.coverage import measure
from tests.conftest import insert_docs, source_config


def md5(text: str) -> bytes:
    return hashlib.md5(text.encode()).digest()


def pair_queries(conn, db_url) -> tuple[PairNames, Pair]:
    """public.docs's pair with minilm, its tables made."""
    config = source_config(db_url)
    pair = Pair.of(config.source, config.models[0], "bigint")
    assert pair.names == PairNames.of("docs", "minilm")
    with conn.transaction():
        create_pair_tables(conn, pair.names, key_type="bigint", dimensions=3)
    return pair.names, pair


def test_coverage_and_prune_read_a_pairs_tables(conn, db_url):
    names, queries = pair_queries(conn, db_url)
    texts = ["current", "edited", "in review", "new", "   "]
    ids = insert_docs(conn, texts)
    record = sql.SQL(
        "INSERT INTO {} (document_id, content_hash, chunking, chunk_count, token_count,"
        " truncated) VALUES (%s, %s, 'none', 1, 1, false)"
    ).format(names.documents)
    conn.execute(record, (ids[0], md5("current")))
    conn.execute(record, (ids[1], md5("the text before the edit")))
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (document_id, attempts, error_class, message, content_hash, status)"
            " VALUES (%s, 3, 'InputRejected', 'no', %s, 'review')"
        ).format(names.failures),
        (ids[2], md5("in review")),
    )
    figures = measure(conn, queries, "none")

    assert (figures.total, figures.skipped, figures.embedded, figures.stale) == (5, 1, 2, 1)
    assert (figures.pending, figures.failed, figures.ignored) == (2, 1, 0)

    conn.execute("DELETE FROM public.docs WHERE id = ANY(%s)", ([ids[0], ids[2]],))
    deleted = conn.execute(queries.statements.prune_deleted(), {"model": "minilm"}).fetchone()
    assert deleted == (1,)
    left = sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
        names.documents, names.failures
    )
    assert conn.execute(left).fetchone() == (1, 0)


def test_failures_are_charged_in_a_pairs_table(conn, db_url):
    from embedkeeper.config import RetryConfig
    from embedkeeper.records import Document, Rejected
    from embedkeeper.store.pass_io.writer import charge

    names, queries = pair_queries(conn, db_url)
    (doc,) = insert_docs(conn, ["refused text"])
    rejected = [Rejected(Document(doc, "refused text", False, md5("refused text")), "X", "no")]
    retry = RetryConfig(max_attempts=2)
    charge(conn, queries, rejected, retry)
    charge(conn, queries, rejected, retry)
    row = conn.execute(
        sql.SQL("SELECT document_id, attempts, status FROM {}").format(names.failures)
    ).fetchall()
    assert row == [(doc, 2, "review")]
