"""The view a user searches: a pair's current chunks joined to its source, the source's `where`
applied.

`embedkeeper.<source>__<model>` has one row per chunk (document_id, chunk, passage, char_start,
char_end, embedding) of the documents the source holds now, so a soft-deleted or filtered-out
document is never returned, even before the next pass prunes its chunks; and the typed
`embedding` column lets `ORDER BY embedding <=> $1 LIMIT 10` use the pair's HNSW index with no
cast; with `full_text` on the source, a `full_text` tsvector column for search by words. It
depends on the config's `where` and text, so `migrate` replaces it every time it runs.

Only the chunks of the text a document holds now are in it (current_chunks): a document edited
since it was embedded is left out until the next pass embeds it again, because its chunks'
char_start/char_end index the old text, and a reader slicing the current text with them would
get the wrong passage. Why leave them out rather than mark them (a `current` column): every
reader of the view would have to know to filter, and one who does not gets wrong offsets; the
gap lasts until the next pass (a scheduled tick, or `backfill`). The test costs one primary-key
read of the chunk's record and an md5 of its document's text per row read (bench search).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.pair.full_text import full_text_config
from embedkeeper.store.source.source_sql import PairSql, content_hash

CHUNK_DOCUMENT = sql.Identifier("c", "document_id")


def current_chunks(queries: PairSql, document_id: sql.Composable = CHUNK_DOCUMENT) -> sql.Composed:
    """The join and test that keep a pair's chunks (as `c`, joined to the source as `s`) of
    the source's current text only: their record (as `r`) holds the hash of the text the
    source holds now, the hash the write's fence compares. Starts a WHERE clause; `AND ...`
    may follow. Written `coalesce(a = b, FALSE)`: as a plain equality PostgreSQL takes it for
    a join clause it estimates to keep almost no row, and plans a sort of every chunk instead
    of the HNSW index scan (the coalesce is estimated to keep half).

    The hash reads the document's whole text. With an `updated_at_column`, a row whose
    updated_at is still the one its record was written at counts as current without it (the
    trust the change-driven pass gives that column), so the hash is computed only for rows
    edited since: a scan of the view without an index does not hash every document's text."""
    names = queries.names
    same_hash = sql.SQL("coalesce(r.content_hash = {}, FALSE)").format(content_hash(queries.text))
    if queries.source.updated_at_column:
        # OR is evaluated left to right: the hash only where updated_at moved
        same_hash = sql.SQL("(coalesce(r.source_updated_at = {}, FALSE) OR {})").format(
            queries.updated_at, same_hash
        )
    return sql.SQL(" JOIN {records} AS r ON r.document_id = {document_id} WHERE {current}").format(
        records=names.documents, document_id=document_id, current=same_hash
    )


def replace_view(conn: psycopg.Connection[Any], queries: PairSql) -> None:
    """Make or replace the pair's view; with the chunks' `full_text` column where they have one
    (last, as CREATE OR REPLACE VIEW may only add columns at the end)."""
    names = queries.names
    with_words = sql.SQL(", c.full_text") if full_text_config(conn, names) else sql.SQL("")
    statement = sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS"
        " SELECT c.document_id, c.chunk, c.passage, c.char_start, c.char_end, c.embedding{words}"
        " FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id{current}"
    ).format(
        view=names.view,
        words=with_words,
        chunks=names.chunks,
        documents=queries.documents,
        id=queries.id,
        current=current_chunks(queries),
    )
    with mapped_errors(f"creating the view {names.base}"):
        # parameters, though none is used: the `where` fragment's `%` is doubled for them
        conn.execute(statement, {})
