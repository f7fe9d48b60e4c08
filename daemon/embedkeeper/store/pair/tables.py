"""Creating a (source, model) pair's tables, and naming them in SQL.

The definitions live with the other tables in embedkeeper.models (models/pairs.py); they depend
on the config, so `migrate` creates them here rather than through an alembic revision. The DDL is
compiled by SQLAlchemy, which quotes every identifier; the statements that use the tables quote
them with psycopg.sql through PairNames, whose every name comes from models/pairs.py.

embedkeeper.pairs records what each pair was made for, its chunking settings included: a
process of other settings is refused before it claims (check_pair_chunking, at a pass's start)
and before it writes (fence_chunking, in the writer's transaction), and only `migrate` changes
them (adopt_chunking). Claims and coverage count a record of other settings as stale, so two
processes of different settings on one pair would otherwise embed each other's documents again
and again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from embedkeeper.errors import ConfigError, DatabaseError, DimensionMismatch, SchemaMissing
from embedkeeper.models.pairs import RelationNames, Storage, pair_base_name, pair_tables
from embedkeeper.models.schema import SCHEMA
from embedkeeper.store import locks
from embedkeeper.store.db import mapped_errors


@dataclass(frozen=True, slots=True)
class PairNames:
    """A pair's names in SQL, every one from models/pairs.py's RelationNames (`relations`, for
    the names as text)."""

    source: str
    model: str
    base: str  # every name of the pair starts with it

    @classmethod
    def of(cls, source: str, model: str) -> PairNames:
        return cls(source, model, pair_base_name(source, model))

    @property
    def relations(self) -> RelationNames:
        return RelationNames(self.base)

    @property
    def documents(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.relations.documents)

    @property
    def chunks(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.relations.chunks)

    @property
    def failures(self) -> sql.Identifier:
        return sql.Identifier(SCHEMA, self.relations.failures)

    @property
    def view(self) -> sql.Identifier:
        """What a user searches: the chunks joined to the source."""
        return sql.Identifier(SCHEMA, self.relations.view)

    @property
    def hnsw_index(self) -> str:
        return str(self.relations.hnsw_index)

    @property
    def full_text_index(self) -> str:
        return str(self.relations.full_text_index)


def create_pair_tables(
    conn: psycopg.Connection[Any],
    names: PairNames,
    *,
    key_type: str,
    dimensions: int,
    storage: Storage = "vector",
) -> None:
    """Create the pair's tables where they do not exist; the caller owns the transaction."""
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    with mapped_errors(f"creating the tables of {names.source}/{names.model}"):
        for table in pair_tables(names.base, key_type, dimensions, storage):
            statements: list[CreateTable | CreateIndex] = [CreateTable(table, if_not_exists=True)]
            statements += [CreateIndex(i, if_not_exists=True) for i in table.indexes]
            for statement in statements:
                # Generated from our own definitions, every identifier quoted by SQLAlchemy.
                conn.execute(str(statement.compile(dialect=dialect)))


