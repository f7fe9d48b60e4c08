"""The source's names as SQL (SourceSql: the statements on the source alone), and a pair's
statements that read the source and its tables as a whole (PairSql: the prunes and the coverage
figures). store/source/queries.py adds the claim and write statements (PairQueries). Two types,
not one with Optional pair tables: mypy refuses the source's statements where a pair's are
meant.

Identifiers from config go through sql.Identifier; the `[source] where` filter, the one fragment
an operator writes, is inserted as trusted SQL in parentheses. Values are always parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psycopg import sql

from embedkeeper.config import SourceConfig
from embedkeeper.store.pair.tables import PairNames

StaleBy = Literal["none", "updated_at", "hash"]
Scope = Literal["all", "changed", "retries"]
TEXT_ALIAS = "embedkeeper_text"


def _trusted(fragment: str) -> sql.Composable:
    """Operator-written SQL, in parentheses where used; `%` doubled for the parameter parser."""
    return sql.SQL(fragment.replace("%", "%%"))


def content_hash(text: sql.Composable) -> sql.Composable:
    """A text's content hash, as embeddings.content_hash and failures.content_hash store it and
    the write's fence compares it: PostgreSQL's md5 of the whole text, as 16 bytes."""
    return sql.SQL("decode(md5(({})::text), 'hex')").format(text)


def table_identifier(source: SourceConfig) -> sql.Composable:
    """The source table's name, quoted (schema-qualified when the config gives a schema)."""
    if source.schema:
        return sql.Identifier(source.schema, source.table)
    return sql.Identifier(source.table)


TRUE = sql.SQL("TRUE")


@dataclass(frozen=True, slots=True)
class SourceSql:
    """One source's names and the statements on the source alone (the checks, the estimate,
    the delete log's prune walk); `id_type` is the source key's type family: bigint, text or
    uuid. PairSql adds a (source, model) pair's tables."""

    source: SourceConfig
    id_type: str

    @property
    def table(self) -> sql.Composable:
        return table_identifier(self.source)

    @property
    def id(self) -> sql.Composable:
        return sql.Identifier("s", self.source.id_column)

    @property
    def text(self) -> sql.Composable:
        if self.source.text_expression:
            return sql.Identifier("s", TEXT_ALIAS)
        return sql.Identifier("s", self.source.text_column)

    @property
    def updated_at(self) -> sql.Composable:
        column = self.source.updated_at_column
        return sql.Identifier("s", column) if column else sql.SQL("NULL::timestamptz")

    @property
    def documents(self) -> sql.Composable:
        """The source as a relation, with the operator's filter applied inside a subquery, where
        its column names can only mean the source's (PostgreSQL flattens it; indexes still
        apply). `%` is doubled because the statements also take parameters."""
        where = self.source.where
        if not where and not self.source.text_expression:
            return self.table
        return sql.SQL("(SELECT *{} FROM {} WHERE ({}))").format(
            self._computed, self.table, _trusted(where) if where else sql.SQL("TRUE")
        )

    @property
    def unfiltered(self) -> sql.Composable:
        """The source with its text, without the operator's filter."""
        if not self.source.text_expression:
            return self.table
        return sql.SQL("(SELECT *{} FROM {})").format(self._computed, self.table)

    @property
    def _computed(self) -> sql.Composable:
        """A text_expression, computed beside the source's columns under a name of our own."""
        expression = self.source.text_expression
        if not expression:
            return sql.SQL("")
        return sql.SQL(", ({}) AS {}").format(_trusted(expression), sql.Identifier(TEXT_ALIAS))

    @property
    def blank(self) -> sql.Composable:
        """NULL or only whitespace: skipped, never embedded, never failed."""
        return sql.SQL("({t} IS NULL OR {t} !~ '[^[:space:]]')").format(t=self.text)

    def _fmt(self, template: str, **extra: sql.Composable) -> sql.Composed:
        return sql.SQL(template).format(
            table=self.documents,
            id=self.id,
            text=self.text,
            updated_at=self.updated_at,
            blank=self.blank,
            text_hash=content_hash(self.text),
            id_type=sql.SQL(self.id_type),
            **extra,
        )

    def newest_update(self) -> sql.Composed:
        """The newest updated_at in the whole table (a backward step of its index)."""
        return self._fmt("SELECT max({updated_at}) FROM {raw} AS s", raw=self.table)

    def estimate_documents(self) -> sql.Composed:
        """The planner's estimate of the documents in scope with a text (EXPLAIN only: nothing
        is read but the catalog's statistics, the column's fraction of NULLs among them). It
        follows the table's growth between ANALYZEs: the planner scales reltuples by the table's
        current size."""
        return self._fmt(
            "EXPLAIN (FORMAT JSON) SELECT 1 FROM {table} AS s WHERE {text} IS NOT NULL"
        )

    def never_analyzed(self) -> sql.Composed:
        """Whether the source table has no statistics yet (reltuples -1: never analyzed)."""
        return sql.SQL("SELECT reltuples < 0 FROM pg_class WHERE oid = {}::regclass").format(
            sql.Literal(self.table.as_string(None))
        )

    def count_documents(self) -> sql.Composed:
        """The documents in scope whose text is not NULL, counted (a scan of the source)."""
        return self._fmt("SELECT count(*) FROM {table} AS s WHERE {text} IS NOT NULL")

    def count_with_blank(self) -> sql.Composed:
        """The documents in scope and how many of them are blank: the coverage of a pair whose
        tables are not made yet (everything embeddable is pending)."""
        return self._fmt("SELECT count(*), count(*) FILTER (WHERE {blank}) FROM {table} AS s")


