"""A v0.1 model's vector index, carried to its (source, model) pair (store/upgrade/carry.py).

v0.1 indexed the shared table with a partial expression index per model (`USING hnsw
((embedding::vector(384)) vector_cosine_ops) WHERE model = 'minilm'`, store/index/vector_index.py).
A pair's chunks have a typed column of their own, so its index is plain: `<base>_hnsw` on
`<base>_chunks USING hnsw (embedding vector_cosine_ops)`, no cast and no predicate. The old
index's operator family (cosine, l2, ip, l1) and HNSW parameters come along; an ivfflat index
becomes an HNSW one with pgvector's default parameters.

- A live old index: the pair's index is built now, in migrate's transaction, and the old one is
  dropped (an old index of a model whose rows have left the shared table indexes nothing).
- An old index that a deferring backfill dropped and recorded (deferred_indexes): the record is
  replaced by the pair's definition, so whatever rebuilds deferred indexes builds the pair's
  index. It is written as pg_get_indexdef writes it, as a deferring backfill records one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql

from embedkeeper.errors import EmbedkeeperError
from embedkeeper.models.pairs import Storage
from embedkeeper.store import locks
from embedkeeper.store.index.index_build import BuildSettings, build_indexes
from embedkeeper.store.index.vector_index import HNSW_MAX_DIMENSIONS, IndexTarget, hnsw_statement
from embedkeeper.store.pair.tables import PairNames

DEFAULT_M = 16  # pgvector's defaults, for an old index that named none (or an ivfflat one)
DEFAULT_EF_CONSTRUCTION = 64

_OLD_SHAPE = re.compile(
    r" USING (?P<method>hnsw|ivfflat) \(\(\(embedding\)::(?:vector|halfvec)\(\d+\)\)"
    r" (?:vector|halfvec)_(?P<family>cosine|l2|ip|l1)_ops\)(?: WITH \((?P<options>[^)]*)\))?"
)
_OPTION = re.compile(r"([a-z_]+)='?(\d+)'?")

IndexState = Literal["built", "deferred", "kept", "dropped", "none"]


@dataclass(frozen=True, slots=True)
class CarriedIndex:
    """What became of the model's old vector indexes: "built" (the pair's index, by migrate),
    "deferred" (recorded for the next rebuild), "kept" (the pair already had its index),
    "dropped" (no HNSW index can cover the pair's vectors: `detail` says why), "none"."""

    state: IndexState
    name: str | None = None
    old: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Params:
    family: str = "cosine"
    m: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION

    @classmethod
    def of(cls, definition: str) -> _Params:
        """The operator family and HNSW parameters of an old index's pg_get_indexdef."""
        found = _OLD_SHAPE.search(definition)
        if found is None:
            return cls()
        options = dict(_OPTION.findall(found["options"] or ""))
        if found["method"] != "hnsw":
            return cls(found["family"])
        return cls(
            found["family"],
            int(options.get("m", DEFAULT_M)),
            int(options.get("ef_construction", DEFAULT_EF_CONSTRUCTION)),
        )


def carry_index(
    conn: psycopg.Connection[Any],
    names: PairNames,
    *,
    dimensions: int,
    storage: Storage,
    settings: BuildSettings | None = None,
) -> CarriedIndex:
    """Carry the model's old indexes to the pair, in the caller's transaction. Call it before
    the model's rows leave the shared table: the build's memory is sized from them."""
    model = names.model
    if not _try_index_lock(conn, model):
        raise EmbedkeeperError(
            f'a backfill with --defer-index is running for model "{model}"; let it finish '
            "(or stop it), then run `embedkeeper migrate` again"
        )
    live = _old_indexes(conn, model)
    deferred = conn.execute(
        "DELETE FROM embedkeeper.deferred_indexes WHERE source = '' AND model = %s"
        " RETURNING index_name, definition",
        (model,),
    ).fetchall()
    old = tuple(i.name for i in live) + tuple(str(row[0]) for row in deferred)
    for index in live:
        conn.execute(sql.SQL("DROP INDEX embedkeeper.{}").format(sql.Identifier(index.name)))
    usable = [i.definition for i in live if i.valid]
    if not usable and not deferred:
        return CarriedIndex("none", old=old)
    name = names.hnsw_index
    limit = HNSW_MAX_DIMENSIONS[storage]
    if dimensions > limit:
        detail = f"{storage}({dimensions}) is over pgvector's hnsw limit of {limit} dimensions"
        return CarriedIndex("dropped", name, old, detail)
    if _exists(conn, name):
        return CarriedIndex("kept", name, old)
    params = _Params.of(usable[0] if usable else str(deferred[0][1]))
    opclass = f"{storage}_{params.family}_ops"
    if usable:
        target = IndexTarget(names.source, model, names.relations.chunks, name, storage, dimensions)
        statement = hnsw_statement(target, opclass, params.m, params.ef_construction)
        build_indexes(conn, target, [statement], settings)
        return CarriedIndex("built", name, old)
    conn.execute(
        "INSERT INTO embedkeeper.deferred_indexes (index_name, source, model, definition)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (index_name) DO NOTHING",
        (name, names.source, model, _definition(conn, names, opclass, params)),
    )
    return CarriedIndex("deferred", name, old)


@dataclass(frozen=True, slots=True)
class _OldIndex:
    name: str
    definition: str
    valid: bool


def _old_indexes(conn: psycopg.Connection[Any], model: str) -> list[_OldIndex]:
    """v0.1's vector indexes of the model: hnsw or ivfflat on embedkeeper.embeddings whose
    predicate is exactly `model = '<name>'`."""
    rows = conn.execute(
        "SELECT c.relname, substring(pg_get_expr(i.indpred, i.indrelid)"
        "         FROM '^\\(model = ''(.*)''::text\\)$'),"
        "       pg_get_indexdef(i.indexrelid), i.indisvalid"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am a ON a.oid = c.relam"
        " WHERE i.indrelid = 'embedkeeper.embeddings'::regclass"
        "   AND a.amname IN ('hnsw', 'ivfflat') AND i.indpred IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [
        _OldIndex(name, definition, bool(valid))
        for name, owner, definition, valid in rows
        if owner is not None and owner.replace("''", "'") == model
    ]


def _definition(
    conn: psycopg.Connection[Any], names: PairNames, opclass: str, params: _Params
) -> str:
    """The pair's index as pg_get_indexdef would write it (names quoted as PostgreSQL quotes
    them), since a deferred index is recorded in that form."""
    row = conn.execute(
        "SELECT quote_ident(%s), quote_ident(%s)", (names.hnsw_index, names.relations.chunks)
    ).fetchone()
    assert row is not None
    index, table = row
    return (
        f"CREATE INDEX {index} ON embedkeeper.{table} USING hnsw (embedding {opclass})"
        f" WITH (m='{params.m}', ef_construction='{params.ef_construction}')"
    )


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier("embedkeeper", name).as_string(conn),)
    ).fetchone()
    return bool(row and row[0])


def _try_index_lock(conn: psycopg.Connection[Any], model: str) -> bool:
    """The model's index key, as an index rebuild takes it (store/index/vector_index.py): a
    deferring
    v0.1 backfill that still runs holds it shared and would rebuild the old index after us."""
    return locks.take(conn, "pg_try_advisory_xact_lock", locks.INDEX, model)
