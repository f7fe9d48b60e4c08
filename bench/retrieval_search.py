"""The retrieval benchmark's questions through `embedkeeper search`'s own statements, on the real
database: each way of storing (chunking = "none", chunked) is a pair's tables holding the vectors
bench/retrieval.py computed, with a `full_text` column; each question is searched by vector
alone (store/search.nearest, exact: no index at this size) and by vector and words
(store/hybrid_search.hybrid_nearest), as `embedkeeper search` and `--vector-only` do.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from bench._database import NULL_CONFIG, bench_database

K = 10


@dataclass
class Stored:
    """One way of storing the corpus: each chunk's document, span, passage and vector."""

    label: str
    owners: Sequence[int]
    spans: Sequence[tuple[int, int]]
    passages: Sequence[str]
    vectors: Any  # (chunks, dims) float32, normalized


@contextmanager
def search_database(texts: Sequence[str]) -> Iterator[str]:
    """An embedded PostgreSQL whose public.docs holds the corpus; yields its URL."""

    def fill(conn: psycopg.Connection[Any]) -> None:
        with conn.cursor().copy("COPY docs (id, body) FROM STDIN") as copy:
            for number, text in enumerate(texts):
                copy.write_row((number, text.replace("\x00", "")))

    with bench_database(NULL_CONFIG, fill) as database:
        yield database.copy("retrieval")


def recall_by_search(
    url: str,
    stored: Stored,
    sets: dict[str, tuple[Sequence[tuple[str, int]], Any]],
    full_text: str,
    misses: bool = False,
) -> dict[str, dict[str, float]]:
    """For each question set: recall@K of each question's document by vector alone and by
    vector and words, through the product's statements over a pair made for `stored`, and the
    mean milliseconds a search."""
    from pgvector.psycopg import register_vector

    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        pair = make_pair(conn, stored, full_text)
        return {
            kind: _recall(conn, pair, questions, queries, full_text, stored.label, misses)
            for kind, (questions, queries) in sets.items()
        }


def make_pair(conn: psycopg.Connection[Any], stored: Stored, full_text: str | None) -> Any:
    """A pair's tables (`embedkeeper.docs__<label>...`) over public.docs holding `stored`, with
    a full-text column made with `full_text` (None: none); returns the pair's statements, as
    the product's search takes them. `conn` is autocommit, with pgvector registered."""
    from embedkeeper.config import SourceConfig
    from embedkeeper.store.pair.full_text import set_full_text
    from embedkeeper.store.pair.tables import PairNames, create_pair_tables
    from embedkeeper.store.source.queries import PairQueries

    names = PairNames.of("docs", stored.label)
    dims = int(stored.vectors.shape[1])
    with conn.transaction():
        create_pair_tables(conn, names, key_type="bigint", dimensions=dims)
    set_full_text(conn, names, full_text)
    pair = PairQueries(SourceConfig(schema="public", table="docs"), "bigint", names)
    _load(conn, pair, stored)
    return pair


def _recall(
    conn: psycopg.Connection[Any],
    pair: Any,
    questions: Sequence[tuple[str, int]],
    queries: Any,
    full_text: str,
    label: str,
    misses: bool,
) -> dict[str, float]:
    from embedkeeper.store.search.hybrid import hybrid_nearest
    from embedkeeper.store.search.nearest import nearest

    hits = {"vector": 0, "vector+words": 0}
    seconds = {"vector": 0.0, "vector+words": 0.0}
    for (question, source), query in zip(questions, queries, strict=True):
        vector = np.asarray(query, dtype=np.float32)
        start = time.perf_counter()
        alone = nearest(conn, pair, vector, K)
        seconds["vector"] += time.perf_counter() - start
        start = time.perf_counter()
        both = hybrid_nearest(conn, pair, vector, question, full_text, K)
        seconds["vector+words"] += time.perf_counter() - start
        hits["vector"] += source in [h.document_id for h in alone]
        found = source in [h.document_id for h in both]
        hits["vector+words"] += found
        if misses and not found:
            print(f"      miss with words ({label}): {question!r}")
    count = max(1, len(questions))
    return {
        **{way: hits[way] / count for way in hits},
        **{f"{way} ms": 1000 * seconds[way] / count for way in seconds},
    }


def _load(conn: psycopg.Connection[Any], pair: Any, stored: Stored) -> None:
    """Records and chunks as a pass writes them (the full-text column is PostgreSQL's to fill).
    Each record then takes the hash of its document's current text, computed as the write's
    fence computes it: search serves only the chunks of a record holding it."""
    from embedkeeper.store.source.source_sql import content_hash

    names = pair.names
    counts: dict[int, int] = {}
    for owner in stored.owners:
        counts[owner] = counts.get(owner, 0) + 1
    with conn.transaction():
        with conn.cursor().copy(
            psycopg.sql.SQL(
                "COPY {} (document_id, content_hash, chunking, chunk_count, token_count,"
                " truncated) FROM STDIN"
            ).format(names.documents)
        ) as copy:
            for owner, count in counts.items():
                digest = hashlib.md5(str(owner).encode()).digest()
                copy.write_row((owner, digest, stored.label, count, 0, False))
        with conn.cursor().copy(
            psycopg.sql.SQL(
                "COPY {} (document_id, chunk, char_start, char_end, passage, embedding) FROM STDIN"
            ).format(names.chunks)
        ) as copy:
            seen: dict[int, int] = {}
            for owner, (start, end), passage, vector in zip(
                stored.owners, stored.spans, stored.passages, stored.vectors, strict=True
            ):
                number = seen.get(owner, 0)
                seen[owner] = number + 1
                copy.write_row((owner, number, start, end, passage.replace("\x00", ""), vector))
        conn.execute(
            psycopg.sql.SQL(
                "UPDATE {records} AS r SET content_hash = {hash} FROM {documents} AS s"
                " WHERE {id} = r.document_id"
            ).format(
                records=names.documents,
                hash=content_hash(pair.text),
                documents=pair.documents,
                id=pair.id,
            )
        )
        conn.execute(psycopg.sql.SQL("ANALYZE {}").format(names.chunks))
