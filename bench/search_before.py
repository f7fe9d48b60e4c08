"""Search now against search as it was at 2539447, side by side (issue 23's bound: p50 and p95
within 10 %): `python -m bench search_before`.

2539447's `nearest` served the chunks of documents edited since they were embedded (C2) and read
the index again with 4 x the limit while too few documents came back (S4). Its statement and
loop are copied here, as they were, so both run in one process on one database, alternated
query by query (who goes first rotating each round): the machine's noise falls on both.

The database is bench/search.py's: BENCH_SEARCH_CHUNKS (default 200,000) chunks, 4 a
document, BENCH_SEARCH_VECTORS (default "lowrank") vectors, the pair's cosine HNSW index (m 16,
ef_construction 64); no updated_at column, so today's search hashes each row it reads. 150
queries x 3 rounds, k = 10, ef_search 200 (the product's default). Both must return the same
documents for the first 30 queries (no document is stale here); a difference is printed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from bench import search as search_bench
from bench._database import bench_database

QUERIES = 150
ROUNDS = 3
K = 10
EF_SEARCH = 200
Search = Callable[[psycopg.Connection[Any], Any, npt.NDArray[np.float32], bool], list[Any]]


def before(
    conn: psycopg.Connection[Any], queries: Any, query: npt.NDArray[np.float32], chunks: bool
) -> list[Any]:
    """2539447's store/search.py nearest, its statement and loop as they were."""
    statement = sql.SQL(
        "SELECT c.document_id, c.chunk, c.embedding <=> %(q)s AS distance,"
        " left(c.passage, %(chars)s)"
        " FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id "
        "ORDER BY c.embedding <=> %(q)s LIMIT %(limit)s"
    ).format(chunks=queries.names.chunks, documents=queries.documents, id=queries.id)
    limit = K if chunks else K * 4
    while True:
        params = {"q": query, "limit": limit, "chars": 1000}
        with conn.transaction():
            ef = str(min(max(1, max(EF_SEARCH, limit)), 1000))
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (ef,))
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            rows = conn.execute(statement, params).fetchall()
        rows.sort(key=lambda r: float(r[2]))
        if chunks:
            return [r[0] for r in rows[:K]]
        best: dict[Any, Any] = {}
        for r in rows:
            best.setdefault(r[0], r)
        if len(best) >= K or len(rows) < limit or limit >= 20_000:
            return list(best)[:K]
        limit = min(limit * 4, 20_000)


def now(
    conn: psycopg.Connection[Any], queries: Any, query: npt.NDArray[np.float32], chunks: bool
) -> list[Any]:
    from embedkeeper.store.search.nearest import nearest

    hits = nearest(conn, queries, query, K, chunks=chunks, ef_search=EF_SEARCH)
    return [hit.document_id for hit in hits]


def main() -> None:
    from pgvector.psycopg import register_vector

    per_doc = search_bench.PER_DOC
    docs = search_bench.CHUNKS // per_doc
    vectors, queries = search_bench._vectors(np.random.default_rng(11), docs * per_doc, QUERIES)

    def fill(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO docs SELECT g, 'document ' || g FROM generate_series(1, %s) g", (docs,)
        )

    ways: dict[str, Search] = {"2539447": before, "now": now}
    with bench_database(search_bench.CONFIG, fill) as database:
        url, statements = _indexed_pair(database, vectors)
        with psycopg.connect(url) as conn:
            register_vector(conn)
            _same_documents(conn, statements, queries[:30], ways)
            times = _alternated(conn, statements, queries, ways)
    _report(docs * per_doc, times)


def _indexed_pair(database: Any, vectors: npt.NDArray[np.float32]) -> tuple[str, Any]:
    """The pair's tables loaded and its HNSW index built, as bench/search.py does."""
    from embedkeeper.app import open_app
    from embedkeeper.config import load_config
    from embedkeeper.store.db import connect
    from embedkeeper.store.index.index_build import BuildSettings, HnswParams
    from embedkeeper.store.index.vector_index import create_index

    url = database.copy("search_before")
    config = load_config(database.config, overrides={"EMBEDKEEPER_DATABASE_URL": url})
    app = open_app(config)
    pair = app.pair(config.models[0])
    with connect(url) as conn:
        app.make_tables(conn, pair)
        search_bench._load(conn, pair.names, vectors, [])
        create_index(conn, app.index_target(conn, pair), HnswParams(), BuildSettings())
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    return url, pair.statements


def _same_documents(
    conn: psycopg.Connection[Any], statements: Any, queries: Any, ways: dict[str, Search]
) -> None:
    for query in queries:
        for chunks in (False, True):
            found = {name: way(conn, statements, query, chunks) for name, way in ways.items()}
            if len({tuple(ids) for ids in found.values()}) > 1:
                print(f"  differ (chunks={chunks}): {found}")


def _alternated(
    conn: psycopg.Connection[Any], statements: Any, queries: Any, ways: dict[str, Search]
) -> dict[tuple[str, bool], list[float]]:
    times: dict[tuple[str, bool], list[float]] = {
        (name, chunks): [] for name in ways for chunks in (False, True)
    }
    for round_ in range(ROUNDS):
        order = list(ways.items())
        order = order[round_ % 2 :] + order[: round_ % 2]
        for query in queries:
            for name, way in order:
                for chunks in (False, True):
                    start = time.perf_counter()
                    way(conn, statements, query, chunks)
                    times[(name, chunks)].append(time.perf_counter() - start)
    return times


def _report(chunks_stored: int, times: dict[tuple[str, bool], list[float]]) -> None:
    print(
        f"search now vs 2539447: {chunks_stored:,} chunks, {QUERIES} queries x {ROUNDS} rounds,"
        f" k {K}, ef_search {EF_SEARCH}"
    )
    for chunks in (False, True):
        base = sorted(times[("2539447", chunks)])
        for name in ("2539447", "now"):
            taken = sorted(times[(name, chunks)])
            p50, p95 = statistics.median(taken), taken[int(0.95 * len(taken))]
            print(
                f"  {'chunks' if chunks else 'documents':9} {name:8} p50 {p50 * 1e3:6.2f} ms"
                f" ({p50 / statistics.median(base):.3f} x)"
                f"  p95 {p95 * 1e3:6.2f} ms ({p95 / base[int(0.95 * len(base))]:.3f} x)"
            )
