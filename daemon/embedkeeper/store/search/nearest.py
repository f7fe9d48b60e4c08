"""The nearest documents (or chunks) to a query vector, and the chunks that hold a question's
words, with the source's `where` applied and only chunks of the text the source holds now.

The vector statement reads the pair's chunks ordered by the operator of the pair's own vector
index (`<=>` for cosine, `<->` for L2, `<#>` for inner product, read from the catalog once per
search), so the index serves it whichever opclass `index create` or the v0.1 upgrade gave it;
the distance reported is the cosine distance all the same. It is read through one server-side
cursor, page by page, until k documents are found: one walk of the index, never a second scan
with a larger limit. pgvector 0.8's iterative scan keeps walking the graph while the join
filters rows out, so a filter does not starve the result; its relaxed order is why the rows
read are sorted here before each document's best is taken.

A chunk is served only while its document's record holds the hash of the current text, as
the pair's view serves them (store/pair/view.current_chunks says why and how): a document
edited since it was embedded is left out until the next pass embeds it again. With a vector
index the test sits under the ranking's LIMIT (the index scan feeds it row by row, and the
iterative scan walks on past what it leaves out); without one, over the rows the sort yields
(_prepare_nearest). At 200,000 chunks its p50 is 0.59 x (documents) and 1.02 x (chunks)
2539447's, which served stale chunks (`python -m bench search_before`; BENCHMARKS.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from embedkeeper.records import DocumentId
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.tables import PairNames
from embedkeeper.store.pair.view import current_chunks
from embedkeeper.store.source.source_sql import PairSql

PASSAGE_CHARS = 1000  # of a chunk's passage, returned with each hit
MAX_EF_SEARCH = 1000  # pgvector's bound for hnsw.ef_search
# The HNSW scan's candidate list by default. pgvector's own default, 40, found 86 % of the true
# ten nearest among 200,000 MiniLM chunks; 200 found 97 % at 8 ms (BENCHMARKS.md, bench search).
EF_SEARCH = 200
MAX_CHUNKS_READ = 20_000  # chunks read to find k documents' best ones, at most
# The share of the cursor's rows the planner should expect us to read: we stop after a few
# pages, so a plan that starts fast (the index scan) beats one that sorts every chunk first.
CURSOR_TUPLE_FRACTION = 0.01
CURSOR = "embedkeeper_nearest"

VECTOR = "vector"  # found by the HNSW (or exact) scan of the query's vector
FULL_TEXT = "full_text"  # found by the pair's full-text column holding the question's words
COSINE = "<=>"
NOTHING = sql.SQL("")
# pgvector's operator classes, by the suffix their name ends with, and the operator each serves.
OPERATORS = {"_cosine_ops": COSINE, "_l2_ops": "<->", "_ip_ops": "<#>", "_l1_ops": "<+>"}
# websearch_to_tsquery's own syntax: a quoted phrase, or a word excluded with a leading minus.
EXPLICIT_SYNTAX = re.compile(r'"|(?:^|\s)-\w')
# The chunks the words' side ranks with the chunk before each (by_words): those its own words
# rank first, and the chunk after each. 200 gave the same lists as every match on 43 of 45
# typed questions (400 on all), at a few milliseconds over the search by own words alone.
WINDOW_CANDIDATES = 200


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: DocumentId
    chunk: int
    distance: float  # cosine distance of the chunk to the question, however it was found
    text: str
    found_by: tuple[str, ...] = (VECTOR,)
    # What the results are ordered by, higher first: the cosine similarity (1 - distance) of a
    # vector search; the reciprocal rank fusion score of a search by vector and words.
    score: float = 0.0


# A search's settings, in one statement (see _search_settings), and the opclass of the pair's
# vector index (%s: its chunks table), or NULL without one.
SEARCH_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true),"
    " set_config('cursor_tuple_fraction', %s, true),"
    " CASE WHEN string_to_array(v.extversion, '.')::int[] >= '{0,8}' THEN"
    " set_config('hnsw.iterative_scan', 'relaxed_order', true)"
    " || set_config('ivfflat.iterative_scan', 'relaxed_order', true) END,"
    " (SELECT o.opcname FROM pg_index i"
    " JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am a ON a.oid = x.relam"
    " JOIN pg_opclass o ON o.oid = i.indclass[0]"
    " JOIN pg_attribute t ON t.attrelid = i.indrelid AND t.attnum = i.indkey[0]"
    " WHERE i.indrelid = to_regclass(%s) AND a.amname IN ('hnsw', 'ivfflat')"
    " AND i.indisvalid AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL"
    " AND t.attname = 'embedding'"
    " ORDER BY o.opcname NOT LIKE '%%\\_cosine\\_ops', x.relname LIMIT 1)"
    " FROM pg_extension AS v WHERE v.extname = 'vector'"
)


def operator_of(opclass: str | None) -> str:
    """The distance operator a vector index of `opclass` serves: `<=>` without one (an exact
    scan, by cosine), and the cosine one where there are several."""
    if opclass is None:
        return COSINE
    return next((op for end, op in OPERATORS.items() if opclass.endswith(end)), COSINE)


def nearest(
    conn: psycopg.Connection[Any],
    queries: PairSql,
    query: npt.NDArray[np.float32],
    k: int,
    *,
    chunks: bool = False,
    ef_search: int = EF_SEARCH,
) -> list[Hit]:
    """The k documents nearest to `query`, nearest first, each by its best chunk; with
    `chunks`, the k nearest chunks. One walk of the pair's index through a cursor: pages are
    read until k documents are found (or MAX_CHUNKS_READ chunks). `ef_search`: the HNSW scan's
    candidate list (at least k); more finds more of the true nearest, and costs time."""
    page = max(4 * k, 40)
    rows: list[tuple[Any, ...]] = []
    with mapped_errors("searching"), conn.transaction():
        statement, current_inside = _prepare_nearest(conn, queries, ef_search, k)
        if chunks:  # one statement, no cursor
            limit = _chunks_read(k, current_inside)
            rows = conn.execute(statement, _nearest_params(query, limit)).fetchall()
        else:
            # DECLARE and FETCH by hand: the cursor ends with the transaction, no CLOSE sent
            conn.execute(_declared(statement), _nearest_params(query, MAX_CHUNKS_READ))
            fetch = sql.SQL("FETCH FORWARD {} FROM {}").format(
                sql.Literal(page), sql.Identifier(CURSOR)
            )
            while True:
                fetched = conn.execute(fetch).fetchall()
                rows += fetched
                if len(fetched) < page or len(rows) >= MAX_CHUNKS_READ:
                    break
                if len({row[0] for row in rows}) >= k:
                    break
    rows.sort(key=lambda row: float(row[4]))  # the iterative scan's order is relaxed
    hits = _hits(rows, (VECTOR,))
    return hits[:k] if chunks else best_per_document(hits)[:k]


def explain_nearest(
    conn: psycopg.Connection[Any],
    queries: PairSql,
    query: npt.NDArray[np.float32],
    k: int,
    *,
    chunks: bool = False,
    ef_search: int = EF_SEARCH,
) -> str:
    """The plan PostgreSQL makes for nearest's statement (its cursor's, for documents), with
    the settings nearest runs it under: what to check that the pair's index serves it."""
    with mapped_errors("explaining a search"), conn.transaction():
        statement, current_inside = _prepare_nearest(conn, queries, ef_search, k)
        explained = statement if chunks else _declared(statement)
        params = _nearest_params(
            query, _chunks_read(k, current_inside) if chunks else MAX_CHUNKS_READ
        )
        rows = conn.execute(sql.SQL("EXPLAIN ") + explained, params).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def by_words(
    conn: psycopg.Connection[Any],
    queries: PairSql,
    query: npt.NDArray[np.float32],
    words: str,
    config: str,
    limit: int,
) -> list[Hit]:
    """The `limit` chunks that hold the question's words, through the pair's GIN index on its
    full-text column (store/pair/full_text.py), the source's `where` applied. Each carries its
    cosine distance to `query`, so a row reads the same whichever way it came.

    A question as people type it ("How can I find out the size of the terminal window?") is
    rarely matched by a passage holding every one of its words, so the chunks holding every
    word come first (by ts_rank_cd), then those holding any of them (by ts_rank, which counts
    how many of the words a passage holds). On 25 such questions over 130 Debian READMEs and
    Python module pages, the words alone found the answering document in their first 5 for 6
    questions with every word, 21 with every-then-any. A question in websearch_to_tsquery's
    own syntax ("a phrase", -word) is taken as written: only the chunks that match it.

    A chunk is ranked with the words of the chunk before it as well: a content-defined
    chunk often starts at the answer, while the words that say what it answers (a FAQ's
    question, a changelog entry's package and version, a section's heading) end the chunk
    before. A chunk must still hold one of the words itself (the GIN index finds those). The
    pair is ranked only for the WINDOW_CANDIDATES chunks its own words rank first and the
    chunk after each: ranking every match by its pair cost 2.5 to 3.3 x the words' search,
    this costs what it did plus a few milliseconds (bench questions: the same lists)."""
    statement, params = words_statement(queries, query, words, config, limit)
    with mapped_errors("searching by words"):
        rows = conn.execute(statement, params).fetchall()
    return _hits(rows, (FULL_TEXT,))


