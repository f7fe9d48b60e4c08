"""Every statement that touches the user's table, built once per config with psycopg.sql.

The names, the prunes and the coverage figures are in store/source/source_sql.py (SourceSql for
the source alone, PairSql for a pair's tables).

The discovery query is an anti-join against the pair's records (embedkeeper.<pair>_documents) on
their primary key, walked in key order from a keyset cursor (`after`), so one batch reads only
the rows between the cursor and the next `limit` pending documents: its cost does not grow with the
table. Stale detection in that query uses `updated_at_column`; comparing content hashes reads and
hashes every text, so it is a separate sweep (`stale_by="hash"`).
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from embedkeeper.store import locks
from embedkeeper.store.source.source_sql import (
    TRUE,
    PairSql,
    Scope,
    StaleBy,
    content_hash,
    table_identifier,
)

__all__ = ["PairQueries", "Scope", "StaleBy", "content_hash", "table_identifier"]


@dataclass(frozen=True, slots=True)
class PairQueries(PairSql):
    """Every statement of one (source, model) pair: the claims and writes here, the rest in
    PairSql and SourceSql. Made once per pair, as Pair.statements (store/pair/pair.py)."""

    def claim(
        self, stale_by: StaleBy, *, after: bool, scope: Scope = "all", other_chunking: bool = True
    ) -> sql.Composed:
        """Pending documents after the cursor, each with a try of its session-level advisory lock.

        `scope` is where the pass looks: "all" walks the key index; "changed" walks the
        updated_at index from `since` (keyset on (updated_at, id)); "retries" walks the model's
        failures. The LIMIT sits in the inner query and the lock in the outer select list, so the
        lock is tried exactly once on each returned row; `locked` is false where a peer holds it.
        The caller moves its cursor past every row, locked or not.

        `other_chunking` False (the pass's start found no record of other chunking settings,
        and none can be written while its settings are the pair's): no record's chunking is
        compared, so where staleness reads nothing else of the record ("none") the walk is an
        anti-join on the records' key, not a read of every record (0.30 against 0.45 s at
        300,000 documents)."""
        stale = {
            "none": sql.SQL("FALSE"),
            "updated_at": sql.SQL("{u} > e.source_updated_at").format(u=self.updated_at),
            "hash": sql.SQL("e.content_hash <> {h}").format(h=content_hash(self.text)),
        }[stale_by]
        walk = {"all": self._walk_all, "changed": self._walk_changed, "retries": self._walk_retries}
        source, where, order = walk[scope](after)
        walk_order = "updated_at, id" if scope == "changed" else "id"
        return self._fmt(
            """
            SELECT c.id,
                   CASE WHEN c.chars > %(prefix_chars)s THEN left(c.body, %(prefix_chars)s)
                        ELSE c.body END,
                   c.chars > %(prefix_chars)s,
                   {body_hash}, c.updated_at,
                   pg_try_advisory_lock({claim_key}),
                   c.failure_class IS NOT DISTINCT FROM 'Crashed'
            FROM (
              SELECT w.*,
                     sum(least(w.chars, %(prefix_chars)s)) OVER (ORDER BY {walk_order})
                       - least(w.chars, %(prefix_chars)s) AS before
              FROM (
                -- The text's characters counted once (UTF-8 is counted character by
                -- character): what is read of it, whether it is cut, what the claim holds.
                SELECT {id} AS id, {text}::text AS body, {updated_at} AS updated_at,
                       f.error_class AS failure_class, length({text}::text) AS chars
                FROM {source}
                WHERE {where} AND NOT {blank}
                  AND (e.document_id IS NULL OR {stale}{other_chunking})
                  AND (f.document_id IS NULL
                       OR f.content_hash IS DISTINCT FROM {text_hash}
                       OR (f.status = 'retry' AND (%(ignore_delay)s OR f.next_retry_at <= now())))
                ORDER BY {order}
                LIMIT %(limit)s
              ) AS w
            ) AS c
            WHERE c.before < %(claim_chars)s
            ORDER BY {outer_order}
            """,
            stale=stale,
            other_chunking=self.other_chunking("e") if other_chunking else sql.SQL(""),
            walk_order=sql.SQL(walk_order),
            source=source,
            where=where,
            order=order,
            outer_order=sql.SQL("c.updated_at, c.id" if scope == "changed" else "c.id"),
            body_hash=content_hash(sql.SQL("c.body")),
            claim_key=sql.SQL(locks.key_sql("%(claim_space)s", "c.id::text")),
        )

    def _joined(
        self,
        after: sql.Composable = TRUE,
        f_after: sql.Composable | None = None,
        failures_first: bool = False,
    ) -> sql.Composable:
        e_join = sql.SQL("LEFT JOIN {embeddings} AS e ON e.document_id = {id} AND {a}").format(
            embeddings=self.vectors, id=self.id, a=after
        )
        if failures_first:
            return sql.SQL("{f} AS f JOIN {table} AS s ON {id} = f.document_id {e}").format(
                f=self.failures,
                table=self.documents,
                id=self.id,
                e=self._probe(self.vectors, "e"),
            )
        return sql.SQL(
            "{table} AS s {e} LEFT JOIN {f} AS f ON f.document_id = {id} AND {fa}"
        ).format(
            table=self.documents,
            e=e_join,
            f=self.failures,
            id=self.id,
            fa=f_after or after,
        )

    def _probed(self) -> sql.Composable:
        return sql.SQL("{table} AS s {e} {f}").format(
            table=self.documents,
            e=self._probe(self.vectors, "e"),
            f=self._probe(self.failures, "f"),
        )

    def _probe(self, table: sql.Composable, alias: str) -> sql.Composable:
        """A primary-key lookup per source row. `LIMIT 1` (the key is unique) keeps PostgreSQL
        from flattening it into a join it may plan as a scan of the whole table: right after a
        large backfill, before autovacuum has analyzed, it believes the table is small."""
        return sql.SQL(
            "LEFT JOIN LATERAL (SELECT * FROM {t} AS x WHERE "
            "x.document_id = {id} LIMIT 1) AS {a} ON TRUE"
        ).format(t=table, id=self.id, a=sql.Identifier(alias))

    def _walk_all(self, after: bool) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
        # Two forms rather than `(%s IS NULL OR id > %s)`, which would defeat the index range.
        # The cursor is repeated on the joined tables: PostgreSQL does not carry an inequality
        # across a join, and without it a merge join reads them from the start.
        source = self._joined(
            self._after(sql.Identifier("e", "document_id"), after),
            self._after(sql.Identifier("f", "document_id"), after),
        )
        return source, self._after(self.id, after), self.id

    def _walk_changed(self, after: bool) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
        """Rows whose updated_at is past `since`, by the updated_at index; the first condition
        on the cursor is the one an index on updated_at alone can use."""
        u = self.updated_at
        where = sql.SQL("{u} > %(since)s").format(u=u)
        if after:
            where = sql.SQL(
                "{w} AND {u} >= %(after_ts)s AND ({u}, {id}) > (%(after_ts)s, %(after)s)"
            ).format(w=where, u=u, id=self.id)
        return self._probed(), where, sql.SQL("{u}, {id}").format(u=u, id=self.id)

    def _walk_retries(self, after: bool) -> tuple[sql.Composable, sql.Composable, sql.Composable]:
        """The model's failed documents that are due (a short walk of the failures' key)."""
        where = sql.SQL("f.status = 'retry' AND {a}").format(
            a=self._after(sql.Identifier("f", "document_id"), after)
        )
        return self._joined(failures_first=True), where, sql.Identifier("f", "document_id")

    def _after(self, column: sql.Composable, after: bool) -> sql.Composable:
        return sql.SQL("{} > %(after)s").format(column) if after else TRUE

    def existing_vectors(self) -> sql.Composed:
        """Re-read after locking, in a fresh snapshot: a peer may have finished these meanwhile."""
        return self._fmt(
            """
            SELECT document_id, content_hash, source_updated_at, chunking FROM {embeddings}
            WHERE document_id = ANY(%(ids)s::{id_type}[])
            """,
        )

    def stored_vectors(self) -> sql.Composed:
        """The vectors the pair holds for these (document, passage) pairs, by their place in
        the arrays (1-based), where the document's record was made under `vectors` (the
        fingerprint's part after `;v=`: model, prefix, normalisation, window). A hash join on
        the key and the passage's text: a document's chunks are found by the chunks table's
        primary key, and no passage is hashed."""
        return self._fmt(
            """
            SELECT DISTINCT ON (w.i) w.i, c.embedding
            FROM unnest(%(ids)s::{id_type}[], %(passages)s::text[])
                 WITH ORDINALITY AS w(document_id, passage, i)
            JOIN {embeddings} AS e ON e.document_id = w.document_id
            JOIN {chunks} AS c ON c.document_id = w.document_id AND c.passage = w.passage
            WHERE split_part(e.chunking, ';v=', 2) = %(vectors)s
            ORDER BY w.i
            """,
            chunks=self.names.chunks,
        )

    def touch(self) -> sql.Composed:
        """updated_at moved but the text did not: record the new time, skip the model."""
        return self._fmt(
            """
            UPDATE {embeddings} AS e SET source_updated_at = x.updated_at
            FROM unnest(%(ids)s::{id_type}[], %(updated)s::timestamptz[]) AS x(id, updated_at)
            WHERE e.document_id = x.id
            """
        )

    def unlock(self) -> sql.Composed:
        return self._fmt(
            """
            SELECT count(*) FILTER (WHERE pg_advisory_unlock({claim_key}))
            FROM unnest(%(ids)s::{id_type}[]) AS x(id)
            """,
            claim_key=sql.SQL(locks.key_sql("%(claim_space)s", "x.id::text")),
        )

    def record_failures(self) -> sql.Composed:
        """Charge one attempt per document; a changed text starts its count again."""
        return self._fmt(
            """
            INSERT INTO {failures} AS f (document_id, attempts, error_class,
                message, content_hash, first_seen, last_seen, next_retry_at, status)
            SELECT x.id, 1, x.cls, x.msg, x.hash, now(), now(),
                   now() + make_interval(secs => %(backoff_s)s),
                   CASE WHEN %(max_attempts)s <= 1 THEN 'review' ELSE 'retry' END
            FROM unnest(%(ids)s::{id_type}[], %(classes)s::text[], %(messages)s::text[],
                        %(hashes)s::bytea[]) AS x(id, cls, msg, hash)
            ON CONFLICT (document_id) DO UPDATE SET
                attempts = {n}, error_class = excluded.error_class,
                message = excluded.message, content_hash = excluded.content_hash,
                last_seen = now(),
                status = CASE WHEN {n} >= %(max_attempts)s THEN 'review' ELSE 'retry' END,
                next_retry_at = now() + make_interval(secs => least(
                    %(backoff_s)s * 2 ^ ({n} - 1), %(backoff_max_s)s))
            """,
            n=sql.SQL(
                "(CASE WHEN f.content_hash IS DISTINCT FROM excluded.content_hash"
                " THEN 1 ELSE f.attempts + 1 END)"
            ),
        )

    def begin_inflight(self) -> sql.Composed:
        return self._fmt(
            """
            INSERT INTO embedkeeper.inflight (source, model, document_ids, backend_pid,
                backend_start)
            VALUES (%(source)s, %(model)s, %(ids)s::text[], %(pid)s, %(started)s)
            RETURNING id
            """
        )

    def recover_crashed(self) -> sql.Composed:
        """Take the in-flight batches whose session is gone, and return their documents that
        still need a vector, with their current hash and whether they died alone."""
        return self._fmt(
            """
            WITH dead AS (
                DELETE FROM embedkeeper.inflight AS i
                WHERE i.source = %(source)s AND i.model = %(model)s AND NOT EXISTS (
                    SELECT 1 FROM pg_stat_activity AS a
                    WHERE a.pid = i.backend_pid AND a.backend_start = i.backend_start)
                RETURNING i.document_ids
            ), ids AS (
                SELECT id, bool_or(solo) AS solo FROM (
                    SELECT unnest(document_ids) AS id, cardinality(document_ids) = 1 AS solo
                    FROM dead) AS each_id
                GROUP BY id
            )
            SELECT {id}, {text_hash}, ids.solo
            FROM ids JOIN {table} AS s ON {id} = ids.id::{id_type}
            LEFT JOIN {embeddings} AS e ON e.document_id = {id}
            WHERE {text} IS NOT NULL
              AND (e.document_id IS NULL OR e.content_hash <> {text_hash}{other_chunking})
            """,
            other_chunking=self.other_chunking("e"),
        )