def vector_column_type(conn: psycopg.Connection[Any], names: PairNames) -> str | None:
    """The chunks' embedding column as PostgreSQL names it (`vector(384)`); None: no table."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
        " WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding' AND NOT a.attisdropped",
        (names.chunks.as_string(conn),),
    ).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class PairRecord:
    """What a pair's tables were made for (a row of embedkeeper.pairs). `chunking`: the
    chunker's fingerprint of the config that makes them; None: unknown here (the first write,
    or `migrate`, records it). `vectors`: the settings its vectors are made with
    (store/pair/vector_settings.py); None: `migrate` fills them."""

    source_table: str
    key_type: str
    dimensions: int
    storage: str
    chunking: str | None = None
    vectors: dict[str, Any] | None = None


def record_pair(conn: psycopg.Connection[Any], names: PairNames, wanted: PairRecord) -> None:
    """Record the pair, or hold the config to its record: a source name that now stands for
    another table, or a model of another size or storage, would put two kinds of vectors in
    one pair's tables. The chunking settings are recorded with a new pair only: changing them
    is `migrate`'s (adopt_chunking), and each writer is held to them (fence_chunking). The
    caller owns the transaction."""
    select = (
        "SELECT source_table, key_type, dimensions, storage FROM embedkeeper.pairs"
        " WHERE source = %s AND model = %s"
    )
    with mapped_errors(f"recording the pair {names.source}/{names.model}"):
        row = conn.execute(select, (names.source, names.model)).fetchone()
        if row is None:  # a worker may only read the registry: it writes only what is new
            conn.execute(
                "INSERT INTO embedkeeper.pairs (source, model, base_name, source_table,"
                " key_type, dimensions, storage, chunking, vector_settings)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (source, model) DO NOTHING",
                (
                    names.source,
                    names.model,
                    names.base,
                    wanted.source_table,
                    wanted.key_type,
                    wanted.dimensions,
                    wanted.storage,
                    wanted.chunking,
                    None if wanted.vectors is None else Jsonb(wanted.vectors),
                ),
            )
            row = conn.execute(select, (names.source, names.model)).fetchone()
    assert row is not None
    recorded = PairRecord(str(row[0]), str(row[1]), int(row[2]), str(row[3]))
    pair = f'source "{names.source}", model "{names.model}"'
    if recorded.source_table != wanted.source_table:
        raise ConfigError(
            f"config: {pair}: the source is table {wanted.source_table}, but this pair's vectors"
            f" were made from table {recorded.source_table}; give the source another name in"
            " [[sources]], or point it back at its table"
        )
    if recorded.key_type != wanted.key_type:
        raise ConfigError(
            f"config: {pair}: the source's key is now {wanted.key_type}, but this pair's tables"
            f" hold {recorded.key_type} keys; give the source another name"
        )
    if (recorded.dimensions, recorded.storage) != (wanted.dimensions, wanted.storage):
        raise DimensionMismatch(
            f"{pair}: the model makes {wanted.storage}({wanted.dimensions}) vectors, but this"
            f" pair's tables hold {recorded.storage}({recorded.dimensions}); give the model"
            " another name in [[models]] to embed again beside the old vectors"
        )


class ChunkingMismatch(ConfigError):
    """This process chunks with other settings than the pair's chunks are made with."""


_SELECT_CHUNKING = "SELECT chunking FROM embedkeeper.pairs WHERE source = %s AND model = %s"


def _mismatch(names: PairNames, mine: str, recorded: str) -> ChunkingMismatch:
    return ChunkingMismatch(
        f'source "{names.source}", model "{names.model}": this process chunks with {mine},'
        f" but the pair's chunks are made with {recorded}; run `embedkeeper migrate` with the"
        " new settings to adopt them (every document is embedded again), or run this process"
        " with the pair's settings"
    )


def _unrecorded(names: PairNames) -> SchemaMissing:
    return SchemaMissing(
        f'source "{names.source}", model "{names.model}" is not recorded in embedkeeper.pairs;'
        " run `embedkeeper migrate`"
    )


def check_pair_chunking(conn: psycopg.Connection[Any], names: PairNames, mine: str) -> None:
    """Refuse to start a pass whose chunking differs from the pair's recorded settings, before
    it claims or embeds anything (the writer's fence would refuse its first write anyway, after
    the model's work). A pair with no settings recorded yet passes: its first write records
    them. Reads only."""
    with mapped_errors(f"reading the pair {names.source}/{names.model}"):
        row = conn.execute(_SELECT_CHUNKING, (names.source, names.model)).fetchone()
    if row is None:
        raise _unrecorded(names)
    if row[0] is not None and row[0] != mine:
        raise _mismatch(names, mine, str(row[0]))


def fence_chunking(
    conn: psycopg.Connection[Any],
    names: PairNames,
    mine: Iterable[str],
    *,
    record_if_none: bool = True,
) -> None:
    """Hold a write to the pair's recorded chunking, inside the writer's transaction and
    before its first write: records of other settings would be stale to the pair's other
    writers, which would embed those documents again, and theirs stale to us, forever (a rolling
    deploy of new settings). FOR SHARE keeps the settings from changing until the write
    commits: a `migrate` adopting new ones waits for the writes under way, and every write after
    it sees them.

    A pair with none recorded (made before alembic 0009, or by a worker) takes the first
    writer's (`record_if_none`: a writer asks once), by a compare-and-set that a second writer
    of other settings then finds done. It runs before FOR SHARE is taken: two writers holding
    that and both updating would deadlock."""
    fingerprints = set(mine)
    pair = (names.source, names.model)
    if record_if_none and len(fingerprints) == 1:
        conn.execute(
            "UPDATE embedkeeper.pairs SET chunking = %s"
            " WHERE source = %s AND model = %s AND chunking IS NULL",
            (*fingerprints, *pair),
        )
    row = conn.execute(_SELECT_CHUNKING + " FOR SHARE", pair).fetchone()
    if row is None:
        raise _unrecorded(names)
    for fingerprint in sorted(fingerprints):
        if fingerprint != row[0]:
            raise _mismatch(names, fingerprint, str(row[0] or "no settings recorded"))