def words_statement(
    queries: PairSql,
    query: npt.NDArray[np.float32],
    words: str,
    config: str,
    limit: int,
) -> tuple[sql.Composed, dict[str, Any]]:
    """by_words' statement and parameters. The "any word" query is an OR of the lexemes the
    configuration makes of the question, built in SQL (each quoted as tsquery input wants), so
    no user text is ever formatted into the statement; a subquery, so the planner takes it as
    one value and the GIN index serves it."""
    every = sql.SQL("websearch_to_tsquery(%(config)s::regconfig, %(words)s)")
    window = sql.SQL("(coalesce(w.full_text, ''::tsvector) || c.full_text)")
    if EXPLICIT_SYNTAX.search(words):
        any_word = every
    else:
        any_word = sql.SQL(
            "(SELECT string_agg('''' || replace(replace(x, '\\', '\\\\'), '''', '''''')"
            " || '''', ' | ')"
            " FROM unnest(tsvector_to_array(to_tsvector(%(config)s::regconfig, %(words)s))) AS x"
            ")::tsquery"
        )

    def rank(text: sql.Composable) -> tuple[sql.Composable, sql.Composable]:
        """Every word first, closest together first (ts_rank_cd); then how many of them."""
        holds_every = sql.SQL("{} @@ {}").format(text, every)
        return holds_every, sql.SQL(
            "CASE WHEN {} THEN ts_rank_cd({}, {}) ELSE ts_rank({}, {}) END"
        ).format(holds_every, text, every, text, any_word)

    ranks = sql.SQL(", {} AS every_word, {} AS words_rank").format(*rank(window))
    own_every, own_rank = rank(sql.SQL("c.full_text"))
    joins = sql.SQL(
        " JOIN (SELECT DISTINCT x.document_id, x.chunk + g.step AS chunk FROM"
        " (SELECT c.document_id, c.chunk FROM {chunks} AS c"
        " JOIN {documents} AS s ON {id} = c.document_id WHERE c.full_text @@ {any}"
        " ORDER BY {own_every} DESC, {own_rank} DESC, c.document_id, c.chunk"
        " LIMIT %(candidates)s) AS x CROSS JOIN (VALUES (0), (1)) AS g(step))"
        " AS k ON k.document_id = c.document_id AND k.chunk = c.chunk"
        " LEFT JOIN {chunks} AS w ON w.document_id = c.document_id AND w.chunk = c.chunk - 1"
    ).format(
        chunks=queries.names.chunks,
        documents=queries.documents,
        id=queries.id,
        any=any_word,
        own_every=own_every,
        own_rank=own_rank,
    )
    rest = sql.SQL(
        " WHERE c.full_text @@ {any}"
        " ORDER BY every_word DESC, words_rank DESC, c.document_id, c.chunk LIMIT %(limit)s"
    ).format(any=any_word)
    order = sql.SQL(" ORDER BY n.every_word DESC, n.words_rank DESC, n.document_id, n.chunk")
    params = {
        "q": query,
        "words": words,
        "config": config,
        "limit": limit,
        "chars": PASSAGE_CHARS,
        "candidates": max(WINDOW_CANDIDATES, limit),
    }
    return _chunks_statement(queries, COSINE, rest, ranks, order, joins=joins), params


