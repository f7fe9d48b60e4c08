"""The nearest documents to a query vector, with the source's `where` applied.

The statement has the shape the model's HNSW index serves (the cast to the model's dimensions and
the `model =` condition of the partial index; without an index it is an exact scan). The source
is joined with its filter, so a soft-deleted document is never returned, even before the next
pass prunes its vector. pgvector 0.8's iterative scan keeps walking the graph while the join
filters rows out, so a filter does not starve the result; its relaxed order is why the caller
gets the rows sorted here, by distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from embedkeeper.records import DocumentId
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.source_sql import SourceSql

PASSAGE_CHARS = 1000  # of a document's text, returned with each hit
MAX_EF_SEARCH = 1000  # pgvector's bound for hnsw.ef_search


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: DocumentId
    chunk: int
    distance: float
    text: str


def nearest(
    conn: psycopg.Connection[Any],
    queries: SourceSql,
    model: str,
    dimensions: int,
    query: npt.NDArray[np.float32],
    k: int,
) -> list[Hit]:
    """The k documents nearest to `query` by cosine distance, nearest first."""
    vector = sql.SQL("vector({})").format(sql.Literal(int(dimensions)))
    statement = sql.SQL(
        """
        SELECT e.document_id, e.embedding::{vector} <=> %(q)s::{vector} AS distance,
               left({text}::text, %(chars)s)
        FROM {embeddings} AS e JOIN {documents} AS s ON {id} = e.document_id
        WHERE {e_model}TRUE
        ORDER BY e.embedding::{vector} <=> %(q)s::{vector}
        LIMIT %(k)s
        """
    ).format(
        vector=vector,
        text=queries.text,
        embeddings=queries.vectors,
        e_model=queries.of_model("e"),
        documents=queries.documents,
        id=queries.id,
    )
    params = {"q": query, "model": model, "k": k, "chars": PASSAGE_CHARS}
    with mapped_errors("searching"), conn.transaction():
        _iterative_scan(conn, k)
        rows = conn.execute(statement, params).fetchall()
    hits = [Hit(row[0], 0, float(row[1]), row[2] or "") for row in rows]
    return sorted(hits, key=lambda h: h.distance)


def _iterative_scan(conn: psycopg.Connection[Any], k: int) -> None:
    """Let the HNSW scan go on past ef_search candidates when the join filters some out
    (pgvector 0.8 and later; an older pgvector searches without it)."""
    conn.execute(
        "SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(40, k), MAX_EF_SEARCH)),)
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
