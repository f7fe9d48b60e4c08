"""The tables of one (source, model) pair: its documents' records, their chunks, its failures.

One set per pair, not one shared table: the vector column is typed (`vector(N)` or
`halfvec(N)`), so the HNSW index is plain and a search needs no cast; the key has the source's
own type, so sources with bigint, text and uuid keys live side by side; dropping a model is a
DROP TABLE, and vacuum and index builds touch one model only. They depend on the config (which
sources, which models, how many dimensions), so `embedkeeper migrate` creates them from these
definitions rather than an alembic revision; `embedkeeper.pairs` (tables.py) records each one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .schema import SCHEMA

if TYPE_CHECKING:
    from sqlalchemy import Table

MAX_NAME = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1)
Storage = Literal["vector", "halfvec"]


# What a pair's names append to its base (the view's name is the base itself). None is the tail
# of another and none ends in a hex digit: pair_base_name() relies on both.
ENDINGS = {
    "documents": "_documents",
    "chunks": "_chunks",
    "failures": "_failures",
    "documents_pkey": "_documents_pkey",
    "chunking_index": "_chunking",
    "chunks_pkey": "_chunks_pkey",
    "chunks_fkey": "_chunks_fkey",
    "failures_pkey": "_failures_pkey",
    "failures_check": "_failures_check",
    "hnsw_index": "_hnsw",
    "full_text_index": "_full_text",
}


@dataclass(frozen=True, slots=True)
class RelationNames:
    """Every name a pair's objects take in schema embedkeeper: its base and an ending. Tables,
    the view and indexes share one namespace (a primary key is an index too), so each of them,
    and each constraint, is named here and nowhere else, and pair_base_name() chooses bases
    whose names never meet another pair's."""

    base: str

    def _named(self, kind: str) -> str:
        return f"{self.base}{ENDINGS[kind]}"

    @property
    def view(self) -> str:
        """What a user searches: the chunks joined to the source."""
        return self.base

    @property
    def documents(self) -> str:
        return self._named("documents")

    @property
    def chunks(self) -> str:
        return self._named("chunks")

    @property
    def failures(self) -> str:
        return self._named("failures")

    @property
    def documents_pkey(self) -> str:
        return self._named("documents_pkey")

    @property
    def chunking_index(self) -> str:
        return self._named("chunking_index")

    @property
    def chunks_pkey(self) -> str:
        return self._named("chunks_pkey")

    @property
    def chunks_fkey(self) -> str:
        return self._named("chunks_fkey")

    @property
    def failures_pkey(self) -> str:
        return self._named("failures_pkey")

    @property
    def failures_check(self) -> str:
        return self._named("failures_check")

    @property
    def hnsw_index(self) -> str:
        return self._named("hnsw_index")

    @property
    def full_text_index(self) -> str:
        return self._named("full_text_index")

    def every_name(self) -> tuple[str, ...]:
        """All of them, the view first."""
        return (self.view, *(self._named(kind) for kind in ENDINGS))


LONGEST_ENDING = max(len(e) for e in ENDINGS.values())
DIGEST_CHARS = 10
PLAIN_NAME = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")


def pair_base_name(source: str, model: str) -> str:
    """`<source>__<model>` where that is plain, else the plain part, shortened, `___` and a hash
    of both names, so that no name of one pair is a name of another.

    Plain: both are lower-case names with single underscores inside (so the one `__` splits
    them one way), the model does not end in one of ENDINGS (a model `minilm_chunks` would make
    a view `docs__minilm_chunks`, the chunks table of `minilm`), and every name fits
    PostgreSQL's 63 characters (else it would cut two names to one). Then two plain pairs'
    names never meet: the first `__` fixes the source, and a model's names differ by their
    ending unless one model is another plus an ending, which is not plain. A plain name never
    holds `___`, a hashed one always does; two hashed pairs have different hashes (the names'
    SHA-256), and a view's name (ending in the hash's hex digit) is never another relation's
    (each ending ends in a letter past f).

    Hashed rather than refused: such a name is the user's to choose, as a name with capitals or
    a dash is; `migrate` prints each pair's names."""
    joined = f"{source}__{model}"
    plain_parts = PLAIN_NAME.fullmatch(source) and PLAIN_NAME.fullmatch(model)
    fits = len(joined) + LONGEST_ENDING <= MAX_NAME
    if plain_parts and fits and not model.endswith(tuple(ENDINGS.values())):
        return joined
    plain = re.sub(r"[^a-z0-9_]", "", joined.lower())
    digest = hashlib.sha256(f"{source}\0{model}".encode()).hexdigest()[:DIGEST_CHARS]
    return f"{plain[: MAX_NAME - LONGEST_ENDING - DIGEST_CHARS - 3]}___{digest}"


