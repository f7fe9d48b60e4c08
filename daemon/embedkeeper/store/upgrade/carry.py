"""Carrying a v0.1 database into the (source, model) pairs' tables, run by `embedkeeper migrate`.

v0.1 kept every model's vectors in one shared table, embedkeeper.embeddings, and its failures in
embedkeeper.failures, each row naming its model. Now each pair of the config's source and a
model has tables of its own (models/pairs.py). Nothing is embedded again to get there: each
stored vector becomes its document's one chunk, recorded as what the vector is, the model's cut
of the whole text: under a config that keeps texts whole (chunking = "none"), that config's
fingerprint, which names the window the model cuts at ("none:512" with max_tokens = 512), since
v0.1 cut at the window its config gave and an upgrade keeps the config; otherwise the bare
"none", stale to the config's chunking. A model whose config asks for chunking then re-embeds
those documents progressively, each old vector serving until its document's chunks replace
it; the report says how many documents that is. The pair records the config's chunking
settings (embedkeeper.pairs.chunking), which every writer is then held to.

Why not an alembic revision: the pairs' tables depend on the config (the source's name and key
type, the model's storage), which alembic does not see. Why it is safe on every migrate: it
carries what is still in the shared tables and deletes what it carried, so a second run finds
nothing. A model with vectors there but no [[models]] entry stays where it is, named in the
report, until a config names it.

One transaction per model, with the shared tables locked against writes for its length, so a
v0.1 process still running waits instead of writing a row that would be deleted uncarried: the
pair's tables, its record in embedkeeper.pairs, the rows, the index and the deletion commit
together or not at all.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.chunking.for_model import model_chunking
from embedkeeper.config import Config, ModelConfig, SourceConfig
from embedkeeper.errors import DimensionMismatch
from embedkeeper.logs import event
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.index.index_build import BuildSettings
from embedkeeper.store.pair.tables import PairNames, PairRecord, create_pair_tables, record_pair
from embedkeeper.store.source.preflight import inspect_source
from embedkeeper.store.source.source_sql import SourceSql
from embedkeeper.store.upgrade.index import carry_index
from embedkeeper.store.upgrade.report import CarriedModel, LeftModel, UpgradeReport

log = logging.getLogger(__name__)

# The carried chunk's passage: the source's current text up to this many characters. No v0.1
# model was given more of a text (servers were sent at most 100,000 characters; the local model
# a few thousand), and a document of many MB should not be copied whole into its chunk.
PASSAGE_MAX_CHARS = 100_000

# The pass's own tables whose v0.1 rows carry source '' (alembic 0008) until filed here.
_TAGGED = ("runs", "inflight", "deferred_indexes")


def carry_v01(
    conn: psycopg.Connection[Any],
    config: Config,
    *,
    source: SourceConfig | None = None,
    settings: BuildSettings | None = None,
) -> UpgradeReport:
    """Move every configured model's v0.1 rows into its pair with `source`, the table v0.1
    embedded (default config.source); `conn` is an autocommit connection of the schema's owner.
    `settings`: the index builds' memory and workers (default: sized from the rows)."""
    source = source or config.source
    with mapped_errors("looking for v0.1 vectors"):
        stored = _stored_models(conn)
    configured = {m.name: m for m in config.models}
    left = tuple(LeftModel(name, n) for name, n in stored.items() if name not in configured)
    todo = [configured[name] for name in stored if name in configured]
    key_type = inspect_source(conn, source).key_family if todo else ""
    carried = tuple(_carry_model(conn, source, model, key_type, settings) for model in todo)
    with mapped_errors("filing v0.1 runs under the source"), conn.transaction():
        for model in config.models:  # a model with runs but no vectors left (all deleted)
            _tag_rows(conn, source.source_name, model.name)
    report = UpgradeReport(source.source_name, carried, left)
    for done in carried:
        event(
            log,
            logging.INFO,
            "v01_carried",
            source=report.source,
            model=done.model,
            vectors=done.vectors,
            failures=done.failures,
            index=done.index.state,
            reembed=done.reembed,
        )
    for stays in left:
        event(log, logging.WARNING, "v01_model_left", model=stays.model, vectors=stays.vectors)
    if not carried:
        event(log, logging.INFO, "v01_nothing_to_carry", source=report.source)
    return report


