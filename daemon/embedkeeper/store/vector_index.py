"""A model's vector indexes: name, list, create and drop them, and rebuild the ones a deferring
backfill recorded (store/deferred_index.py takes them down; store/index_build.py runs a build).

`embeddings.embedding` has no fixed dimension (models of every size share it), so a model's HNSW
index is a partial expression index: `USING hnsw ((embedding::vector(384)) vector_cosine_ops)
WHERE model = 'minilm'`. "The model's vector indexes" are the hnsw and ivfflat indexes on
embedkeeper.embeddings whose predicate is exactly `model = '<name>'`, ours or the user's.

A deferring backfill writes each index's `pg_get_indexdef` to embedkeeper.deferred_indexes when it
drops it; restore_indexes() rebuilds what is recorded and deletes the record in the same
transaction. The next `backfill`, `index create`, `index restore` or daemon tick rebuilds what a
dead backfill left recorded.

Why a plain CREATE INDEX and not CONCURRENTLY: a plain one is transactional, so the rebuild and
the deletion of its record commit together, and a failed build leaves nothing behind. CONCURRENTLY
cannot run in a transaction, leaves an INVALID index when it fails, and scans the table twice.
The price is that a plain build blocks writes to embedkeeper.embeddings (of every model; reads go
on) while it runs: peers' writes wait for it, they do not fail. A leftover INVALID index of ours
(from a user's CONCURRENTLY) is dropped and built again by `index create`.

Peers: a deferring backfill holds a shared advisory lock on the model's index key for as long as
the index is down. Rebuilding (at the end of a deferral, on restore, on create) needs the key
exclusively, tried without waiting: while any deferring backfill of the model still runs, the
others leave the rebuild to the last one out, and a restore leaves it to them too. A process that
dies drops its lock with its session, so the next run can rebuild.
"""

from __future__ import annotations

import hashlib
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
from embedkeeper.store.index_build import OPCLASSES, BuildSettings, HnswParams, build_indexes

log = logging.getLogger(__name__)

HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an hnsw index on vector
MAX_NAME = 63  # PostgreSQL's identifier length
INDEX_LOCK = locks.INDEX  # advisory key (INDEX_LOCK, model)

# The shape pg_get_indexdef gives the model's vector indexes. A record is rebuilt only if its
# definition has exactly this shape: the table is writable by the worker role, and the rebuild
# runs as the table's owner, so a record must not be able to smuggle in any other SQL.
_NAME = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")'
_DEFINITION = re.compile(
    rf"CREATE INDEX {_NAME} ON embedkeeper\.embeddings USING (?:hnsw|ivfflat) "
    r"\(\(\(embedding\)::(?:vector|halfvec)\(\d+\)\) [a-z0-9_]+_ops\)"
    r"(?: WITH \([a-z_]+='?\d+'?(?:, [a-z_]+='?\d+'?)*\))?"
    r" WHERE \(model = '(?:[^'\\]|'')*'::text\)"
)


@dataclass(frozen=True, slots=True)
class VectorIndex:
    name: str
    model: str
    definition: str
    state: str  # "live", "invalid" (a failed CONCURRENTLY build) or "deferred" (dropped, recorded)
    size_bytes: int | None


def index_name(model: str) -> str:
    """`embeddings_<model>_hnsw`; a name that is not plain lower-case ASCII, or too long, is
    reduced to such characters and gets a hash of the full name, so names never collide."""
    plain = re.sub(r"[^a-z0-9_]", "", model.lower())
    name = f"embeddings_{plain}_hnsw"
    if plain == model and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"embeddings_{plain[: MAX_NAME - 25]}_{digest}_hnsw"


