"""The backlog: about how many documents a model still has to embed, cheap enough to ask every
few seconds on a table of any size.

The exact figure (store/report/coverage.py) reads every row of the source and hashes every text
that has
a vector. This one reads no row of the source: the documents in scope with a text are the
planner's estimate (EXPLAIN, from the catalog's statistics: the table's size, the `where` filter's
selectivity, the text column's fraction of NULLs), and the rest comes from the model's own tables
by their indexes (the model's vectors, an index-only count on embeddings_pkey; its failures parked
in review or ignored). What it cannot see without the source: texts of only whitespace, and stale
vectors (edits of embedded documents; `coverage` counts both). So it is an estimate, good for a
trend, an alert and an ETA, and exact right after an ANALYZE of the source when no vector is
stale and no text is only whitespace. A small source that was never analyzed is counted instead
(COUNT_BELOW: the planner's guess for it is pages-based). The daemon's gauge and `embedkeeper stats`
show the same figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.source.source_sql import PairSql, SourceSql

# A source with no statistics that the planner puts under this many documents is counted
# instead: a small table may never be analyzed (autovacuum waits for 50 changed rows and a tenth
# of the table), and the planner's guess for it is pages-based (20 help pages of 40 kB read as
# 856 rows). Counting a table that small takes milliseconds.
COUNT_BELOW = 10_000


def model_figures(queries: PairSql) -> sql.Composed:
    """The pair's records, its parked failures with no record, and its failures in review."""
    return sql.SQL(
        """
        SELECT (SELECT count(*) FROM {records}),
               (SELECT count(*) FROM {failures} AS f
                 WHERE f.status IN ('review', 'ignored')
                   AND NOT EXISTS (SELECT 1 FROM {records} AS e
                                    WHERE e.document_id = f.document_id)),
               (SELECT count(*) FROM {failures} WHERE status = 'review')
        """
    ).format(records=queries.vectors, failures=queries.failures)


@dataclass(frozen=True, slots=True)
class Backlog:
    model: str
    documents: int  # in scope with a text (not NULL), the planner's estimate
    embedded: int  # the model's vectors, current or stale
    parked: int  # in review or ignored, with no vector: not pending
    in_review: int  # in review, with or without an older vector
    counted: bool = False  # `documents` was counted: the source had no statistics (COUNT_BELOW)

    @property
    def pending(self) -> int:
        return max(0, self.documents - self.embedded - self.parked)


def never_analyzed(conn: psycopg.Connection[Any], queries: SourceSql) -> bool:
    with mapped_errors("reading the source's statistics"):
        row = conn.execute(queries.never_analyzed()).fetchone()
    return bool(row and row[0])


def count_documents(conn: psycopg.Connection[Any], queries: SourceSql) -> int:
    with mapped_errors("counting the source's documents"):
        row = conn.execute(queries.count_documents(), {}).fetchone()
    assert row is not None
    return int(row[0])


def estimate_documents(conn: psycopg.Connection[Any], queries: SourceSql) -> int:
    """The documents in scope whose text is not NULL, as the planner estimates them."""
    with mapped_errors("estimating the source's size"):
        # parameters, though none is used: the `where` fragment's `%` is doubled for them
        row = conn.execute(queries.estimate_documents(), {}).fetchone()
    assert row is not None
    plan: Any = row[0]
    return int(plan[0]["Plan"]["Plan Rows"])


def measure_backlog(conn: psycopg.Connection[Any], pair: Pair, *, made: bool) -> Backlog:
    """`made`: whether the pair's tables exist (App.is_made); a pair not made yet has nothing
    embedded, parked or in review, and its tables are not made by this read."""
    queries = pair.statements
    documents = estimate_documents(conn, queries)
    counted = documents < COUNT_BELOW and never_analyzed(conn, queries)
    if counted:
        documents = count_documents(conn, queries)
    embedded = parked = in_review = 0
    if made:
        with mapped_errors("counting the model's vectors"):
            row = conn.execute(model_figures(queries)).fetchone()
        assert row is not None
        embedded, parked, in_review = (int(v) for v in row)
    return Backlog(pair.model_name, documents, embedded, parked, in_review, counted)