@dataclass(frozen=True, slots=True)
class PairSql(SourceSql):
    """The statements of one (source, model) pair that read or write its own tables
    (store/pair/tables.py): its records (`vectors`: one per embedded document, carrying its
    text's hash and chunking fingerprint, `%(chunking)s`), its chunks and failures, which hold
    one model only. store/source/queries.py adds the claims and writes."""

    names: PairNames

    @property
    def vectors(self) -> sql.Composable:
        """The pair's records: one per embedded document."""
        return self.names.documents

    @property
    def failures(self) -> sql.Composable:
        return self.names.failures

    @staticmethod
    def other_chunking(alias: str) -> sql.Composable:
        """` OR <alias>.chunking <> %(chunking)s`: a record of other chunking settings is stale."""
        return sql.SQL(" OR {} IS DISTINCT FROM %(chunking)s").format(
            sql.Identifier(alias, "chunking")
        )

    def _fmt(self, template: str, **extra: sql.Composable) -> sql.Composed:
        return SourceSql._fmt(
            self, template, embeddings=self.vectors, failures=self.failures, **extra
        )

    def prune(self) -> sql.Composed:
        """Vectors and failures of documents that are gone, out of scope, or now blank.

        The ids are found first and deleted by key: the search reads only the primary key of the
        model's vectors (an index-only scan once the table is vacuumed), never their 1.5 kB rows."""
        return self._prune_unmatched(
            sql.SQL("SELECT 1 FROM {table} AS s WHERE {id} = x.document_id AND NOT {blank}").format(
                table=self.documents, id=self.id, blank=self.blank
            )
        )

    def prune_deleted(self) -> sql.Composed:
        """Vectors and failures of documents whose key is gone from the table: reads only the
        source's key index."""
        return self._prune_unmatched(
            sql.SQL("SELECT 1 FROM {raw} AS s WHERE {id} = x.document_id").format(
                raw=self.table, id=self.id
            )
        )

    def _prune_unmatched(self, match: sql.Composable) -> sql.Composed:
        return self._delete_gone(
            sql.SQL(
                "SELECT x.document_id AS id FROM {embeddings} AS x"
                " WHERE NOT EXISTS ({match})"
                " UNION ALL SELECT x.document_id FROM {failures} AS x"
                " WHERE NOT EXISTS ({match})"
            ).format(
                embeddings=self.vectors,
                failures=self.failures,
                match=match,
            )
        )

    def prune_changed(self) -> sql.Composed:
        """Vectors and failures of documents changed since `since` that are now blank or out
        of the `where` filter: what a scheduled pass prunes when nothing was deleted. One walk
        of the updated_at index, reading each changed row once."""
        return self._delete_gone(
            sql.SQL(
                "SELECT {id} AS id FROM {unfiltered} AS s"
                " WHERE {updated_at} > %(since)s AND NOT ({in_scope} AND NOT {blank})"
            ).format(
                id=self.id,
                unfiltered=self.unfiltered,
                updated_at=self.updated_at,
                in_scope=(
                    sql.SQL("coalesce(({}), FALSE)").format(_trusted(self.source.where))
                    if self.source.where
                    else TRUE
                ),
                blank=self.blank,
            )
        )

    def prune_logged(self) -> sql.Composed:
        """Vectors and failures of the keys the delete log recorded after `after` up to `upto`
        that are no longer in the source (a key deleted and inserted again keeps its vector)."""
        return self._delete_gone(
            sql.SQL(
                "SELECT l.id FROM (SELECT DISTINCT document_id::{id_type} AS id"
                " FROM embedkeeper.deleted_documents WHERE source_table = %(name)s"
                " AND id > %(after)s AND id <= %(upto)s) AS l"
                " WHERE NOT EXISTS (SELECT 1 FROM {raw} AS s WHERE {id} = l.id)"
            ).format(id_type=sql.SQL(self.id_type), raw=self.table, id=self.id)
        )

    def _delete_gone(self, gone: sql.Composable) -> sql.Composed:
        """Delete the model's vectors and failures of the ids `gone` selects (as `id`), by key;
        returns the vectors deleted."""
        return self._fmt(
            """
            WITH gone AS ({gone}), gone_vectors AS (
                DELETE FROM {embeddings} AS e
                WHERE e.document_id = ANY(ARRAY(SELECT id FROM gone))
                RETURNING 1
            ), gone_failures AS (
                DELETE FROM {failures} AS f
                WHERE f.document_id = ANY(ARRAY(SELECT id FROM gone))
            )
            SELECT count(*) FROM gone_vectors
            """,
            gone=gone,
        )

    def other_chunking_exists(self) -> sql.Composed:
        """Whether any record was chunked with other settings than `%(chunking)s`: two probes
        of the records' chunking index (an inequality as two ranges), not a scan."""
        return self._fmt(
            "SELECT EXISTS (SELECT 1 FROM {embeddings} WHERE chunking < %(chunking)s)"
            " OR EXISTS (SELECT 1 FROM {embeddings} WHERE chunking > %(chunking)s)"
        )

    def coverage(self) -> sql.Composed:
        """The coverage figures for one model in one scan of the source."""
        return self._fmt(
            """
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE blank) AS skipped,
                   count(*) FILTER (WHERE NOT blank AND has_vector) AS embedded,
                   count(*) FILTER (WHERE NOT blank AND has_vector AND changed) AS stale,
                   count(*) FILTER (WHERE NOT blank AND needs_work
                                    AND f_status = 'review' AND f_same) AS failed,
                   count(*) FILTER (WHERE NOT blank AND needs_work
                                    AND f_status = 'ignored' AND f_same) AS ignored,
                   count(*) FILTER (WHERE NOT blank AND needs_work
                                    AND NOT (f_status IN ('review', 'ignored') AND f_same)
                                    ) AS pending,
                   coalesce(sum(chunks) FILTER (WHERE NOT blank), 0) AS chunks,
                   count(*) FILTER (WHERE NOT blank AND has_vector AND truncated) AS truncated
            FROM (
                SELECT {blank} AS blank,
                       e.document_id IS NOT NULL AS has_vector,
                       (e.content_hash IS DISTINCT FROM cur.hash{other_chunking}) AS changed,
                       (e.document_id IS NULL OR e.content_hash IS DISTINCT FROM cur.hash
                        {other_chunking}) AS needs_work,
                       e.chunk_count AS chunks, coalesce(e.truncated, FALSE) AS truncated,
                       coalesce(f.status, '') AS f_status,
                       f.content_hash IS NOT DISTINCT FROM cur.hash AS f_same
                FROM {table} AS s
                LEFT JOIN {embeddings} AS e ON e.document_id = {id}
                LEFT JOIN {failures} AS f ON f.document_id = {id}
                CROSS JOIN LATERAL (SELECT CASE WHEN e.document_id IS NOT NULL
                                                  OR f.document_id IS NOT NULL
                                                THEN {text_hash} END
                                           AS hash) AS cur
            ) AS d
            """,
            other_chunking=self.other_chunking("e"),
        )