def list_indexes(conn: psycopg.Connection[Any], model: str | None = None) -> list[VectorIndex]:
    """The vector indexes on embedkeeper.embeddings that belong to a model (or to `model`), with
    the ones a deferring backfill has dropped and not yet rebuilt."""
    with mapped_errors("listing vector indexes"):
        live = conn.execute(
            "SELECT c.relname, substring(pg_get_expr(i.indpred, i.indrelid)"
            "         FROM '^\\(model = ''(.*)''::text\\)$'),"
            "       pg_get_indexdef(i.indexrelid), i.indisvalid, pg_relation_size(i.indexrelid)"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam"
            " WHERE i.indrelid = 'embedkeeper.embeddings'::regclass"
            "   AND a.amname IN ('hnsw', 'ivfflat') AND i.indpred IS NOT NULL ORDER BY 1"
        ).fetchall()
        deferred = conn.execute(
            "SELECT index_name, model, definition FROM embedkeeper.deferred_indexes ORDER BY 1"
        ).fetchall()
    found = [
        VectorIndex(name, owner.replace("''", "'"), definition, "live" if ok else "invalid", size)
        for name, owner, definition, ok, size in live
        if owner is not None
    ]
    found += [
        VectorIndex(name, owner, definition, "deferred", None)
        for name, owner, definition in deferred
    ]
    return [i for i in found if model is None or i.model == model]


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
    model: ModelConfig,
    params: HnswParams,
    settings: BuildSettings,
) -> tuple[str, bool]:
    """Build `index_name(model)` unless it exists (valid); returns (name, built). Rebuilds what a
    dead deferring backfill left recorded first. Refused while a deferring backfill runs."""
    params.check()
    dims = model_dimensions(conn, model)
    if dims > HNSW_MAX_DIMENSIONS:
        raise EmbedkeeperError(
            f'model "{model.name}" makes {dims}-d vectors; pgvector\'s hnsw indexes vector '
            f"columns of at most {HNSW_MAX_DIMENSIONS} dimensions"
        )
    name = index_name(model.name)
    statement = sql.SQL(
        "CREATE INDEX {name} ON embedkeeper.embeddings USING hnsw"
        " ((embedding::vector({dims})) {opclass}) WITH (m = {m}, ef_construction = {ef})"
        " WHERE model = {model}"
    ).format(
        name=sql.Identifier(name),
        dims=sql.Literal(dims),
        opclass=sql.Identifier(OPCLASSES[params.opclass]),
        m=sql.Literal(params.m),
        ef=sql.Literal(params.ef_construction),
        model=sql.Literal(model.name),
    )
    if not restore_indexes(conn, model.name, settings):
        raise EmbedkeeperError(_busy(model.name))
    existing = {i.name: i.state for i in list_indexes(conn, model.name)}
    if existing.get(name) == "live":
        return name, False
    with owner_needed("creating"), conn.transaction():
        if not _try_lock(conn, model.name):
            raise EmbedkeeperError(_busy(model.name))
        if existing.get(name) == "invalid":  # what a failed CREATE INDEX CONCURRENTLY leaves
            conn.execute(sql.SQL("DROP INDEX embedkeeper.{}").format(sql.Identifier(name)))
        build_s = build_indexes(conn, model.name, [statement], settings)
    event(
        log,
        logging.INFO,
        "index_created",
        model=model.name,
        index=name,
        dimensions=dims,
        build_s=round(build_s, 2),
    )
    return name, True


def drop_indexes(conn: psycopg.Connection[Any], model: str) -> list[str]:
    """Drop the model's vector indexes and forget any a deferring backfill would rebuild."""
    names = sorted({i.name for i in list_indexes(conn, model)})
    with owner_needed("dropping"), conn.transaction():
        conn.execute("DELETE FROM embedkeeper.deferred_indexes WHERE model = %s", (model,))
        for name in names:
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS embedkeeper.{}").format(sql.Identifier(name))
            )
    event(log, logging.INFO, "index_dropped", model=model, indexes=",".join(names) or "none")
    return names


def restore_indexes(
    conn: psycopg.Connection[Any], model: str, settings: BuildSettings | None = None
) -> bool:
    """Rebuild the model's recorded indexes; False if a deferring backfill still runs (it will
    rebuild them itself). The records go in the same transaction as the builds."""
    with mapped_errors("reading deferred indexes"):
        pending = conn.execute(
            "SELECT 1 FROM embedkeeper.deferred_indexes WHERE model = %s LIMIT 1", (model,)
        ).fetchone()
    if pending is None:
        return True
    with owner_needed("rebuilding"), conn.transaction():
        if not _try_lock(conn, model):
            event(log, logging.INFO, "index_rebuild_left_to_peer", model=model)
            return False
        rows = conn.execute(
            "DELETE FROM embedkeeper.deferred_indexes WHERE model = %s"
            " RETURNING index_name, definition",
            (model,),
        ).fetchall()
        live = {i.name for i in list_indexes(conn, model) if i.state == "live"}
        todo = [(name, definition) for name, definition in rows if name not in live]
        statements = [_recorded(name, definition) for name, definition in todo]
        build_s = build_indexes(conn, model, statements, settings)
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
    conn: psycopg.Connection[Any], model: str, settings: BuildSettings | None = None
) -> None:
    """restore_indexes() for a command that goes on without the index if it cannot rebuild it
    (a role that does not own the table, a record that is not an index definition): it says so
    and what to run. A lost connection still goes up."""
    try:
        restore_indexes(conn, model, settings)
    except DatabaseUnavailable:
        raise
    except DatabaseError as exc:
        event(
            log,
            logging.WARNING,
            "index_not_restored",
            model=model,
            detail=str(exc),
            fix="run `embedkeeper index restore` as the owner of embedkeeper.embeddings",
        )


def rebuildable(definition: str) -> bool:
    """Whether a definition has the shape a record must have to be rebuilt (see _DEFINITION)."""
    return _DEFINITION.fullmatch(definition) is not None


def _try_lock(conn: psycopg.Connection[Any], model: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))", (INDEX_LOCK, model)
    ).fetchone()
    return bool(row and row[0])


def _recorded(name: str, definition: str) -> sql.SQL:
    if not rebuildable(definition):
        raise DatabaseError(
            f"embedkeeper.deferred_indexes holds a definition for {name} that is not a vector "
            "index on embedkeeper.embeddings; recreate the index by hand and delete that row"
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
                f"{doing} an index on embedkeeper.embeddings needs its owner (the role that ran "
                "`embedkeeper migrate`): run this command as that role"
            ) from exc
        raise
