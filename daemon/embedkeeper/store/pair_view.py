"""The view a user searches: a pair's chunks joined to its source, the source's `where` applied.

`embedkeeper.<source>__<model>` has one row per chunk (document_id, chunk, passage, char_start,
char_end, embedding) of the documents the source holds now, so a soft-deleted or filtered-out
document is never returned, even before the next pass prunes its chunks; and the typed
`embedding` column lets `ORDER BY embedding <=> $1 LIMIT 10` use the pair's HNSW index with no
cast; with `full_text` on the source, a `full_text` tsvector column for search by words. It
depends on the config's `where` and text, so `migrate` replaces it every time it runs.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.full_text import full_text_config
from embedkeeper.store.source_sql import SourceSql


def replace_view(conn: psycopg.Connection[Any], queries: SourceSql) -> None:
    """Make or replace the pair's view; with the chunks' `full_text` column where they have one
    (last, as CREATE OR REPLACE VIEW may only add columns at the end)."""
    names = queries.names
    assert names is not None, "a view is a pair's"
    with_words = sql.SQL(", c.full_text") if full_text_config(conn, names) else sql.SQL("")
    statement = sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS"
        " SELECT c.document_id, c.chunk, c.passage, c.char_start, c.char_end, c.embedding{words}"
        " FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id"
    ).format(
        view=names.view,
        words=with_words,
        chunks=names.chunks,
        documents=queries.documents,
        id=queries.id,
    )
    with mapped_errors(f"creating the view {names.base}"):
        # parameters, though none is used: the `where` fragment's `%` is doubled for them
        conn.execute(statement, {})
