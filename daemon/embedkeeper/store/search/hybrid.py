"""Search by meaning and by words at once: the nearest chunks by vector and the chunks that hold
the question's words, merged by reciprocal rank fusion.

Why both: a sentence model finds what a passage means, even in other words, but not a line whose
only distinct content is a name or an identifier; full-text search finds exactly those, and
nothing said in other words. Why fuse ranks, not scores: a cosine distance and a `ts_rank_cd`
are on scales that cannot be added; RRF (Cormack, Clarke and Büttcher, SIGIR 2009) scores each
result 1 / (RRF_K + rank) in every list that holds it and needs no tuning. A result both lists
hold within their first 60 ranks (every candidate, for k up to 30) ranks above one that only
one holds. Documents are fused by their best chunk on each side; the row shown is the chunk of
the side that ranked the document higher.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from embedkeeper.store.search.nearest import EF_SEARCH, Hit, best_per_document, by_words, nearest
from embedkeeper.store.source.source_sql import PairSql

RRF_K = 60  # the paper's constant: the top few ranks of each list count, none dominates
MIN_CANDIDATES = 20  # results taken from each side, at least (twice k where that is more)


def hybrid_nearest(
    conn: psycopg.Connection[Any],
    queries: PairSql,
    query: npt.NDArray[np.float32],
    words: str,
    config: str,
    k: int,
    *,
    chunks: bool = False,
    ef_search: int = EF_SEARCH,
) -> list[Hit]:
    """The k documents (with `chunks`, the k chunks) ranked by meaning and words together.
    `config` is the text search configuration the pair's full-text column was made with."""
    candidates = max(2 * k, MIN_CANDIDATES)
    by_vector = nearest(conn, queries, query, candidates, chunks=chunks, ef_search=ef_search)
    if chunks:
        found = by_words(conn, queries, query, words, config, candidates)
    else:
        # A document's chunks may fill the list: read more, keep each document's best.
        found = best_per_document(by_words(conn, queries, query, words, config, candidates * 4))
    return fuse([by_vector, found[:candidates]], k, by_chunk=chunks)


def fuse(lists: Sequence[Sequence[Hit]], k: int, *, by_chunk: bool) -> list[Hit]:
    """The k best by reciprocal rank fusion of `lists`, each best first; a result is a document
    (or with `by_chunk` a chunk), carries every list that found it in `found_by` and its fused
    score in `score` (what the results are ordered by)."""
    scores: dict[Hashable, float] = {}
    shown: dict[Hashable, tuple[int, Hit]] = {}  # the best rank a result had, and its row there
    found_by: dict[Hashable, tuple[str, ...]] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            key = (hit.document_id, hit.chunk) if by_chunk else hit.document_id
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            found_by[key] = found_by.get(key, ()) + hit.found_by
            if key not in shown or rank < shown[key][0]:
                shown[key] = (rank, hit)
    # Equal scores (one list each, same rank): the nearer by cosine first, so the order is fixed.
    order = sorted(scores, key=lambda key: (-scores[key], shown[key][1].distance))
    return [replace(shown[key][1], found_by=found_by[key], score=scores[key]) for key in order[:k]]
