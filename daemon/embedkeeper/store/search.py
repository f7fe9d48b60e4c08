"""The nearest documents (or chunks) to a query vector, with the source's `where` applied.

The statement reads the pair's chunks, whose typed column the pair's HNSW index serves with no
cast (without an index it is an exact scan). The source
is joined with its filter, so a soft-deleted document is never returned, even before the next
pass prunes its vector. pgvector 0.8's iterative scan keeps walking the graph while the join
filters rows out, so a filter does not starve the result; its relaxed order is why the caller
gets the rows sorted here, by distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from embedkeeper.records import DocumentId
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.source_sql import SourceSql

PASSAGE_CHARS = 1000  # of a chunk's passage, returned with each hit
MAX_EF_SEARCH = 1000  # pgvector's bound for hnsw.ef_search
# The HNSW scan's candidate list by default. pgvector's own default, 40, found 86 % of the true
# ten nearest among 200,000 MiniLM chunks; 200 found 97 % at 8 ms (BENCHMARKS.md, bench search).
EF_SEARCH = 200
MAX_CHUNKS_READ = 20_000  # chunks read to find k documents' best ones, at most


VECTOR = "vector"  # found by the HNSW (or exact) scan of the query's vector
FULL_TEXT = "full_text"  # found by the pair's full-text column holding the question's words


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: DocumentId
    chunk: int
    distance: float  # cosine distance of the chunk to the question, however it was found
    text: str
    found_by: tuple[str, ...] = (VECTOR,)


def nearest(
    conn: psycopg.Connection[Any],
    queries: SourceSql,
    query: npt.NDArray[np.float32],
    k: int,
    *,
    chunks: bool = False,
    ef_search: int = EF_SEARCH,
) -> list[Hit]:
    """The k documents nearest to `query` by cosine distance, nearest first, each by its best
    chunk; with `chunks`, the k nearest chunks. The statement has the shape the pair's HNSW
    index serves (ORDER BY the typed column's distance, LIMIT): best chunks per document are
    picked from the nearest chunks, read again with a larger limit while too few documents
    came back. `ef_search`: the HNSW scan's candidate list (at least the rows asked for); more
    finds more of the true nearest, and costs time."""
    statement = _chunks_statement(queries, "ORDER BY c.embedding <=> %(q)s LIMIT %(limit)s")
    limit = k if chunks else k * 4
    while True:
        params = {"q": query, "limit": limit, "chars": PASSAGE_CHARS}
        with mapped_errors("searching"), conn.transaction():
            _iterative_scan(conn, max(ef_search, limit))
            rows = conn.execute(statement, params).fetchall()
        hits = sorted(_hits(rows, (VECTOR,)), key=lambda h: h.distance)
        if chunks:
            return hits[:k]
        best = best_per_document(hits)
        if len(best) >= k or len(rows) < limit or limit >= MAX_CHUNKS_READ:
            return best[:k]
        limit = min(limit * 4, MAX_CHUNKS_READ)


def by_words(
    conn: psycopg.Connection[Any],
    queries: SourceSql,
    query: npt.NDArray[np.float32],
    words: str,
    config: str,
    limit: int,
) -> list[Hit]:
    """The `limit` chunks whose passage holds the question's words (web-search syntax:
    every word, "a phrase", `or`, `-word`), best `ts_rank_cd` first, through the pair's GIN
    index on its full-text column (store/full_text.py), the source's `where` applied. Each
    carries its cosine distance to `query`, so a row reads the same whichever way it came."""
    statement = _chunks_statement(
        queries,
        "WHERE c.full_text @@ websearch_to_tsquery(%(config)s::regconfig, %(words)s)"
        " ORDER BY ts_rank_cd(c.full_text, websearch_to_tsquery(%(config)s::regconfig, %(words)s))"
        " DESC, c.document_id, c.chunk LIMIT %(limit)s",
    )
    params = {"q": query, "words": words, "config": config, "limit": limit, "chars": PASSAGE_CHARS}
    with mapped_errors("searching by words"):
        rows = conn.execute(statement, params).fetchall()
    return _hits(rows, (FULL_TEXT,))


def best_per_document(hits: Sequence[Hit]) -> list[Hit]:
    """Each document's first hit, in the order given (its best, when the hits are best first)."""
    best: dict[DocumentId, Hit] = {}
    for hit in hits:
        best.setdefault(hit.document_id, hit)
    return list(best.values())


def _chunks_statement(queries: SourceSql, rest: str) -> sql.Composed:
    """A pair's chunks joined to the source (its `where` applied), each with its distance to
    %(q)s and its passage's start: the head both searches share, then `rest` (our own SQL)."""
    assert queries.names is not None, "search reads a pair's chunks"
    return sql.SQL(
        "SELECT c.document_id, c.chunk, c.embedding <=> %(q)s AS distance,"
        " left(c.passage, %(chars)s)"
        " FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id "
    ).format(chunks=queries.names.chunks, documents=queries.documents, id=queries.id) + sql.SQL(
        rest
    )


def _hits(rows: Sequence[tuple[Any, ...]], found_by: tuple[str, ...]) -> list[Hit]:
    return [Hit(r[0], int(r[1]), float(r[2]), r[3] or "", found_by) for r in rows]


def _iterative_scan(conn: psycopg.Connection[Any], ef_search: int) -> None:
    """The scan's candidate list, and let the HNSW scan go on past it when the join filters
    some out (pgvector 0.8 and later; an older pgvector searches without it)."""
    conn.execute(
        "SELECT set_config('hnsw.ef_search', %s, true)",
        (str(min(max(1, ef_search), MAX_EF_SEARCH)),),
    )
    unknown_setting = (
        psycopg.errors.UndefinedObject,
        psycopg.errors.InvalidParameterValue,
        psycopg.errors.InvalidName,
    )
    try:
        with conn.transaction():  # a savepoint: an unknown setting must not end the search
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
    except unknown_setting:
        pass
