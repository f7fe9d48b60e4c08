"""A (source, model) pair's vector indexes: name, list, create and drop them, and rebuild the
ones a deferring backfill recorded (store/index/deferred_index.py takes them down;
store/index/index_build.py
runs a build).

A pair's chunks have a typed column (`vector(N)` or `halfvec(N)`), so its HNSW index is plain:
`CREATE INDEX <pair>_hnsw ON embedkeeper.<pair>_chunks USING hnsw (embedding vector_cosine_ops)`,
used by `ORDER BY embedding <=> $1` with no cast. "The pair's vector indexes" are the hnsw and
ivfflat indexes on its chunks table, ours or the user's.

A deferring backfill writes each index's `pg_get_indexdef` to embedkeeper.deferred_indexes when it
drops it; restore_indexes() rebuilds what is recorded and deletes the record in the same
transaction. The next `backfill`, `index create`, `index restore` or daemon tick rebuilds what a
dead backfill left recorded.

Why a plain CREATE INDEX and not CONCURRENTLY: a plain one is transactional, so the rebuild and
the deletion of its record commit together, and a failed build leaves nothing behind. CONCURRENTLY
cannot run in a transaction, leaves an INVALID index when it fails, and scans the table twice.
The price is that a plain build blocks writes to the pair's chunks (reads go on) while it runs:
peers' writes wait for it, they do not fail. A leftover INVALID index of ours (from a user's
CONCURRENTLY) is dropped and built again by `index create`.

Peers: a deferring backfill holds a shared advisory lock on the pair's index key for as long as
the index is down. Rebuilding (at the end of a deferral, on restore, on create) needs the key
exclusively, tried without waiting: while any deferring backfill of the pair still runs, the
others leave the rebuild to the last one out, and a restore leaves it to them too. A process that
dies drops its lock with its session, so the next run can rebuild.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from embedkeeper.config import ModelConfig
from embedkeeper.errors import (
    DatabaseError,
    DatabaseUnavailable,
    EmbedkeeperError,
    NotIndexOwner,
)
from embedkeeper.logs import event
from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors
from embedkeeper.store.index.index_build import OPCLASSES, BuildSettings, HnswParams, build_indexes
from embedkeeper.store.pair.tables import PairNames

log = logging.getLogger(__name__)

HNSW_MAX_DIMENSIONS = {"vector": 2000, "halfvec": 4000}  # pgvector's limits for hnsw
INDEX_LOCK = locks.INDEX  # advisory key (INDEX_LOCK, pair_key)

# The shape pg_get_indexdef gives a pair's vector indexes. A record is rebuilt only if its
# definition has exactly this shape: the table is writable by the worker role, and the rebuild
# runs as the table's owner, so a record must not be able to smuggle in any other SQL.
_NAME = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
_DEFINITION = (
    rf"CREATE INDEX {_NAME} ON embedkeeper\.{{table}} USING (?:hnsw|ivfflat) "
    r"\(embedding [a-z0-9_]+_ops\)"
    r"(?: WITH \([a-z_]+='?\d+'?(?:, [a-z_]+='?\d+'?)*\))?"
)


@dataclass(frozen=True, slots=True)
class IndexTarget:
    """The pair whose chunks are indexed: its names, and the vectors' storage and size."""

    source: str
    model: str
    table: str  # the chunks table, in schema embedkeeper
    index: str  # the name of the pair's HNSW index
    storage: str
    dimensions: int

    @property
    def key(self) -> str:
        return locks.pair_key(self.source, self.model)

    @property
    def qualified(self) -> sql.Composable:
        return sql.Identifier("embedkeeper", self.table)


def index_target(conn: psycopg.Connection[Any], names: PairNames) -> IndexTarget:
    """The pair's index target, from its record in embedkeeper.pairs."""
    with mapped_errors("reading the pair registry"):
        row = conn.execute(
            "SELECT storage, dimensions FROM embedkeeper.pairs WHERE source = %s AND model = %s",
            (names.source, names.model),
        ).fetchone()
    if row is None:
        raise EmbedkeeperError(
            f'source "{names.source}", model "{names.model}" has no tables yet; run'
            " `embedkeeper migrate` (or a backfill) first"
        )
    return IndexTarget(
        names.source,
        names.model,
        names.relations.chunks,
        names.hnsw_index,
        str(row[0]),
        int(row[1]),
    )