def _stored_models(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Model name -> its vectors, for every model with rows in the shared tables (a model may
    have failures only); empty where the shared tables are gone."""
    found = conn.execute("SELECT to_regclass('embedkeeper.embeddings') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return {}
    rows = conn.execute(
        "SELECT model, sum(vectors)::bigint FROM ("
        " SELECT model, count(*) AS vectors FROM embedkeeper.embeddings GROUP BY model"
        " UNION ALL SELECT DISTINCT model, 0 FROM embedkeeper.failures"
        " UNION ALL SELECT DISTINCT model, 0 FROM embedkeeper.deferred_indexes WHERE source = ''"
        ") AS m GROUP BY model ORDER BY model"
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


def _carry_model(
    conn: psycopg.Connection[Any],
    source: SourceConfig,
    model: ModelConfig,
    key_type: str,
    settings: BuildSettings | None,
) -> CarriedModel:
    names = PairNames.of(source.source_name, model.name)
    with mapped_errors(f"carrying the v0.1 rows of model {model.name}"), conn.transaction():
        conn.execute("LOCK TABLE embedkeeper.embeddings, embedkeeper.failures IN EXCLUSIVE MODE")
        dimensions = _dimensions(conn, model)
        create_pair_tables(
            conn, names, key_type=key_type, dimensions=dimensions, storage=model.storage
        )
        chunking = model_chunking(model).fingerprint
        record = PairRecord(source.display_name, key_type, dimensions, model.storage, chunking)
        record_pair(conn, names, record)
        carried_as = chunking if model.chunking == "none" else "none"
        vectors = _copy_vectors(
            conn, SourceSql(source, key_type), names, model, dimensions, carried_as
        )
        failures = _copy_failures(conn, names)
        index = carry_index(
            conn, names, dimensions=dimensions, storage=model.storage, settings=settings
        )
        _tag_rows(conn, source.source_name, model.name)
        removed = conn.execute(
            "DELETE FROM embedkeeper.embeddings WHERE model = %s", (model.name,)
        ).rowcount
        conn.execute("DELETE FROM embedkeeper.failures WHERE model = %s", (model.name,))
    return CarriedModel(
        model=model.name,
        base=names.base,
        vectors=vectors,
        superseded=removed - vectors,
        failures=failures,
        index=index,
        chunking=model.chunking,
        reembed=0 if model.chunking == "none" else vectors,
    )


def _dimensions(conn: psycopg.Connection[Any], model: ModelConfig) -> int:
    """The stored vectors' size (the registry's, for a model with failures only), which the
    pair's typed column must have; a config that says otherwise is refused, as v0.1 refused it."""
    row = conn.execute(
        "SELECT coalesce((SELECT vector_dims(embedding) FROM embedkeeper.embeddings"
        " WHERE model = %(m)s LIMIT 1), (SELECT dimensions FROM embedkeeper.models"
        " WHERE name = %(m)s))",
        {"m": model.name},
    ).fetchone()
    stored = None if row is None or row[0] is None else int(row[0])
    dimensions = stored or model.dimensions
    if dimensions is None:
        raise DimensionMismatch(
            f'model "{model.name}" has v0.1 rows but no vectors and no registered size;'
            " set [[models]] dimensions"
        )
    if model.dimensions is not None and model.dimensions != dimensions:
        raise DimensionMismatch(
            f'[[models]] "{model.name}" says dimensions = {model.dimensions}, but its v0.1'
            f" vectors have {dimensions}; give the model another name to embed again beside"
            f" them, or set dimensions = {dimensions}"
        )
    return dimensions


def _copy_vectors(
    conn: psycopg.Connection[Any],
    source: SourceSql,
    names: PairNames,
    model: ModelConfig,
    dimensions: int,
    chunking: str,
) -> int:
    """Each stored vector as its document's record (one chunk, recorded with `chunking`) and
    chunk 0; returns how many. A document the pair already has (a newer record) keeps its
    own."""
    statement = sql.SQL(
        """
        WITH kept AS (
            INSERT INTO {documents} AS d (document_id, content_hash, chunking, chunk_count,
                token_count, truncated, source_updated_at, embedded_at)
            SELECT e.document_id, e.content_hash, %(chunking)s, 1, e.token_count, e.truncated,
                   e.source_updated_at, e.embedded_at
            FROM embedkeeper.embeddings AS e WHERE e.model = %(model)s
            ON CONFLICT (document_id) DO NOTHING
            RETURNING d.document_id
        )
        INSERT INTO {chunks} (document_id, chunk, char_start, char_end, passage, embedding)
        SELECT e.document_id, 0, 0, length(p.passage), p.passage, e.embedding::{column}
        FROM kept
        JOIN embedkeeper.embeddings AS e
          ON e.model = %(model)s AND e.document_id = kept.document_id
        LEFT JOIN {table} AS s ON {id} = e.document_id
        CROSS JOIN LATERAL (SELECT coalesce(left({text}::text, %(max_chars)s), '') AS passage) p
        ON CONFLICT (document_id, chunk) DO NOTHING
        """
    ).format(
        documents=names.documents,
        chunks=names.chunks,
        column=sql.SQL("{}({})").format(
            sql.SQL("halfvec" if model.storage == "halfvec" else "vector"),
            sql.Literal(dimensions),
        ),
        table=source.unfiltered,
        id=source.id,
        text=source.text,
    )
    cursor = conn.execute(
        statement, {"model": model.name, "max_chars": PASSAGE_MAX_CHARS, "chunking": chunking}
    )
    return cursor.rowcount


def _copy_failures(conn: psycopg.Connection[Any], names: PairNames) -> int:
    """The model's failures as they stand: attempts, status and retry time kept."""
    statement = sql.SQL(
        """
        INSERT INTO {failures} (document_id, attempts, error_class, message, content_hash,
            first_seen, last_seen, next_retry_at, status)
        SELECT document_id, attempts, error_class, message, content_hash,
               first_seen, last_seen, next_retry_at, status
        FROM embedkeeper.failures WHERE model = %(model)s
        ON CONFLICT (document_id) DO NOTHING
        """
    ).format(failures=names.failures)
    return conn.execute(statement, {"model": names.model}).rowcount


def _tag_rows(conn: psycopg.Connection[Any], source: str, model: str) -> None:
    """File the model's v0.1 rows of the pass's own tables (source '') under the source. A
    sync_state row the source already has (a pass of this version) is the newer one."""
    params = {"source": source, "model": model}
    for table in _TAGGED:
        conn.execute(
            sql.SQL(
                "UPDATE embedkeeper.{} SET source = %(source)s"
                " WHERE source = '' AND model = %(model)s"
            ).format(sql.Identifier(table)),
            params,
        )
    conn.execute(
        "DELETE FROM embedkeeper.sync_state AS old WHERE old.source = '' AND old.model = %(model)s"
        " AND EXISTS (SELECT 1 FROM embedkeeper.sync_state AS new"
        "  WHERE new.source = %(source)s AND new.model = %(model)s)",
        params,
    )
    conn.execute(
        "UPDATE embedkeeper.sync_state SET source = %(source)s"
        " WHERE source = '' AND model = %(model)s",
        params,
    )
