"""A model's vector index: create, list and drop it, and keep it out of the way of a big backfill.

`embeddings.embedding` has no fixed dimension (models of every size share it), so a model's HNSW
index is a partial expression index: `USING hnsw ((embedding::vector(384)) vector_cosine_ops)
WHERE model = 'minilm'`. "The model's vector indexes" are the hnsw and ivfflat indexes on
embedkeeper.embeddings whose predicate is exactly `model = '<name>'`, ours or the user's.

Every insert into a live HNSW index walks the graph, so a large backfill crawls (a few hundred rows
per second on two cores). `backfill --defer-index` drops the model's vector indexes first and
rebuilds them at the end, which builds the graph once, in bulk, with `maintenance_work_mem` and
parallel workers. Nothing is lost if the process dies in between: each index's `pg_get_indexdef`
is written to embedkeeper.deferred_indexes in the transaction that drops it, and deleted in the one
that rebuilds it, so at every commit either the index or its record exists. The next `backfill`,
`index create` or `index restore` rebuilds what is recorded.

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
import time
from collections.abc import Iterator, Sequence
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
    UsageError,
)
from embedkeeper.logs import event
from embedkeeper.store.db import connect, mapped_errors

log = logging.getLogger(__name__)

OPCLASSES = {"cosine": "vector_cosine_ops", "l2": "vector_l2_ops", "ip": "vector_ip_ops"}
HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an hnsw index on vector
MAX_NAME = 63  # PostgreSQL's identifier length
INDEX_LOCK = (
    "embedkeeper:index"  # advisory key (INDEX_LOCK, model); claims use 'embedkeeper:<model>'
)
MIN_MEMORY_MB = 64
DEFAULT_MAX_MEMORY_MB = 4096
DEFAULT_WORKERS = 2
LARGE_BACKFILL = 10_000  # pending documents above which a live index earns a hint

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
class BuildSettings:
    """Session settings for a build. `memory_mb` None: enough for the model's rows (estimated),
    between 64 MB and `max_memory_mb`; a graph larger than maintenance_work_mem builds slowly."""

    memory_mb: int | None = None
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    workers: int = DEFAULT_WORKERS  # max_parallel_maintenance_workers (the leader works too)


@dataclass(frozen=True, slots=True)
class HnswParams:
    opclass: str = "cosine"
    m: int = 16
    ef_construction: int = 64

    def check(self) -> None:
        if self.opclass not in OPCLASSES:
            raise UsageError(f'unknown opclass "{self.opclass}"; use one of {", ".join(OPCLASSES)}')
        if not 2 <= self.m <= 100:
            raise UsageError(f"--m {self.m} is out of range; pgvector takes 2 to 100")
        if not 2 * self.m <= self.ef_construction <= 1000:
            raise UsageError(
                f"--ef-construction {self.ef_construction} is out of range; pgvector takes "
                f"2 * m ({2 * self.m}) to 1000"
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
    with _owner_needed("creating"), conn.transaction():
        if not _try_lock(conn, model.name):
            raise EmbedkeeperError(_busy(model.name))
        if existing.get(name) == "invalid":  # what a failed CREATE INDEX CONCURRENTLY leaves
            conn.execute(sql.SQL("DROP INDEX embedkeeper.{}").format(sql.Identifier(name)))
        build_s = _build(conn, model.name, [statement], settings)
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
    with _owner_needed("dropping"), conn.transaction():
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
    with _owner_needed("rebuilding"), conn.transaction():
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
        build_s = _build(conn, model, statements, settings)
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


def note_live_index(conn: psycopg.Connection[Any], model: str, todo: int) -> None:
    """A hint when a large backfill is about to write into a live vector index."""
    if todo < LARGE_BACKFILL:
        return
    live = [i.name for i in list_indexes(conn, model) if i.state == "live"]
    if live:
        event(
            log,
            logging.INFO,
            "live_vector_index",
            model=model,
            indexes=",".join(live),
            pending=todo,
            hint="inserts into a live HNSW index are slow: consider backfill --defer-index",
        )


@contextmanager
def indexes_deferred(
    url: str, model: str, settings: BuildSettings, *, timeout_s: float = 10.0
) -> Iterator[list[str]]:
    """Drop the model's vector indexes for the block (recorded first), rebuild them after it.

    A second interrupt (KeyboardInterrupt) skips the rebuild: the records stay for the next run.
    """
    conn = connect(url, timeout_s=timeout_s)
    try:
        with mapped_errors("locking the model's index"):
            conn.execute(
                "SELECT pg_advisory_lock_shared(hashtext(%s), hashtext(%s))", (INDEX_LOCK, model)
            )
        dropped = _record_and_drop(conn, model)
        try:
            yield dropped
        except Exception:
            _rebuild_quietly(url, conn, model, settings, timeout_s)
            raise
        _release_and_rebuild(url, conn, model, settings, timeout_s)
    finally:
        conn.close()


def _record_and_drop(conn: psycopg.Connection[Any], model: str) -> list[str]:
    live = [i for i in list_indexes(conn, model) if i.state == "live"]
    for index in live:
        if not _DEFINITION.fullmatch(index.definition):  # it could not be rebuilt from a record
            event(log, logging.WARNING, "index_kept", model=model, index=index.name)
    live = [i for i in live if _DEFINITION.fullmatch(i.definition)]
    with _owner_needed("dropping"), conn.transaction():
        for index in live:
            conn.execute(
                "INSERT INTO embedkeeper.deferred_indexes (index_name, model, definition)"
                " VALUES (%s, %s, %s) ON CONFLICT (index_name) DO NOTHING",
                (index.name, model, index.definition),
            )
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS embedkeeper.{}").format(sql.Identifier(index.name))
            )
    names = [i.name for i in live]
    event(log, logging.INFO, "index_deferred", model=model, indexes=",".join(names) or "none")
    return names


def _release_and_rebuild(
    url: str, conn: psycopg.Connection[Any], model: str, settings: BuildSettings, timeout_s: float
) -> None:
    try:
        with mapped_errors("unlocking the model's index"):
            conn.execute(
                "SELECT pg_advisory_unlock_shared(hashtext(%s), hashtext(%s))", (INDEX_LOCK, model)
            )
    except DatabaseUnavailable:  # the session, and its lock, are gone: rebuild on a new one
        with connect(url, timeout_s=timeout_s) as fresh:
            restore_indexes(fresh, model, settings)
        return
    restore_indexes(conn, model, settings)


def _rebuild_quietly(
    url: str, conn: psycopg.Connection[Any], model: str, settings: BuildSettings, timeout_s: float
) -> None:
    """On the way out of a failed backfill: rebuild if we can; if not, the record stays."""
    try:
        _release_and_rebuild(url, conn, model, settings, timeout_s)
    except EmbedkeeperError as exc:
        event(log, logging.WARNING, "index_rebuild_failed", model=model, detail=str(exc))


def _try_lock(conn: psycopg.Connection[Any], model: str) -> bool:
    row = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))", (INDEX_LOCK, model)
    ).fetchone()
    return bool(row and row[0])


def _recorded(name: str, definition: str) -> sql.SQL:
    if not _DEFINITION.fullmatch(definition):
        raise DatabaseError(
            f"embedkeeper.deferred_indexes holds a definition for {name} that is not a vector "
            "index on embedkeeper.embeddings; recreate the index by hand and delete that row"
        )
    # Checked above against the exact shape pg_get_indexdef writes for such an index.
    return sql.SQL(definition)


def _build(
    conn: psycopg.Connection[Any],
    model: str,
    statements: Sequence[sql.SQL | sql.Composed],
    settings: BuildSettings | None,
) -> float:
    """Run the builds in the caller's transaction with the build settings (SET LOCAL); returns
    the seconds they took."""
    if not statements:
        return 0.0
    start = time.perf_counter()
    settings = settings or BuildSettings()
    memory_mb = settings.memory_mb or _memory_needed(conn, model, settings.max_memory_mb)
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{memory_mb}MB",))
    conn.execute(
        "SELECT set_config('max_parallel_maintenance_workers', %s, true)", (str(settings.workers),)
    )
    conn.add_notice_handler(_on_notice)  # pgvector: "hnsw graph no longer fits into ..."
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.remove_notice_handler(_on_notice)
    return time.perf_counter() - start


def _on_notice(diag: psycopg.errors.Diagnostic) -> None:
    event(log, logging.WARNING, "index_build_notice", detail=diag.message_primary or "")


def _memory_needed(conn: psycopg.Connection[Any], model: str, cap_mb: int) -> int:
    """The graph's size in memory: per row the vector, two layers of neighbours and overhead."""
    row = conn.execute(
        "SELECT count(*), max(vector_dims(embedding)) FROM embedkeeper.embeddings WHERE model = %s",
        (model,),
    ).fetchone()
    rows, dims = (int(row[0]), int(row[1] or 0)) if row else (0, 0)
    needed_mb = rows * (4 * dims + 2 * 16 * 8 + 256) * 1.25 / 2**20
    return int(min(cap_mb, max(MIN_MEMORY_MB, needed_mb)))


def _busy(model: str) -> str:
    return (
        f'a backfill with --defer-index is running for model "{model}"; it rebuilds the '
        "model's vector indexes when it ends (see `embedkeeper index status`)"
    )


@contextmanager
def _owner_needed(doing: str) -> Iterator[None]:
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