@dataclass(frozen=True, slots=True)
class VectorIndex:
    name: str
    model: str
    definition: str
    state: str  # "live", "invalid" (a failed CONCURRENTLY build) or "deferred" (dropped, recorded)
    size_bytes: int | None


def list_indexes(conn: psycopg.Connection[Any], target: IndexTarget) -> list[VectorIndex]:
    """The pair's vector indexes on its chunks, with the ones a deferring backfill has dropped
    and not yet rebuilt."""
    with mapped_errors("listing vector indexes"):
        live = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid,"
            "       pg_relation_size(i.indexrelid)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam"
            " WHERE i.indrelid = to_regclass(%s) AND a.amname IN ('hnsw', 'ivfflat') ORDER BY 1",
            (target.qualified.as_string(conn),),
        ).fetchall()
        deferred = conn.execute(
            "SELECT index_name, definition FROM embedkeeper.deferred_indexes"
            " WHERE source = %s AND model = %s ORDER BY 1",
            (target.source, target.model),
        ).fetchall()
    found = [
        VectorIndex(name, target.model, definition, "live" if ok else "invalid", size)
        for name, definition, ok, size in live
    ]
    found += [
        VectorIndex(name, target.model, definition, "deferred", None)
        for name, definition in deferred
    ]
    return found


def model_dimensions(conn: psycopg.Connection[Any], model: ModelConfig) -> int:
    """`[[models]] dimensions`, else what the registry holds for the model."""
    if model.dimensions is not None:
        return model.dimensions
    with mapped_errors("reading the model registry"):
        row = conn.execute(
            "SELECT dimensions FROM embedkeeper.models WHERE name = %s", (model.name,)
        ).fetchone()
    if row is None:
        raise EmbedkeeperError(
            f'model "{model.name}" has no dimensions yet; set [[models]] dimensions, '
            "or run a backfill first"
        )
    return int(row[0])


def create_index(
    conn: psycopg.Connection[Any],
    target: IndexTarget,
    params: HnswParams,
    settings: BuildSettings,
) -> tuple[str, bool]:
    """Build the pair's HNSW index unless it exists (valid); returns (name, built). Rebuilds what
    a dead deferring backfill left recorded first. Refused while a deferring backfill runs."""
    params.check()
    dims, limit = target.dimensions, HNSW_MAX_DIMENSIONS.get(target.storage, 2000)
    if dims > limit:
        raise EmbedkeeperError(
            f'model "{target.model}" makes {dims}-d vectors; pgvector\'s hnsw indexes'
            f" {target.storage} columns of at most {limit} dimensions"
            + ('; set storage = "halfvec" under a new model name' if dims <= 4000 else "")
        )
    name = target.index
    opclass = OPCLASSES[params.opclass].replace("vector_", f"{target.storage}_", 1)
    statement = hnsw_statement(target, opclass, params.m, params.ef_construction)
    model = target.model
    if not restore_indexes(conn, target, settings):
        raise EmbedkeeperError(_busy(model))
    existing = {i.name: i.state for i in list_indexes(conn, target)}
    if existing.get(name) == "live":
        return name, False
    with owner_needed("creating"), conn.transaction():
        if not _try_lock(conn, target):
            raise EmbedkeeperError(_busy(model))
        if existing.get(name) == "invalid":  # what a failed CREATE INDEX CONCURRENTLY leaves
            conn.execute(sql.SQL("DROP INDEX embedkeeper.{}").format(sql.Identifier(name)))
        build_s = build_indexes(conn, target, [statement], settings)
    event(
        log,
        logging.INFO,
        "index_created",
        model=model,
        index=name,
        dimensions=dims,
        build_s=round(build_s, 2),
    )
    return name, True


def hnsw_statement(target: IndexTarget, opclass: str, m: int, ef_construction: int) -> sql.Composed:
    """The pair's HNSW index on its typed column: plain, with no cast and no predicate."""
    return sql.SQL(
        "CREATE INDEX {name} ON {table} USING hnsw (embedding {opclass})"
        " WITH (m = {m}, ef_construction = {ef})"
    ).format(
        name=sql.Identifier(target.index),
        table=target.qualified,
        opclass=sql.Identifier(opclass),
        m=sql.Literal(m),
        ef=sql.Literal(ef_construction),
    )


