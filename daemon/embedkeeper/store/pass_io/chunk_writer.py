"""Writes for a (source, model) pair: a document's record and all its chunks, replaced at once.

One transaction: the batch's records are staged by binary COPY into a session temp table; the
records of the staged documents whose current text still hashes to what was embedded, and
whose chunking is the pair's recorded settings, are upserted (the fences: a primary-key probe
of the source per document, and the pair's row of embedkeeper.pairs held FOR SHARE in the same
statement, so a `migrate` adopting other settings waits for the write), returning their ids;
where fewer come back than were staged, store/pair/tables.py fence_chunking says whether the
batch's settings are not the pair's and raises ChunkingMismatch (the transaction rolls back:
nothing of the batch is written); those documents' old chunks are deleted; their new chunks are
copied straight into the chunks table (one block of binary COPY, store/pass_io/chunk_copy.py: no
staging of the chunks, which are most of the bytes). A reader in another session sees a
document's old chunks or its new ones, never a mix (PostgreSQL makes the transaction's writes
visible together), and a document edited while its batch was embedded gets nothing from this
batch: its old record, now stale, and its old chunks stay until the pass embeds the new text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from pgvector import HalfVector
from psycopg import sql

from embedkeeper.records import ChunkedEmbedding, DocumentId
from embedkeeper.store.pair.pair import Pair
from embedkeeper.store.pair.tables import fence_chunking, vector_column_type
from embedkeeper.store.pass_io.chunk_copy import chunks_block
from embedkeeper.store.source.source_sql import content_hash


class ChunkWriter:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pair: Pair,
    ) -> None:
        self.conn = conn
        self.source = pair.statements
        self.names = pair.names
        # A staging table per key type: a session may serve several pairs.
        suffix = pair.key_type
        self._staged_documents = sql.Identifier("pg_temp", f"embedkeeper_staged_documents_{suffix}")
        # The pair's vector type, read with the staging table made on first use (a pass that
        # finds nothing does not pay for them).
        self._storage: str | None = None
        self._settings_recorded = False  # a write committed: the pair records its settings

    def replace(self, embedded: Sequence[ChunkedEmbedding]) -> list[DocumentId]:
        """Write these documents whole; returns the ids written (the others changed meanwhile
        or left the source)."""
        if not embedded:
            return []
        if self._storage is None:
            self._storage = self._prepare()
        with self.conn.transaction():
            settings = {e.chunking for e in embedded}
            if not self._settings_recorded:  # the first write: the pair may record ours
                fence_chunking(self.conn, self.names, settings, record_if_none=True)
            self._stage(embedded)
            # The record's upsert holds the pair's settings FOR SHARE and writes only rows of
            # those (the fence in the statement: no round trip of its own on every write).
            params = {"pair_source": self.names.source, "pair_model": self.names.model}
            rows = self.conn.execute(self._upsert_records(), params).fetchall()
            written = [r[0] for r in rows]
            if len(written) < len(embedded):
                # Texts that changed, or a batch of other settings: the fence says which, and
                # raises (nothing of the batch is then written: the transaction rolls back).
                fence_chunking(self.conn, self.names, settings, record_if_none=False)
            # Only a replaced record can have chunks (the chunks' foreign key): a document
            # embedded the first time has none to delete (a first backfill deletes nothing).
            replaced = [r[0] for r in rows if r[1]]
            if replaced:
                self.conn.execute(self._delete_chunks(), {"ids": replaced})
            if written:
                kept = set(written)
                self._copy_chunks([e for e in embedded if e.document.id in kept], self._storage)
        self._settings_recorded = True
        return written

    def _prepare(self) -> str:
        """The documents' staging table, and how the pair stores its vectors (vector or
        halfvec: the chunks' COPY sends that type's binary format)."""
        self.conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (document_id {} PRIMARY KEY,"
                " content_hash bytea, chunking text, chunk_count integer, token_count integer,"
                " truncated boolean, source_updated_at timestamptz) ON COMMIT DELETE ROWS"
            ).format(self._staged_documents, sql.SQL(self.source.id_type))
        )
        column = vector_column_type(self.conn, self.names) or "vector"
        return column.split("(")[0]  # halfvec(384) -> halfvec

    def _stage(self, embedded: Sequence[ChunkedEmbedding]) -> None:
        id_type = self.source.id_type
        with self.conn.cursor().copy(
            sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self._staged_documents)
        ) as copy:
            copy.set_types([id_type, "bytea", "text", "int4", "int4", "bool", "timestamptz"])
            for e in embedded:
                d = e.document
                copy.write_row(
                    (
                        d.id,
                        d.content_hash,
                        e.chunking,
                        len(e.chunks),
                        e.token_count,
                        e.truncated,
                        d.updated_at,
                    )
                )

    def _copy_chunks(self, embedded: Sequence[ChunkedEmbedding], storage: str) -> None:
        """The written documents' chunks, straight into the pair's chunks table: one block of
        binary COPY (store/pass_io/chunk_copy.py), or row by row where the block cannot be built."""
        id_type = self.source.id_type
        statement = sql.SQL(
            "COPY {} (document_id, chunk, char_start, char_end, passage, embedding)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(self.names.chunks)
        with self.conn.cursor().copy(statement) as copy:
            block = chunks_block(embedded, id_type, storage, self.conn.info.encoding)
            if block is not None:
                copy.write(block)
                return
            copy.set_types([id_type, "int4", "int4", "int4", "text", storage])
            wrap: Any = HalfVector if storage == "halfvec" else (lambda v: v)
            for e in embedded:
                for c in e.chunks:
                    copy.write_row((e.document.id, c.seq, c.start, c.end, c.text, wrap(c.vector)))

    def _upsert_records(self) -> sql.Composed:
        """The fence and the record: only documents whose text is still the one embedded."""
        s = self.source
        return sql.SQL(
            """
            WITH fresh AS (
                SELECT st.* FROM {staged} AS st
                CROSS JOIN LATERAL (
                    SELECT {text}::text AS body FROM {table} AS s
                    WHERE {id} = st.document_id LIMIT 1) AS cur
                WHERE cur.body IS NOT NULL AND {body_hash} = st.content_hash
                  AND st.chunking IS NOT DISTINCT FROM (
                      SELECT p.chunking FROM embedkeeper.pairs AS p
                      WHERE p.source = %(pair_source)s AND p.model = %(pair_model)s FOR SHARE)
            ), written AS (
                INSERT INTO {records} AS r (document_id, content_hash, chunking, chunk_count,
                    token_count, truncated, source_updated_at, embedded_at)
                SELECT document_id, content_hash, chunking, chunk_count, token_count, truncated,
                       source_updated_at, now()
                FROM fresh ORDER BY document_id
                ON CONFLICT (document_id) DO UPDATE SET
                    content_hash = excluded.content_hash, chunking = excluded.chunking,
                    chunk_count = excluded.chunk_count, token_count = excluded.token_count,
                    truncated = excluded.truncated,
                    source_updated_at = excluded.source_updated_at,
                    embedded_at = excluded.embedded_at
                RETURNING document_id, xmax <> 0 AS replaced
            ), cleared AS (
                DELETE FROM {failures} AS f USING written AS w WHERE f.document_id = w.document_id
            )
            SELECT document_id, replaced FROM written
            """
        ).format(
            staged=self._staged_documents,
            text=s.text,
            table=s.documents,
            id=s.id,
            body_hash=content_hash(sql.SQL("cur.body")),
            records=self.names.documents,
            failures=self.names.failures,
        )

    def _delete_chunks(self) -> sql.Composed:
        return sql.SQL(
            "DELETE FROM {chunks} AS c WHERE c.document_id = ANY(%(ids)s::{id_type}[])"
        ).format(chunks=self.names.chunks, id_type=sql.SQL(self.source.id_type))
