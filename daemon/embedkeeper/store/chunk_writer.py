"""Writes for a (source, model) pair: a document's record and all its chunks, replaced at once.

A batch is staged by binary COPY into two session temp tables (the chunks as one block,
store/chunk_copy.py), then one transaction runs three
statements: the records of the staged documents whose current text still hashes to what was
embedded are upserted (the fence, a primary-key probe of the source per document, as in
store/writer.py), returning their ids; those documents' old chunks are deleted; their staged
chunks are inserted. A reader in another session sees a document's old chunks or its new ones,
never a mix (PostgreSQL makes the transaction's writes visible together), and a document edited
while its batch was embedded gets nothing from this batch: its old record, now stale, and its old
chunks stay until the pass embeds the new text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.records import ChunkedEmbedding, DocumentId
from embedkeeper.store.chunk_copy import chunks_block
from embedkeeper.store.pair_tables import PairNames
from embedkeeper.store.source_sql import SourceSql, content_hash


class ChunkWriter:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        source: SourceSql,
        names: PairNames,
    ) -> None:
        self.conn = conn
        self.source = source
        self.names = names
        # Staging tables per key type: a session may serve several pairs. Vectors are staged as
        # `vector` whatever the pair stores; PostgreSQL casts them to halfvec on insert.
        suffix = source.id_type
        self._staged_documents = sql.Identifier("pg_temp", f"embedkeeper_staged_documents_{suffix}")
        self._staged_chunks = sql.Identifier("pg_temp", f"embedkeeper_staged_chunks_{suffix}")
        self._staging = False  # made on first use: a pass that finds nothing does not pay for it

    def replace(self, embedded: Sequence[ChunkedEmbedding]) -> list[DocumentId]:
        """Write these documents whole; returns the ids written (the others changed meanwhile
        or left the source)."""
        if not embedded:
            return []
        if not self._staging:
            self._create_staging()
            self._staging = True
        with self.conn.transaction():
            self._stage(embedded)
            written = [row[0] for row in self.conn.execute(self._upsert_records()).fetchall()]
            if written:
                params = {"ids": written}
                self.conn.execute(self._delete_chunks(), params)
                self.conn.execute(self._insert_chunks(), params)
        return written

    def _create_staging(self) -> None:
        id_type = sql.SQL(self.source.id_type)
        self.conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (document_id {} PRIMARY KEY,"
                " content_hash bytea, chunking text, chunk_count integer, token_count integer,"
                " truncated boolean, source_updated_at timestamptz) ON COMMIT DELETE ROWS"
            ).format(self._staged_documents, id_type)
        )
        self.conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (document_id {}, chunk integer,"
                " char_start integer, char_end integer, passage text, embedding {})"
                " ON COMMIT DELETE ROWS"
            ).format(self._staged_chunks, id_type, sql.SQL("vector"))
        )

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
        with self.conn.cursor().copy(
            sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self._staged_chunks)
        ) as copy:
            block = chunks_block(embedded, id_type, self.conn.info.encoding)
            if block is not None:
                copy.write(block)
                return
            copy.set_types([id_type, "int4", "int4", "int4", "text", "vector"])
            for e in embedded:
                for c in e.chunks:
                    copy.write_row((e.document.id, c.seq, c.start, c.end, c.text, c.vector))

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
                RETURNING document_id
            ), cleared AS (
                DELETE FROM {failures} AS f USING written AS w WHERE f.document_id = w.document_id
            )
            SELECT document_id FROM written
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

    def _insert_chunks(self) -> sql.Composed:
        return sql.SQL(
            """
            INSERT INTO {chunks} (document_id, chunk, char_start, char_end, passage, embedding)
            SELECT st.document_id, st.chunk, st.char_start, st.char_end, st.passage, st.embedding
            FROM {staged} AS st JOIN unnest(%(ids)s::{id_type}[]) AS x(id) ON st.document_id = x.id
            ORDER BY st.document_id, st.chunk
            """
        ).format(
            chunks=self.names.chunks,
            staged=self._staged_chunks,
            id_type=sql.SQL(self.source.id_type),
        )