def adopt_chunking(conn: psycopg.Connection[Any], names: PairNames, wanted: str) -> str | None:
    """Record `wanted` as the pair's chunking: `migrate`'s act of changing the settings (the
    pair's records of the old ones become stale, and passes embed them again). Returns the
    settings it replaced; None where they were the same or none were recorded.

    A pair that recorded none (made before alembic 0009) and whose model keeps texts whole
    ("none:<window>") relabels its records of the bare "none" once: that fingerprint did not
    name the window, and this config's window is the one they were cut at, unless it changed
    in between (which that version did not notice either). So an upgrade does not embed every
    whole-text document again for nothing. Likewise a pair whose settings are this config's
    but were recorded before the fingerprint named the vectors' settings (";v="): its records
    take the new name. The caller owns the transaction."""
    pair = (names.source, names.model)
    with mapped_errors(f"adopting the chunking of {names.source}/{names.model}"):
        row = conn.execute(_SELECT_CHUNKING + " FOR UPDATE", pair).fetchone()
        if row is None:
            raise _unrecorded(names)
        recorded: str | None = row[0]
        if recorded == wanted:
            return None
        if recorded is not None and _names_its_vectors_now(recorded, wanted):
            # Settings recorded before the fingerprint named the vectors' settings (";v="),
            # the same otherwise: the records are relabelled, not embedded again (their vectors
            # were made by this model, as far as that version could tell).
            conn.execute(
                sql.SQL("UPDATE {} SET chunking = %s WHERE chunking = %s").format(names.documents),
                (wanted, recorded),
            )
            conn.execute(
                "UPDATE embedkeeper.pairs SET chunking = %s WHERE source = %s AND model = %s",
                (wanted, *pair),
            )
            return None
        if recorded is None and wanted.startswith("none:"):
            conn.execute(
                sql.SQL("UPDATE {} SET chunking = %s WHERE chunking = 'none'").format(
                    names.documents
                ),
                (wanted,),
            )
        conn.execute(
            "UPDATE embedkeeper.pairs SET chunking = %s WHERE source = %s AND model = %s",
            (wanted, *pair),
        )
    return recorded


def forget_chunking(conn: psycopg.Connection[Any], names: PairNames) -> None:
    """Clear the pair's recorded chunking (`migrate --reembed` where no tokenizer is installed
    to tell the new fingerprint): the first write records its own, and the records of the old
    one are stale to it. The caller owns the transaction."""
    with mapped_errors(f"clearing the chunking of {names.source}/{names.model}"):
        conn.execute(
            "UPDATE embedkeeper.pairs SET chunking = NULL WHERE source = %s AND model = %s",
            (names.source, names.model),
        )


def _names_its_vectors_now(recorded: str, wanted: str) -> bool:
    """`wanted` is `recorded` with the vectors' settings added (";v=..."): the upgrade of a
    fingerprint, not a change of the chunking."""
    base, marker, _ = wanted.partition(";v=")
    return bool(marker) and ";v=" not in recorded and base == recorded


def ensure_pair(conn: psycopg.Connection[Any], names: PairNames, wanted: PairRecord) -> bool:
    """The pair's tables, made if missing (returns True then), and its record checked. A role
    that may not create them gets an error that names the command to run as the owner."""
    with conn.transaction():
        # Instances starting together would race CREATE TABLE IF NOT EXISTS (a duplicate-key
        # error in the catalog): the first makes the tables, the others wait and find them.
        locks.take(conn, "pg_advisory_xact_lock", locks.PAIRS, names.base)
        exists = vector_column_type(conn, names) is not None
        if not exists:
            try:
                with conn.transaction():
                    create_pair_tables(
                        conn,
                        names,
                        key_type=wanted.key_type,
                        dimensions=wanted.dimensions,
                        storage=wanted.storage,
                    )
            except DatabaseError as exc:
                if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
                    raise
                raise SchemaMissing(
                    f'the tables of source "{names.source}", model "{names.model}" do not exist'
                    " and this role may not create them; run `embedkeeper migrate` as the"
                    " owner of schema embedkeeper (then the grants of docs/operations.md)"
                ) from exc
        record_pair(conn, names, wanted)
    return not exists