def drop_indexes(conn: psycopg.Connection[Any], target: IndexTarget) -> list[str]:
    """Drop the pair's vector indexes and forget any a deferring backfill would rebuild."""
    model = target.model
    names = sorted({i.name for i in list_indexes(conn, target)})
    with owner_needed("dropping"), conn.transaction():
        conn.execute(
            "DELETE FROM embedkeeper.deferred_indexes WHERE source = %s AND model = %s",
            (target.source, model),
        )
        for name in names:
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS embedkeeper.{}").format(sql.Identifier(name))
            )
    event(log, logging.INFO, "index_dropped", model=model, indexes=",".join(names) or "none")
    return names


def restore_indexes(
    conn: psycopg.Connection[Any], target: IndexTarget, settings: BuildSettings | None = None
) -> bool:
    """Rebuild the pair's recorded indexes; False if a deferring backfill still runs (it will
    rebuild them itself). The records go in the same transaction as the builds."""
    model, pair = target.model, (target.source, target.model)
    with mapped_errors("reading deferred indexes"):
        pending = conn.execute(
            "SELECT 1 FROM embedkeeper.deferred_indexes WHERE source = %s AND model = %s LIMIT 1",
            pair,
        ).fetchone()
    if pending is None:
        return True
    with owner_needed("rebuilding"), conn.transaction():
        if not _try_lock(conn, target):
            event(log, logging.INFO, "index_rebuild_left_to_peer", model=model)
            return False
        rows = conn.execute(
            "DELETE FROM embedkeeper.deferred_indexes WHERE source = %s AND model = %s"
            " RETURNING index_name, definition",
            pair,
        ).fetchall()
        live = {i.name for i in list_indexes(conn, target) if i.state == "live"}
        todo = [(name, definition) for name, definition in rows if name not in live]
        statements = [_recorded(target, name, definition) for name, definition in todo]
        build_s = build_indexes(conn, target, statements, settings)
    event(
        log,
        logging.INFO,
        "index_rebuilt",
        model=model,
        indexes=",".join(n for n, _ in todo),
        build_s=round(build_s, 2),
    )
    return True


def restore_quietly(
    conn: psycopg.Connection[Any], target: IndexTarget, settings: BuildSettings | None = None
) -> None:
    """restore_indexes() for a command that goes on without the index if it cannot rebuild it
    (a role that does not own the table, a record that is not an index definition): it says so
    and what to run. A lost connection still goes up."""
    try:
        restore_indexes(conn, target, settings)
    except DatabaseUnavailable:
        raise
    except DatabaseError as exc:
        event(
            log,
            logging.WARNING,
            "index_not_restored",
            model=target.model,
            detail=str(exc),
            fix=f"run `embedkeeper index restore` as the owner of embedkeeper.{target.table}",
        )


def rebuildable(target: IndexTarget, definition: str) -> bool:
    """Whether a definition has the shape a record must have to be rebuilt (see _DEFINITION):
    a vector index on this pair's chunks and nothing else."""
    table = re.escape(target.table)
    if not re.fullmatch(r"[a-z_][a-z0-9_$]*", target.table):
        table = re.escape('"' + target.table.replace('"', '""') + '"')
    return re.fullmatch(_DEFINITION.format(table=table), definition) is not None


def _try_lock(conn: psycopg.Connection[Any], target: IndexTarget) -> bool:
    return locks.take(conn, "pg_try_advisory_xact_lock", INDEX_LOCK, target.key)


def _recorded(target: IndexTarget, name: str, definition: str) -> sql.SQL:
    if not rebuildable(target, definition):
        raise DatabaseError(
            f"embedkeeper.deferred_indexes holds a definition for {name} that is not a vector "
            f"index on embedkeeper.{target.table}; recreate the index by hand and delete that row"
        )
    # Checked above against the exact shape pg_get_indexdef writes for such an index.
    return sql.SQL(definition)


def _busy(model: str) -> str:
    return (
        f'a backfill with --defer-index is running for model "{model}"; it rebuilds the '
        "model's vector indexes when it ends (see `embedkeeper index status`)"
    )


@contextmanager
def owner_needed(doing: str) -> Iterator[None]:
    """Map the driver's errors; a missing privilege becomes NotIndexOwner, which names the role
    that can do it."""
    try:
        with mapped_errors(f"{doing} a vector index"):
            yield
    except DatabaseError as exc:
        cause = exc.__cause__
        if isinstance(cause, psycopg.errors.InsufficientPrivilege):
            raise NotIndexOwner(
                f"{doing} an index on a pair's chunks needs their owner (the role that ran "
                "`embedkeeper migrate`): run this command as that role"
            ) from exc
        raise
