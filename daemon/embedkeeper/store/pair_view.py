"""The view a user searches: a pair's chunks joined to its source, the source's `where` applied.

`embedkeeper.<source>__<model>` has one row per chunk (document_id, chunk, passage, char_start,
char_end, embedding) of the documents the source holds now, so a soft-deleted or filtered-out
document is never returned, even before the next pass prunes its chunks; and the typed
`embedding` column lets `ORDER BY embedding <=> $1 LIMIT 10` use the pair's HNSW index with no
cast. It depends on the config's `where` and text, so `migrate` replaces it every time it runs.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.store.db import mapped_errors
from embedkeeper.store.source_sql import SourceSql


def replace_view(conn: psycopg.Connection[Any], queries: SourceSql) -> None:
    names = queries.names
    assert names is not None, "a view is a pair's"
    statement = sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS"
        " SELECT c.document_id, c.chunk, c.passage, c.char_start, c.char_end, c.embedding"
        " FROM {chunks} AS c JOIN {documents} AS s ON {id} = c.document_id"
    ).format(view=names.view, chunks=names.chunks, documents=queries.documents, id=queries.id)
    with mapped_errors(f"creating the view {names.base}"):
        # parameters, though none is used: the `where` fragment's `%` is doubled for them
        conn.execute(statement, {})