def pair_tables(
    base: str, key_type: str, dimensions: int, storage: Storage = "vector"
) -> tuple[Table, Table, Table]:
    """(documents, chunks, failures) of the pair whose names start with `base`; every table,
    index and constraint named by RelationNames. SQLAlchemy is imported here, where tables are
    made: a pass, a search or a report names a pair's tables without it."""
    from pgvector.sqlalchemy import HALFVEC, VECTOR
    from sqlalchemy import (
        Boolean,
        CheckConstraint,
        Column,
        DateTime,
        ForeignKeyConstraint,
        Index,
        Integer,
        LargeBinary,
        MetaData,
        PrimaryKeyConstraint,
        Table,
        Text,
        func,
        text,
    )

    from .tables import DOCUMENT_ID_TYPES, FAILURE_STATUSES

    names = RelationNames(base)
    meta = MetaData(schema=SCHEMA)
    key: Any = DOCUMENT_ID_TYPES[key_type]
    vector = HALFVEC(dimensions) if storage == "halfvec" else VECTOR(dimensions)
    now = func.now()
    documents = Table(
        names.documents,
        meta,
        # A document is embedded when this row carries its current content hash and chunking:
        # the row and every chunk are written in one transaction.
        # The source's key, never generated here: no serial (its sequence would be one more
        # relation named by PostgreSQL rather than by RelationNames).
        Column("document_id", key, nullable=False, autoincrement=False),
        Column(
            "content_hash", LargeBinary, nullable=False
        ),  # md5 of the text, as PostgreSQL has it
        Column("chunking", Text, nullable=False),  # the chunker's fingerprint
        Column("chunk_count", Integer, nullable=False),
        Column("token_count", Integer, nullable=False),
        Column("truncated", Boolean, nullable=False),
        Column("source_updated_at", DateTime(timezone=True), nullable=True),
        Column("embedded_at", DateTime(timezone=True), nullable=False, server_default=now),
        PrimaryKeyConstraint("document_id", name=names.documents_pkey),
        # A pass's start asks whether any record is of other chunking settings (two index
        # probes, see SourceSql.other_chunking_exists), so a change of settings re-walks all.
        Index(names.chunking_index, "chunking"),
    )
    chunks = Table(
        names.chunks,
        meta,
        Column("document_id", key, nullable=False),
        Column("chunk", Integer, nullable=False),
        Column("char_start", Integer, nullable=False),  # the passage is text[char_start:char_end]
        Column("char_end", Integer, nullable=False),
        Column("passage", Text, nullable=False),
        Column("embedding", vector, nullable=False),
        PrimaryKeyConstraint("document_id", "chunk", name=names.chunks_pkey),
        # A document's chunks go with its record: every prune deletes records only.
        ForeignKeyConstraint(
            ["document_id"],
            [documents.c.document_id],
            name=names.chunks_fkey,
            ondelete="CASCADE",
        ),
    )
    failures = Table(
        names.failures,
        meta,
        Column("document_id", key, nullable=False, autoincrement=False),
        Column("attempts", Integer, nullable=False),
        Column("error_class", Text, nullable=False),
        Column("message", Text, nullable=False),
        Column("content_hash", LargeBinary, nullable=True),  # the text that failed
        Column("first_seen", DateTime(timezone=True), nullable=False, server_default=now),
        Column("last_seen", DateTime(timezone=True), nullable=False, server_default=now),
        Column("next_retry_at", DateTime(timezone=True), nullable=True),
        Column("status", Text, nullable=False),
        PrimaryKeyConstraint("document_id", name=names.failures_pkey),
        CheckConstraint(text(f"status IN {FAILURE_STATUSES!r}"), name=names.failures_check),
    )
    return documents, chunks, failures