def best_per_document(hits: Sequence[Hit]) -> list[Hit]:
    """Each document's first hit, in the order given (its best, when the hits are best first)."""
    best: dict[DocumentId, Hit] = {}
    for hit in hits:
        best.setdefault(hit.document_id, hit)
    return list(best.values())


def _prepare_nearest(
    conn: psycopg.Connection[Any], queries: PairSql, ef_search: int, k: int
) -> tuple[sql.Composed, bool]:
    """Settings for the search's transaction, and the statement in the index's order; True
    where it leaves out the chunks of a changed text inside the ranking (under its LIMIT).

    With a vector index, the index scan yields rows one at a time to the join that tests them,
    so the test costs only the rows read, and the scan (iterative in pgvector 0.8) goes on past
    those it leaves out: a LIMIT of k gives k current chunks, and the source is read once a
    row. Without one, the ranking is a sort of every chunk, so the test is applied to the rows
    that come out of it (_chunks_statement) rather than to every chunk sorted."""
    opclass = _search_settings(conn, max(ef_search, k), queries.names)
    operator = operator_of(opclass)
    ranked = sql.SQL(" ORDER BY rank_distance LIMIT %(limit)s")
    if opclass is None:
        return _chunks_statement(queries, operator, ranked), False
    return _ranked_chunks(queries, operator, current_chunks(queries)) + ranked, True


def _chunks_read(k: int, current_inside: bool) -> int:
    """The rows a search for the k nearest chunks reads: k where the ranking leaves stale
    chunks out under its LIMIT, else 2k (the stale ones are left out after it)."""
    return k if current_inside else 2 * k


def _declared(statement: sql.Composable) -> sql.Composed:
    return sql.SQL("DECLARE {} CURSOR FOR ").format(sql.Identifier(CURSOR)) + statement


def _nearest_params(query: npt.NDArray[np.float32], limit: int) -> dict[str, Any]:
    return {"q": query, "limit": limit, "chars": PASSAGE_CHARS}


def _chunks_statement(
    queries: PairSql,
    operator: str,
    rest: sql.Composable,
    extra: sql.Composable = NOTHING,
    order: sql.Composable = NOTHING,
    *,
    joins: sql.Composable = NOTHING,
) -> sql.Composed:
    """The pair's chunks joined to the source (its `where` applied), each with its cosine
    distance to %(q)s, its passage's start and its distance by `operator` (the index's: ORDER
    BY it, the index serves it), ranked and limited by `rest` (our own SQL); then, of the rows
    that come out, those of the current text only (store/pair_view.current_chunks). The test is
    applied outside the ranking on purpose: it hashes the document's whole text, so only the
    rows read (a page of the cursor, the limit) pay for it, never every chunk an exact scan
    sorts (190 ms a search at 4,000 chunks of long documents when it sat inside). `joins`: our
    own join of the chunks to others, that `extra` and `rest` may read."""
    ranked = _ranked_chunks(queries, operator, joins, extra)
    return sql.SQL(
        "SELECT n.document_id, n.chunk, n.distance, n.passage, n.rank_distance"
        " FROM ({ranked}{rest}) AS n JOIN {documents} AS s ON {id} = n.document_id{current}{order}"
    ).format(
        ranked=ranked,
        rest=rest,
        documents=queries.documents,
        id=queries.id,
        current=current_chunks(queries, sql.Identifier("n", "document_id")),
        order=order,
    )


def _ranked_chunks(
    queries: PairSql, operator: str, where: sql.Composable, extra: sql.Composable = NOTHING
) -> sql.Composed:
    """The pair's chunks joined to the source (its `where` applied), each with its cosine
    distance to %(q)s, its passage's start and its distance by `operator`; `where`: our own
    join and filter (current_chunks), or nothing."""
    assert operator in OPERATORS.values()
    return sql.SQL(
        "SELECT c.document_id, c.chunk, c.embedding <=> %(q)s AS distance,"
        " left(c.passage, %(chars)s) AS passage, c.embedding {operator} %(q)s AS rank_distance"
        "{extra} FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id{where}"
    ).format(
        operator=sql.SQL(operator),
        extra=extra,
        chunks=queries.names.chunks,
        documents=queries.documents,
        id=queries.id,
        where=where,
    )


def _hits(rows: Sequence[tuple[Any, ...]], found_by: tuple[str, ...]) -> list[Hit]:
    return [
        Hit(r[0], int(r[1]), float(r[2]), r[3] or "", found_by, 1.0 - float(r[2])) for r in rows
    ]


def _search_settings(
    conn: psycopg.Connection[Any], ef_search: int, names: PairNames | None = None
) -> str | None:
    """In one round trip: the scan's candidate list; the HNSW (or IVFFlat) scan let go on past
    it when the join filters some rows out, where the installed pgvector has that (0.8 and
    later: an older one rejects the setting, so its version is read in the statement rather
    than the setting tried in a savepoint, two round trips more a search); the planner told
    that a cursor's first rows are what count (CURSOR_TUPLE_FRACTION); and with `names`, the
    opclass of the pair's vector index (None: none)."""
    row = conn.execute(
        SEARCH_SETTINGS,
        (
            str(min(max(1, ef_search), MAX_EF_SEARCH)),
            str(CURSOR_TUPLE_FRACTION),
            names.chunks.as_string(conn) if names is not None else None,
        ),
    ).fetchone()
    return None if row is None or row[3] is None else str(row[3])
